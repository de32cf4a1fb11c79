/** What a run does when a part it tests against is missing (chromium, redis-server, ...): a loud SKIPPED line, and with CI=true a failure. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { reportMissing } from '../support/missing-service.js';

describe('a missing test dependency', () => {
  const ci = process.env['CI'];
  afterEach(() => {
    if (ci === undefined) delete process.env['CI'];
    else process.env['CI'] = ci;
    vi.restoreAllMocks();
  });

  it('is one loud SKIPPED line naming what is skipped and how to get it', () => {
    delete process.env['CI'];
    const written: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (written.push(String(chunk)), true));
    reportMissing('chromium (/usr/bin/chromium)', "the console's browser tests are", 'Install it: apt-get install -y chromium');
    expect(written.join('')).toContain("!!! chromium (/usr/bin/chromium) not found: the console's browser tests are SKIPPED. Install it: apt-get install -y chromium");
  });

  it('fails the run with CI=true: nothing may be skipped in CI', () => {
    process.env['CI'] = 'true';
    expect(() => reportMissing('chromium (/usr/bin/chromium)', "the console's browser tests are", 'Install it: apt-get install -y chromium')).toThrow(/chromium \(\/usr\/bin\/chromium\) is missing and CI=true: nothing may be skipped/);
    // What a run was told may be absent stays a loud skip.
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(() => reportMissing('the conformance corpus', 'the conformance tests are', 'see README', { optionalInCi: true })).not.toThrow();
  });
});
