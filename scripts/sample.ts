/**
 * `npm run sample`: sends one signed sample WhatsApp message to a running gateway, waits for its
 * delivery and prints the FHIR Communication it became. Uses the same defaults as `npm start`,
 * and finds the gateway and the admin token as every client command does (`--url`, `--token`).
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { CommandFailure } from '../src/cli/args.js';
import { adminToken as findAdminToken, gatewayAddress } from '../src/cli/gateway-client.js';
import { devDefaults } from '../src/config/env.js';
import { whatsappSignature } from '../src/connectors/sources/whatsapp-cloud.js';
import { metaSerialise, whatsappTextEvent } from '../src/sandbox/whatsapp-sample-events.js';

// npm run sample -- [--url <url>] [--token <token>] [text...]; other words are the message.
const { values: opts, positionals } = parseArgs({ args: process.argv.slice(2), options: { url: { type: 'string' }, token: { type: 'string' } }, allowPositionals: true, strict: false });
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
            console.log(JSON.stringify(await fhir.json(), null, 2));
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

main().catch((err: unknown) => {
  console.error(`sample: ${(err as Error).message}`);
  process.exit(1);
});
