/**
 * The optional conformance corpus: payloads written by others (Meta's documentation examples,
 * nHapi, python-hl7, twilio-node, Rocket.Chat's docs, ...) kept outside this repository, in
 * `../shared/fixtures` beside the checkout. Every behaviour is proven by the project's own
 * fixtures under test/fixtures; the corpus adds conformance runs over third-party inputs.
 * Present: test/conformance runs. Absent: those tests are skipped, global-setup says so in one
 * loud line, and with CI=true the run fails.
 *
 * This is the only file that may name a path outside the repository (a test enforces it).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';

const REPOSITORY_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Where the corpus is looked for: `../shared/fixtures`, relative to the repository root. */
export const CONFORMANCE_CORPUS_DIR = path.resolve(REPOSITORY_ROOT, '../shared/fixtures');

/** Areas of the corpus the conformance tests read; all must be there for the corpus to count as present. */
const AREAS = ['hl7', 'rocketchat', 'twilio', 'whatsapp'] as const;
export type CorpusArea = (typeof AREAS)[number];

/** The corpus folder, or null when it is not beside the checkout. */
export function conformanceCorpus(): string | null {
  return AREAS.every((a) => existsSync(path.join(CONFORMANCE_CORPUS_DIR, a))) ? CONFORMANCE_CORPUS_DIR : null;
}

/**
 * A describe block over one area of the corpus: `body` gets the area's folder. Without the corpus
 * the block holds one skipped test, so the run counts what it skipped (global-setup prints the
 * loud line once, or fails the run with CI=true).
 */
export function describeConformance(name: string, area: CorpusArea, body: (dir: string) => void): void {
  const root = conformanceCorpus();
  if (root === null) {
    describe.skip(name, () => {
      it(`needs the conformance corpus (${area}/)`, () => undefined);
    });
    return;
  }
  describe(name, () => body(path.join(root, area)));
}

export const CONFORMANCE_SKIP_LINE = {
  what: `the conformance corpus (${CONFORMANCE_CORPUS_DIR})`,
  skipped: 'the conformance tests in test/conformance (HL7, WhatsApp, Twilio and Rocket.Chat payloads written by others) are',
  howToGet: 'To run them, place the fixture collection at ../shared/fixtures beside the checkout (README: "What npm test reads").',
};
