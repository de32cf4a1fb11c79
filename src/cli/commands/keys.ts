/**
 * `switchboard keys status|rotate|reencrypt`: which keys exist and what each protects; rotation
 * (a new active data key; data keys re-wrapped under the newest ENCRYPTION_KEYS entry), or with
 * `--media-link` a new media link signing key (older links valid until they expire); online
 * re-encryption of older rows in batches, with a progress line, interruptible (Ctrl-C stops after
 * the current batch) and resumable (run it again).
 */
import { UsageError, parseCommandArgs } from '../args.js';
import { EXIT_FAILURES, EXIT_OK, type CliIo } from '../io.js';
import { openStoreAccess } from '../store-access.js';
import { keyStatus, reencrypt, rotateKeys, rotateMediaLinkKey } from '../../store/key-admin.js';
import { envSchema } from '../../config/env.js';
import { RETIRED_KEY_GRACE_SECONDS, retiredKeyAcceptedUntil } from '../../media/media-links.js';
import { reencryptMediaFiles } from '../../media/media-store.js';
import path from 'node:path';

export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseCommandArgs(rest, {
    batch: { type: 'string', default: '500' },
    format: { type: 'string', default: 'text' },
    'media-link': { type: 'boolean', default: false },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (sub !== 'status' && sub !== 'rotate' && sub !== 'reencrypt') {
    throw new UsageError(sub === undefined ? 'give a subcommand: status, rotate or reencrypt' : `unknown subcommand "${sub}"`);
  }
  const batch = Number(values.batch);
  if (!Number.isInteger(batch) || batch < 1 || batch > 10_000) throw new UsageError(`--batch ${values.batch}: a whole number from 1 to 10000`);
  if (values.format !== 'text' && values.format !== 'json') throw new UsageError(`--format ${values.format}: text or json`);
  if (values['media-link'] && sub !== 'rotate') throw new UsageError('--media-link goes with keys rotate');
  // The longest lifetime of a link: the gateway's MEDIA_LINK_TTL, read from the same environment.
  const ttl = envSchema.shape.MEDIA_LINK_TTL.safeParse(io.env['MEDIA_LINK_TTL']);
  if (!ttl.success) throw new UsageError(`MEDIA_LINK_TTL=${io.env['MEDIA_LINK_TTL']}: a duration such as 900s, 24h or 7d`);

  const store = await openStoreAccess(io);
  try {
    if (sub === 'status') {
      const s = await keyStatus(store.pool, store.provider);
      if (values.format === 'json') {
        io.stdout(`${JSON.stringify(s, null, 2)}\n`);
        return EXIT_OK;
      }
      const lines = [`key-encryption keys (${store.provider.description}), newest first:`];
      for (const k of s.keks) lines.push(`  ${k.id}${k.newest ? '  (wraps new data keys)' : ''}`);
      lines.push('data keys (table encryption_keys), newest first:');
      for (const d of s.dataKeys) {
        lines.push(`  ${d.id}  ${d.purpose.padEnd(5)}  wrapped by ${d.kekId}${d.kekAvailable ? '' : ' (MISSING from the keyring)'}  created ${d.createdAt.toISOString()}${d.active ? '  ACTIVE' : ''}`);
      }
      lines.push('stored values by key:');
      for (const r of s.rows) lines.push(`  ${`${r.table}.${r.column}`.padEnd(32)} ${r.keyId.padEnd(26)} ${r.count}`);
      const active = s.dataKeys.find((d) => d.active)?.id;
      const old = s.rows.filter((r) => r.keyId !== active).reduce((n, r) => n + r.count, 0);
      lines.push(old === 0 ? 'every value is under the active data key' : `${old} values under older keys or in plaintext: run switchboard keys reencrypt`);
      io.stdout(`${lines.join('\n')}\n`);
      return EXIT_OK;
    }
    if (sub === 'rotate' && values['media-link']) {
      const now = new Date();
      // A key retired longer ago than a link lives (plus the grace) can have signed no valid link.
      const r = await rotateMediaLinkKey(store.pool, store.provider, { dropRetiredBefore: new Date(now.getTime() - (ttl.data + RETIRED_KEY_GRACE_SECONDS) * 1000) });
      const acceptedUntil = retiredKeyAcceptedUntil(now, ttl.data);
      await store.record({
        action: 'keys.rotated',
        outcome: 'success',
        resources: [{ type: 'key', id: r.newKeyId }],
        detail: { purpose: 'media_link', previous: r.previousKeyId ?? null, previous_accepted_until: acceptedUntil.toISOString(), dropped: r.dropped.join(',') },
      });
      io.stdout(`new media link key ${r.newKeyId}: running gateways sign links with it within seconds\n`);
      if (r.previousKeyId !== undefined) io.stdout(`links signed with ${r.previousKeyId} stay valid until they expire, at the latest ${acceptedUntil.toISOString()} (MEDIA_LINK_TTL after now); then it is dropped\n`);
      if (r.dropped.length > 0) io.stdout(`dropped ${r.dropped.join(', ')}: retired longer ago than MEDIA_LINK_TTL, no link signed with them is accepted\n`);
      return EXIT_OK;
    }
    if (sub === 'rotate') {
      const r = await rotateKeys(store.pool, store.provider);
      await store.record({ action: 'keys.rotated', outcome: 'success', resources: [{ type: 'key', id: r.newKeyId }], detail: { rewrapped: r.rewrapped.length, kek: store.provider.keyIds()[0] ?? null } });
      io.stdout(`new active data key ${r.newKeyId}; ${r.rewrapped.length} data keys re-wrapped under ${store.provider.keyIds()[0]}\n`);
      io.stdout('running gateways write under the new key within seconds; run switchboard keys reencrypt to move older values\n');
      if (r.rewrapped.length > 0) {
        io.stdout(`every gateway process must have ${store.provider.keyIds()[0]} in ENCRYPTION_KEYS (restarted with it) to read the re-wrapped keys\n`);
      }
      return EXIT_OK;
    }
    const controller = new AbortController();
    const onSigint = () => controller.abort();
    io.signal?.addEventListener('abort', onSigint);
    process.once('SIGINT', onSigint);
    try {
      let lastLine = 0;
      const r = await reencrypt(store.pool, store.codec, {
        batch,
        signal: controller.signal,
        onProgress: (p) => {
          const now = Date.now();
          if (now - lastLine < 500 && p.rewritten < p.total) return;
          lastLine = now;
          io.stderr(`reencrypt ${p.table}.${p.column}: ${p.rewritten}/${p.total}\n`);
        },
      });
      // Media files under DATA_DIR/media (the gateway's, when run where it runs).
      const media = r.interrupted ? { rewritten: 0, interrupted: true, damaged: 0 } : await reencryptMediaFiles(path.join(store.dataDir, 'media'), store.codec, store.codec.activeKeyId()!, controller.signal);
      if (media.rewritten > 0) io.stderr(`reencrypt media files: ${media.rewritten}\n`);
      if (media.damaged > 0) io.stderr(`reencrypt media files: ${media.damaged} damaged (they do not decrypt), left as they are\n`);
      const interrupted = r.interrupted || media.interrupted;
      await store.record({
        action: 'keys.reencrypted',
        outcome: interrupted ? 'failure' : 'success',
        resources: [{ type: 'key', id: store.codec.activeKeyId() ?? '' }],
        detail: { rewritten: r.rewritten, media_files: media.rewritten, media_damaged: media.damaged, remaining: r.remaining, interrupted },
      });
      if (interrupted) {
        io.stdout(`interrupted after ${r.rewritten} values; ${r.remaining} left: run switchboard keys reencrypt again to resume\n`);
        return EXIT_FAILURES;
      }
      io.stdout(`re-encrypted ${r.rewritten} values under ${store.codec.activeKeyId()}; ${r.remaining} left\n`);
      return r.remaining === 0 ? EXIT_OK : EXIT_FAILURES;
    } finally {
      process.removeListener('SIGINT', onSigint);
      io.signal?.removeEventListener('abort', onSigint);
    }
  } finally {
    await store.close();
  }
}
