/** Conformance: the X-Hub-Signature-256 vector published with whatsapp-api-js, checked like the project's own. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { whatsappCloudConfigSchema, whatsappCloudSource } from '../../src/connectors/sources/whatsapp-cloud.js';
import { describeConformance } from '../support/conformance-corpus.js';
import { checkSignatureVector, readSignatureVector } from '../support/whatsapp-signature-vector.js';

describeConformance('conformance: the published WhatsApp signature vector', 'whatsapp', (dir) => {
  const vector = readSignatureVector(readFileSync(path.join(dir, 'signature_vector_whatsapp-api-js.json'), 'utf8'));
  const config = whatsappCloudConfigSchema.parse({ kind: 'whatsapp_cloud', app_secret: vector.appSecret, verify_token: 'let-me-in-2026' });
  const instance = whatsappCloudSource.create(config, { channelId: 'clinic-a' });
  checkSignatureVector(vector, (rawBody, header) =>
    instance.authenticate({ method: 'POST', url: '/webhooks/clinic-a', headers: { 'x-hub-signature-256': header }, query: new URLSearchParams(), rawBody })?.status ?? null,
  );
});
