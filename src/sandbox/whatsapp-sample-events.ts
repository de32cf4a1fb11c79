/**
 * WhatsApp Cloud API webhook events built and signed the way Meta sends them (non-ASCII as
 * \uXXXX escapes; sign them with the source's own `whatsappSignature`). Used by `npm run sample`, the benchmark
 * and the tests, so that all of them speak the same wire format.
 */
/** The demo Patient the FHIR sandbox is seeded with (wa_id form of +15551234567). */
export const DEMO_WA_ID = '15551234567';

export interface SampleEventOptions {
  wamid: string;
  /** Sender's wa_id (digits); defaults to the demo Patient. */
  from?: string;
  /** Unix seconds; defaults to now. */
  timestamp?: number;
  profileName?: string;
}

/** One event with one message; `message` holds the type-specific part (`{type: 'text', text: {...}}`). */
export function whatsappEvent(o: SampleEventOptions, message: Record<string, unknown>): object {
  const from = o.from ?? DEMO_WA_ID;
  return {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '100555000000001',
        changes: [
          {
            field: 'messages',
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: '15550100100', phone_number_id: '100555000000002' },
              contacts: [{ profile: { name: o.profileName ?? 'Jane Demo' }, wa_id: from }],
              messages: [{ from, id: o.wamid, timestamp: String(o.timestamp ?? Math.floor(Date.now() / 1000)), ...message }],
            },
          },
        ],
      },
    ],
  };
}

export function whatsappTextEvent(o: SampleEventOptions & { text: string }): object {
  return whatsappEvent(o, { type: 'text', text: { body: o.text } });
}

/** JSON as Meta serialises it: every non-ASCII character as a lower-case \uXXXX escape. */
export function metaSerialise(payload: object): string {
  return JSON.stringify(payload).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
