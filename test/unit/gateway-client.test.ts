/** How every client command finds the gateway (--url, SWITCHBOARD_URL, else PORT) and says so when it cannot connect. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { adminToken, gatewayAddress } from '../../src/cli/gateway-client.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sb-gw-client-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

describe('gateway discovery', () => {
  it('takes --url, else SWITCHBOARD_URL, else PORT, else 8080, and says which', () => {
    const env = { SWITCHBOARD_URL: 'http://gw.example:9000/', PORT: '7000' };
    expect(gatewayAddress({ env }, 'http://other:1/')).toEqual({ base: 'http://other:1', from: '--url' });
    expect(gatewayAddress({ env })).toEqual({ base: 'http://gw.example:9000', from: 'SWITCHBOARD_URL' });
    expect(gatewayAddress({ env: { PORT: '7000' } })).toEqual({ base: 'http://127.0.0.1:7000', from: 'PORT=7000' });
    expect(gatewayAddress({ env: {} }).base).toBe('http://127.0.0.1:8080');
  });

  it('finds the admin token in --token, ADMIN_TOKEN, else DATA_DIR/admin-token', async () => {
    await mkdir(path.join(dir, 'data'), { recursive: true });
    await writeFile(path.join(dir, 'data/admin-token'), 'from-the-file\n');
    expect(adminToken({ cwd: dir, env: { DATA_DIR: 'data', ADMIN_TOKEN: 'from-env' } }, 'given')).toBe('given');
    expect(adminToken({ cwd: dir, env: { DATA_DIR: 'data', ADMIN_TOKEN: 'from-env' } })).toBe('from-env');
    expect(adminToken({ cwd: dir, env: { DATA_DIR: 'data' } })).toBe('from-the-file');
    expect(() => adminToken({ cwd: dir, env: {} })).toThrow(/pass --token, set ADMIN_TOKEN/);
  });

  it('a client command that cannot connect names the address, where it came from, and how to point elsewhere', async () => {
    const port = await closedPort();
    let err = '';
    const code = await runCli(['dlq', 'list'], { stdout: () => undefined, stderr: (t) => (err += t), cwd: dir, env: { PORT: String(port), ADMIN_TOKEN: 'x'.repeat(20) } });
    expect(code).toBe(1);
    expect(err).toContain(`cannot reach the gateway at http://127.0.0.1:${port} (from PORT=${port}): connection refused`);
    expect(err).toContain('--url <url> or SWITCHBOARD_URL');
  });

  it('every client command fails the same way, exit 1 with one line and no usage text, without a gateway or a token', async () => {
    const port = await closedPort();
    for (const argv of [['dlq', 'list'], ['tokens', 'list'], ['dlq', 'replay', 'some-id']]) {
      let err = '';
      const io = { stdout: () => undefined, stderr: (t: string) => (err += t), cwd: dir, env: { DATA_DIR: 'no-such-dir' } };
      expect(await runCli(argv, io), argv.join(' ')).toBe(1);
      expect(err).toBe(`switchboard ${argv[0]}: no admin token: pass --token, set ADMIN_TOKEN, or run where no-such-dir/admin-token exists (set DATA_DIR to the gateway's data folder)\n`);

      err = '';
      expect(await runCli(argv, { ...io, env: { PORT: String(port), ADMIN_TOKEN: 'x'.repeat(20) } }), argv.join(' ')).toBe(1);
      expect(err.trimEnd().split('\n'), argv.join(' ')).toEqual([expect.stringMatching(new RegExp(`^switchboard ${argv[0]}: cannot reach the gateway at http://127.0.0.1:${port} `))]);
    }
  });
});
