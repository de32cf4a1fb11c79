/**
 * System under test: the real gateway, built by createSwitchboard (the composition root), role
 * `all`, a silent logger, and by default the shipped channels directory. Started by bench/run.ts
 * as a child process so its RSS and CPU are its own. Load goes to the whatsapp-to-ehr channel.
 *
 * Channels: `shipped` loads channels/ as it is. Channel files may reference partners the bench
 * does not run (e.g. LAB_MLLP_URL): the orchestrator points those at a loopback sink, and the
 * bench's messages are plain texts that no lab or insurer route matches. Should the shipped
 * directory still not load (a new channel needing something else), the gateway is started on a
 * copy of the whatsapp-to-ehr channel and its mapping alone, and the description says so loudly.
 * `ehr-only` uses that copy from the start.
 */
import { copyFile, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { createSwitchboard, type Switchboard } from '../src/app.js';
import { createConnectorRegistry } from '../src/connectors/registry.js';
import { createLogger } from '../src/core/logger.js';
import type { SutConfig } from './protocol.js';
import { serveSut } from './sut-common.js';

const CHANNEL_ID = 'whatsapp-to-ehr';

/** channels/whatsapp-to-ehr.yaml and its mapping, copied with the same relative layout. */
async function ehrOnlyCopy(repoRoot: string, into: string): Promise<string> {
  await mkdir(path.join(into, 'channels'), { recursive: true });
  await mkdir(path.join(into, 'mappings'), { recursive: true });
  await copyFile(path.join(repoRoot, 'channels', `${CHANNEL_ID}.yaml`), path.join(into, 'channels', `${CHANNEL_ID}.yaml`));
  await copyFile(path.join(repoRoot, 'mappings', 'whatsapp-to-communication.jsonata'), path.join(into, 'mappings', 'whatsapp-to-communication.jsonata'));
  return path.join(into, 'channels');
}

function build(cfg: SutConfig, dataDir: string, channelsDir: string): Switchboard {
  return createSwitchboard({
    role: 'all',
    port: 0,
    host: '127.0.0.1',
    dataDir,
    channelsDir,
    databaseUrl: cfg.databaseUrl,
    redisUrl: cfg.queue === 'redis' ? cfg.redisUrl : undefined,
    queuePrefix: cfg.queuePrefix,
    env: { ...cfg.extraEnv, WHATSAPP_APP_SECRET: cfg.appSecret, WHATSAPP_VERIFY_TOKEN: cfg.verifyToken, FHIR_BASE_URL: cfg.fhirBaseUrl },
    fhirBaseUrl: cfg.fhirBaseUrl,
    fhirSandboxPort: 0,
    adminToken: 'bench-admin-token-0123456789',
    registry: createConnectorRegistry(),
    logger: createLogger({ level: 'silent' }),
    // The production defaults (src/config/env.ts).
    shutdownTimeoutMs: 10_000,
    jobLockMs: 30_000,
    // Our redis-server runs with AOF everysec and noeviction, so the strict check passes.
    queueDurability: 'strict',
    encryptionKeys: `bench:${Buffer.alloc(32, 7).toString('base64')}`,
    plaintextStoreForBenchmark: !cfg.encryption,
  });
}

await serveSut(async (cfg) => {
  const dataDir = cfg.dataDir;
  await mkdir(dataDir, { recursive: true });
  let channelsDir = cfg.channels === 'ehr-only' ? await ehrOnlyCopy(cfg.repoRoot, dataDir) : path.join(cfg.repoRoot, 'channels');
  let note = cfg.channels === 'ehr-only' ? `channels: a copy of ${CHANNEL_ID} only` : 'channels: the shipped directory';
  let app = build(cfg, dataDir, channelsDir);
  let started;
  try {
    started = await app.start();
  } catch (err) {
    await app.stop().catch(() => undefined);
    if (cfg.channels !== 'shipped' || (err as Error).name !== 'ConfigError') throw err;
    const reason = (err as Error).message.split('\n')[0] ?? '';
    channelsDir = await ehrOnlyCopy(cfg.repoRoot, dataDir);
    note = `!!! channels: the shipped directory did not load (${reason}); FELL BACK to a copy of ${CHANNEL_ID} only`;
    app = build(cfg, dataDir, channelsDir);
    started = await app.start();
  }
  const channel = started.channels.find((c) => c.id === CHANNEL_ID);
  if (!channel?.source.path) throw new Error(`the channel ${CHANNEL_ID} is not loaded (or has no webhook path)`);
  const running = app;
  return {
    url: `http://127.0.0.1:${started.port}`,
    webhookPath: channel.source.path,
    description: `createSwitchboard role=all, encryption at rest ${cfg.encryption ? 'on' : 'OFF (plaintext store, for comparison)'}, ${started.channels.length} channel(s) [${started.channels.map((c) => c.id).join(', ')}], ${note}; queues: ${started.queues}`,
    async stop() {
      await running.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
});
