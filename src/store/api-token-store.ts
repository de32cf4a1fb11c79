/**
 * Named API tokens (table `api_tokens`): each token is a principal with a name and a role. The
 * token itself is 256 random bits, shown once at creation; only its SHA-256 is stored, so a copy
 * of the database does not yield a usable credential. Creation and revocation are audited in the
 * same step: when the audit entry cannot be written, nothing changes.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Pool } from 'pg';
import { z } from 'zod';
import type { AuditRecorder } from '../core/audit.js';
import { SwitchboardError } from '../core/errors.js';
import { principalLabel, roleNames, type Principal, type RoleName } from '../core/principal.js';
import { withClient } from './checked-out-client.js';

/** Every token starts with this, so a leaked one is recognisable (and other bearers skip the lookup). */
export const TOKEN_PREFIX = 'sbt_';

export const tokenNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a token name is 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit')
  .refine((n) => !['ADMIN_TOKEN', 'MEDIA_TOKEN'].includes(n.toUpperCase()), 'ADMIN_TOKEN and MEDIA_TOKEN name the tokens from the environment');
export const roleSchema = z.enum(roleNames);

const UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** `90d`, `12h`, `30m`, `2w` → milliseconds; undefined for anything else. */
export function parseLifetime(text: string): number | undefined {
  const m = /^(\d{1,6})([mhdw])$/.exec(text.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * UNITS[m[2]!]!;
  return ms > 0 ? ms : undefined;
}

export interface ApiTokenInfo {
  name: string;
  role: RoleName;
  createdAt: Date;
  createdBy: string;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  revokedBy: string | null;
  state: 'active' | 'expired' | 'revoked';
}

interface Row {
  name: string;
  role: RoleName;
  created_at: Date;
  created_by: string;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
  revoked_by: string | null;
}

function info(r: Row, now = Date.now()): ApiTokenInfo {
  return {
    name: r.name,
    role: r.role,
    createdAt: r.created_at,
    createdBy: r.created_by,
    expiresAt: r.expires_at,
    lastUsedAt: r.last_used_at,
    revokedAt: r.revoked_at,
    revokedBy: r.revoked_by,
    state: r.revoked_at ? 'revoked' : r.expires_at && r.expires_at.getTime() <= now ? 'expired' : 'active',
  };
}

/** A token's facts as the admin API and the CLI show them (never the secret). */
export const tokenJson = (t: ApiTokenInfo) => ({
  name: t.name,
  role: t.role,
  state: t.state,
  createdAt: t.createdAt.toISOString(),
  createdBy: t.createdBy,
  expiresAt: t.expiresAt?.toISOString() ?? null,
  lastUsedAt: t.lastUsedAt?.toISOString() ?? null,
  revokedAt: t.revokedAt?.toISOString() ?? null,
  revokedBy: t.revokedBy,
});

const hashOf = (token: string) => createHash('sha256').update(token, 'utf8').digest();

/** Who acts on tokens, for the audit trail and the created_by / revoked_by columns. */
export interface TokenActor {
  principal: Principal;
  /** The client address, or `cli`. */
  sourceAddress: string;
}

export class ApiTokenStore {
  constructor(
    private readonly pool: Pool,
    private readonly audit: AuditRecorder,
  ) {}

  /** Creates a token; the secret is in the answer and nowhere else. */
  async create(input: { name: string; role: RoleName; lifetimeMs?: number | undefined }, by: TokenActor): Promise<{ token: string; info: ApiTokenInfo }> {
    const name = tokenNameSchema.parse(input.name);
    const role = roleSchema.parse(input.role);
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const expiresAt = input.lifetimeMs === undefined ? null : new Date(Date.now() + input.lifetimeMs);
    const resources = [{ type: 'token', id: name }];
    const detail = { role, expires_at: expiresAt?.toISOString() ?? null };
    return withClient(this.pool, async (c) => {
      await c.query('BEGIN');
      try {
        const existing = await c.query<Row>('SELECT * FROM api_tokens WHERE name = $1 AND revoked_at IS NULL FOR UPDATE', [name]);
        if (existing.rows[0]) {
          await c.query('ROLLBACK');
          const e = info(existing.rows[0]);
          await this.audit.record({ action: 'token.created', principal: by.principal, outcome: 'failure', resources, sourceAddress: by.sourceAddress, detail: { ...detail, reason: 'name_taken' } });
          throw new SwitchboardError(
            'TOKEN_NAME_TAKEN',
            `a token named "${name}" exists (${e.state}${e.state === 'expired' ? ` since ${e.expiresAt?.toISOString()}` : ''}): revoke it first, or choose another name`,
          );
        }
        const r = await c.query<Row>(
          'INSERT INTO api_tokens (name, role, token_hash, created_by, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING *',
          [name, role, hashOf(token), principalLabel(by.principal), expiresAt],
        );
        await this.audit.record({ action: 'token.created', principal: by.principal, outcome: 'success', resources, sourceAddress: by.sourceAddress, detail });
        await c.query('COMMIT');
        return { token, info: info(r.rows[0]!) };
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        if ((err as { code?: string }).code === '23505') throw new SwitchboardError('TOKEN_NAME_TAKEN', `a token named "${name}" was just created: choose another name`);
        throw err;
      }
    });
  }

  /** Every token, newest first, revoked ones included (their names stay in the audit trail). */
  async list(): Promise<ApiTokenInfo[]> {
    const r = await this.pool.query<Row>('SELECT * FROM api_tokens ORDER BY created_at DESC, id DESC');
    const now = Date.now();
    return r.rows.map((row) => info(row, now));
  }

  /** Revokes the token of that name (expired ones too); it stops working at once. */
  async revoke(name: string, by: TokenActor): Promise<ApiTokenInfo> {
    const resources = [{ type: 'token', id: name }];
    return withClient(this.pool, async (c) => {
      await c.query('BEGIN');
      try {
        const r = await c.query<Row>('UPDATE api_tokens SET revoked_at = now(), revoked_by = $2 WHERE name = $1 AND revoked_at IS NULL RETURNING *', [
          name,
          principalLabel(by.principal),
        ]);
        if (!r.rows[0]) {
          await c.query('ROLLBACK');
          await this.audit.record({ action: 'token.revoked', principal: by.principal, outcome: 'failure', resources, sourceAddress: by.sourceAddress, detail: { reason: 'not_found' } });
          throw new SwitchboardError('TOKEN_NOT_FOUND', `no token named "${name}" that is not already revoked (see tokens list)`);
        }
        await this.audit.record({ action: 'token.revoked', principal: by.principal, outcome: 'success', resources, sourceAddress: by.sourceAddress, detail: { role: r.rows[0].role } });
        await c.query('COMMIT');
        return info(r.rows[0]);
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  /** The principal of a valid token; for a known one that is revoked or expired, which; null for an unknown one. */
  async authenticate(token: string): Promise<{ principal: Principal } | { refused: 'revoked' | 'expired'; name: string } | null> {
    if (!token.startsWith(TOKEN_PREFIX)) return null;
    const hash = hashOf(token);
    const r = await this.pool.query<Row & { id: string; token_hash: Buffer; expired: boolean }>(
      'SELECT id, name, role, token_hash, last_used_at, revoked_at, (expires_at IS NOT NULL AND expires_at <= now()) AS expired FROM api_tokens WHERE token_hash = $1',
      [hash],
    );
    const row = r.rows[0];
    if (!row || !timingSafeEqual(row.token_hash, hash)) return null;
    if (row.revoked_at) return { refused: 'revoked', name: row.name };
    if (row.expired) return { refused: 'expired', name: row.name };
    // Last use to the minute: one write per token a minute, not one per request.
    if (!row.last_used_at || Date.now() - row.last_used_at.getTime() > 60_000) {
      await this.pool.query('UPDATE api_tokens SET last_used_at = now() WHERE id = $1', [row.id]);
    }
    return { principal: { kind: 'token', id: row.name, display: row.name, role: row.role } };
  }
}
