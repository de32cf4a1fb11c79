/**
 * `npm run sample`: sends one signed sample WhatsApp message to a running gateway, waits for its
 * delivery and prints the FHIR Communication it became. Uses the same defaults as `npm start`,
 * and finds the gateway and the admin token as every client command does (`--url`, `--token`).
 *
 * `npm run sample -- --reply` goes on with the round trip of two-way messaging (zero-config run):
 * the care team's reply is created in the FHIR sandbox (inResponseTo the patient's
 * Communication), reaches the gateway by its Subscription, is sent to the sandbox WhatsApp
 * (Graph API sandbox) and its statuses come back onto the reply Communication; each step printed.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { CommandFailure } from '../src/cli/args.js';
import { adminToken as findAdminToken, gatewayAddress } from '../src/cli/gateway-client.js';
import { devDefaults } from '../src/config/env.js';
import { whatsappSignature } from '../src/connectors/sources/whatsapp-cloud.js';
import { metaSerialise, whatsappTextEvent } from '../src/sandbox/whatsapp-sample-events.js';

// npm run sample -- [--url <url>] [--token <token>] [text...]; other words are the message.
const { values: opts, positionals } = parseArgs({ args: process.argv.slice(2), options: { url: { type: 'string' }, token: { type: 'string' }, reply: { type: 'boolean' } }, allowPositionals: true, strict: false });
const option = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);
// The gateway and the admin token are found as every client command finds them.
const clientIo = { env: process.env, cwd: process.cwd() };
const { base, from } = gatewayAddress(clientIo, option(opts['url']));
const secret = process.env['WHATSAPP_APP_SECRET'] || devDefaults.WHATSAPP_APP_SECRET;
// CHANNEL=whatsapp-care-routing npm run sample -- "Are my blood test results ready?" shows HL7 routing.
const channel = process.env['CHANNEL'] ?? 'whatsapp-to-ehr';
let adminToken: string | undefined;
let noToken = '';
try {
  adminToken = findAdminToken(clientIo, option(opts['token']));
} catch (err) {
  if (!(err instanceof CommandFailure)) throw err;
  noToken = err.message;
}
const text = positionals.join(' ') || 'Hello, can I move my appointment on Friday to next week? Merci 🙏';
const wantReply = opts['reply'] === true;
/** The zero-config run's reply channel (channels/sandbox/ehr-replies-to-whatsapp.yaml). */
const REPLY_CHANNEL = 'ehr-replies-to-whatsapp';
const DELIVERY_EXTENSION = 'https://switchboard.example/fhir/StructureDefinition/outbound-delivery';

const wamid = `wamid.SAMPLE${randomBytes(12).toString('hex').toUpperCase()}`;
const payload = whatsappTextEvent({ wamid, text });
// Meta escapes non-ASCII as \uXXXX and signs that form; do the same so the sample is realistic.
const body = metaSerialise(payload);
const signature = whatsappSignature(secret, Buffer.from(body));

async function main(): Promise<void> {
  const res = await fetch(`${base}/webhooks/${channel}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature },
    body,
  }).catch((err: unknown) => {
    throw new Error(`cannot reach the gateway at ${base} (from ${from}): ${(err as Error).message}; is \`npm start\` running? Point at it with --url or SWITCHBOARD_URL, or set PORT to the port it listens on`);
  });
  console.log(`POST /webhooks/${channel} -> ${res.status} ${await res.text()}`);
  if (!res.ok) process.exit(1);
  // The id to look it up by, and where: the console's search takes the wamid as it is.
  console.log(`wamid: ${wamid}`);
  console.log(`In the console: ${base}/console/#/messages?q=${encodeURIComponent(wamid)}`);
  if (!adminToken) {
    console.log(`To see the delivery: ${noToken}.`);
    return;
  }
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const r = await fetch(`${base}/admin/messages?channel=${encodeURIComponent(channel)}&source_id=${encodeURIComponent(wamid)}`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    if (r.ok) {
      const m = (await r.json()) as { deliveries: { destination: string; state: string; outcome: Record<string, unknown> | null; lastErrorCode: string | null }[] };
      const done = m.deliveries.filter((d) => d.state !== 'pending');
      if (m.deliveries.length > 0 && done.length === m.deliveries.length) {
        for (const d of m.deliveries) {
          console.log(`delivery to ${d.destination}: ${d.state}${d.lastErrorCode ? ` (${d.lastErrorCode})` : ''}`);
          const location = d.outcome?.['location'];
          if (typeof location !== 'string' && d.outcome) console.log(`  outcome: ${JSON.stringify(d.outcome)}`);
          if (typeof location === 'string') {
            const fhir = await fetch(location.replace(/\/_history\/[^/]+$/, ''), { headers: { accept: 'application/fhir+json' } });
            const communication = (await fhir.json()) as Record<string, unknown>;
            if (!wantReply) console.log(JSON.stringify(communication, null, 2));
            else await roundTrip(location.replace(/\/Communication\/.*$/, ''), communication, adminToken);
          }
        }
        return;
      }
    }
    await new Promise((r2) => setTimeout(r2, 250));
  }
  console.log('the message is still being delivered; check GET /admin/messages');
  process.exit(1);
}

