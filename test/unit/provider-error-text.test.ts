/** A provider's error text in Switchboard's error messages: no phone number of the patient's. */
import { describe, expect, it } from 'vitest';
import { providerErrorText } from '../../src/connectors/chat-send.js';

describe('providerErrorText', () => {
  it('replaces phone numbers the provider echoes, keeps codes and the words', () => {
    expect(providerErrorText("The 'To' number +15005550001 is not a valid phone number.")).toBe("The 'To' number <number> is not a valid phone number.");
    expect(providerErrorText('Message undeliverable to whatsapp:+44 (20) 7946-0958')).toBe('Message undeliverable to whatsapp:<number>');
    expect(providerErrorText('(#131026) Message Undeliverable.')).toBe('(#131026) Message Undeliverable.');
    expect(providerErrorText('error-invalid-room')).toBe('error-invalid-room');
  });

  it('keeps the first line, at most 200 characters; nothing for no text', () => {
    expect(providerErrorText('first line\nsecond line')).toBe('first line');
    expect(providerErrorText('x'.repeat(300))).toHaveLength(200);
    expect(providerErrorText(undefined)).toBe('');
  });
});
