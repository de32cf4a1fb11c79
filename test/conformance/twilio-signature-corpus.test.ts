/** Conformance: the X-Twilio-Signature vectors published by others (twilio-node's spec, Twilio's docs example). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describeConformance } from '../support/conformance-corpus.js';
import { checkTwilioVectors } from '../support/twilio-signature-vectors.js';

describeConformance('conformance: the published Twilio signature vectors', 'twilio', (dir) => {
  checkTwilioVectors(readFileSync(path.join(dir, 'signature_vectors_twilio-node.json'), 'utf8'));
});
