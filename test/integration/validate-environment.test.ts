/** `validate --environment` says what each healthcheck verified: a plain MLLP connection is reachable, not "authenticated". */
import { mkdtemp, rm, writeFile, cp, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { startMllpSandbox, type MllpSandbox } from '../../src/sandbox/mllp-sandbox.js';
import { createLogger } from '../../src/core/logger.js';
import { repoRoot } from '../support/gateway.js';

let dir: string;
let lab: MllpSandbox;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sb-validate-env-'));
  await mkdir(path.join(dir, 'channels'));
  await cp(path.join(repoRoot, 'mappings'), path.join(dir, 'mappings'), { recursive: true });
  await writeFile(
    path.join(dir, 'channels/lab.yaml'),
    `id: lab
source:
  kind: whatsapp_cloud
  app_secret: \${WHATSAPP_APP_SECRET}
  verify_token: \${WHATSAPP_VERIFY_TOKEN}
destinations:
  - name: lab
    kind: hl7v2_mllp
    url: \${LAB_MLLP_URL}
    mapping: ../mappings/lab-question-to-orm.jsonata
    sending_application: SWITCHBOARD
    sending_facility: CLINIC
    receiving_application: LIS
    receiving_facility: LAB
`,
  );
  lab = await startMllpSandbox({ role: 'lab', logger: createLogger({ level: 'silent' }) });
});
afterAll(async () => {
  await lab?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('validate --environment', () => {
  it('reports a plain MLLP partner as reachable over plain TCP, without claiming authentication', async () => {
    let out = '';
    const code = await runCli(['validate', 'channels', '--environment'], {
      stdout: (t) => (out += t),
      stderr: (t) => (out += t),
      cwd: dir,
      env: { LAB_MLLP_URL: lab.url },
    });
    expect(out).toMatch(/✓ lab\/lab \(hl7v2_mllp\): reachable: MLLP connection opened \(plain TCP, no authentication\) \(\d+ ms\)/);
    expect(out).not.toContain('authenticated');
    expect(code).toBe(0);
  });
});