type Json = Record<string, unknown>;

/** The outbound status the gateway wrote onto a Communication (its outbound-delivery extension). */
function deliveryStatus(c: Json): string | undefined {
  const ext = ((c['extension'] as Json[] | undefined) ?? []).find((e) => e['url'] === DELIVERY_EXTENSION);
  const code = ((ext?.['extension'] as Json[] | undefined) ?? []).find((e) => e['url'] === 'status')?.['valueCode'];
  return typeof code === 'string' ? code : undefined;
}

/** The rest of the round trip: the care team's reply in the EHR, its send, its statuses. */
async function roundTrip(fhirBase: string, patientMessage: Json, token: string): Promise<void> {
  const step = (n: number, line: string): void => console.log(`${n}. ${line}`);
  const subject = (patientMessage['subject'] as Json | undefined)?.['reference'];
  step(1, `the patient's WhatsApp message is Communication/${String(patientMessage['id'])} in the EHR (${fhirBase})${typeof subject === 'string' ? `, about ${subject}` : ''}`);
  if (typeof subject !== 'string') throw new Error('the message matched no Patient, so there is no one to reply to; send it from the demo number');
  const created = await fetch(`${fhirBase}/Communication`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Communication',
      status: 'in-progress',
      recipient: [{ reference: subject }],
      sender: { display: 'Care team (sample)' },
      inResponseTo: [{ reference: `Communication/${String(patientMessage['id'])}` }],
      payload: [{ contentString: 'Of course: Friday next week at 10:00 works. Reply here if you need anything else.' }],
    }),
  });
  if (created.status !== 201) throw new Error(`the FHIR sandbox refused the reply (${created.status}): ${await created.text()}`);
  const reply = (await created.json()) as Json;
  const ref = `Communication/${String(reply['id'])}`;
  step(2, `the care team replies in the EHR: ${ref} (status in-progress, recipient ${subject}, inResponseTo Communication/${String(patientMessage['id'])})`);

  const deadline = Date.now() + 30_000;
  let sent = false;
  while (Date.now() < deadline) {
    if (!sent) {
      const r = await fetch(`${base}/admin/messages?channel=${REPLY_CHANNEL}&source_id=${encodeURIComponent(ref)}`, { headers: { authorization: `Bearer ${token}` } });
      if (r.ok) {
        const m = (await r.json()) as { deliveries: { destination: string; state: string; outcome: Json | null; lastErrorCode: string | null }[] };
        const d = m.deliveries[0];
        if (d && d.state !== 'pending') {
          if (d.state !== 'delivered') throw new Error(`the reply was not sent: ${d.state}${d.lastErrorCode ? ` (${d.lastErrorCode})` : ''}`);
          step(3, `sent to the SANDBOX WhatsApp (Graph API sandbox, nothing reaches WhatsApp) through channel ${REPLY_CHANNEL}: ${String(d.outcome?.['provider_message_id'] ?? '')}`);
          sent = true;
        }
      }
    }
    const current = (await (await fetch(`${fhirBase}/${ref}`, { headers: { accept: 'application/fhir+json' } })).json()) as Json;
    const status = deliveryStatus(current);
    if (status === 'read' || status === 'failed') {
      // Every status the gateway wrote back is a version of the reply: show them in order.
      const history = (await (await fetch(`${fhirBase}/${ref}/_history`, { headers: { accept: 'application/fhir+json' } })).json()) as { entry?: { resource?: Json }[] };
      const versions = (history.entry ?? []).map((e) => e.resource).filter((r): r is Json => r !== undefined);
      versions.sort((x, y) => String((x['meta'] as Json | undefined)?.['lastUpdated']).localeCompare(String((y['meta'] as Json | undefined)?.['lastUpdated'])));
      for (const v of versions) {
        const st = deliveryStatus(v);
        if (st === undefined) continue;
        const extra = st === 'sent' ? `, sent ${String(v['sent'])}` : st === 'delivered' ? `, received ${String(v['received'])}` : st === 'failed' ? `, statusReason ${JSON.stringify(v['statusReason'])}` : '';
        step(4, `status back on ${ref}: ${st} (Communication.status ${String(v['status'])}${extra}; version ${String((v['meta'] as Json | undefined)?.['versionId'])})`);
      }
      console.log(JSON.stringify(current, null, 2));
      return;
    }
    await new Promise((r2) => setTimeout(r2, 250));
  }
  throw new Error(sent ? 'the reply was sent but not every status came back yet; look at the Communication again' : `the reply did not go out; is channel ${REPLY_CHANNEL} running (the zero-config run, with the FHIR sandbox)?`);
}

main().catch((err: unknown) => {
  console.error(`sample: ${(err as Error).message}`);
  process.exit(1);
});
