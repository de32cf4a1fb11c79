/**
 * Process configuration from environment variables, validated at start. The names are an
 * interface other tooling relies on: never rename one.
 */
import { z } from 'zod';

/** Development defaults that make `npm install && npm start` work with no configuration. */
export const devDefaults = {
  WHATSAPP_APP_SECRET: 'switchboard-dev-app-secret',
  WHATSAPP_VERIFY_TOKEN: 'switchboard-dev-verify-token',
} as const;

const emptyAsUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
const optionalString = z.preprocess(emptyAsUndefined, z.string().optional());
const optionalUrl = (protocols: RegExp, what: string) =>
  z.preprocess(
    emptyAsUndefined,
    z
      .string()
      .refine((v) => {
        try {
          return protocols.test(new URL(v).protocol);
        } catch {
          return false;
        }
      }, `must be a ${what} URL`)
      .optional(),
  );

/**
 * REDIS_CLUSTER_NODES: seed nodes of a Redis Cluster, comma-separated, each `host:port` or a
 * `redis://` / `rediss://` URL (which may carry the username and password). Scheme and
 * credentials apply to every node, so the nodes that give them must agree.
 */
export interface RedisClusterNodes {
  nodes: { host: string; port: number }[];
  username?: string;
  password?: string;
  tls: boolean;
}

export function parseRedisClusterNodes(value: string): { ok: true; value: RedisClusterNodes } | { ok: false; problem: string } {
  const nodes: { host: string; port: number }[] = [];
  let auth: { tls: boolean; username: string; password: string; from: string } | undefined;
  for (const raw of value.split(',')) {
    const entry = raw.trim();
    if (entry === '') return { ok: false, problem: 'an empty entry: host:port or redis://host:port, separated by commas' };
    let host: string;
    let port: number;
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(entry)) {
      let u: URL;
      try {
        u = new URL(entry);
      } catch {
        return { ok: false, problem: 'a node URL does not parse (its text is not repeated here: it may hold a password)' };
      }
      if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return { ok: false, problem: `"${u.protocol}//…": must be redis:// or rediss://` };
      if (u.pathname !== '' && u.pathname !== '/' && u.pathname !== '/0') return { ok: false, problem: `"${u.host}${u.pathname}": a Redis Cluster has only database 0` };
      const mine = { tls: u.protocol === 'rediss:', username: decodeURIComponent(u.username), password: decodeURIComponent(u.password), from: u.host };
      if (auth && (auth.tls !== mine.tls || auth.username !== mine.username || auth.password !== mine.password)) {
        return { ok: false, problem: `${auth.from} and ${mine.from} differ in scheme or credentials: one scheme and one set of credentials serve every node` };
      }
      auth = mine;
      host = u.hostname.replace(/^\[(.*)\]$/, '$1');
      port = u.port === '' ? 6379 : Number(u.port);
    } else {
      const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry);
      if (!m) return { ok: false, problem: `"${entry}": expected host:port or redis://host:port` };
      host = m[1]!.replace(/^\[(.*)\]$/, '$1');
      port = Number(m[2]);
    }
    if (port < 1 || port > 65535) return { ok: false, problem: `"${entry}": port out of range` };
    if (!nodes.some((n) => n.host === host && n.port === port)) nodes.push({ host, port });
  }
  return {
    ok: true,
    value: {
      nodes,
      tls: auth?.tls ?? false,
      ...(auth !== undefined && auth.username !== '' && { username: auth.username }),
      ...(auth !== undefined && auth.password !== '' && { password: auth.password }),
    },
  };
}

const milliseconds = (min: number, def: number) => z.preprocess(emptyAsUndefined, z.coerce.number().int().min(min).default(def));

/** `900s`, `30m`, `24h`, `7d` or `0`, as a number of `unit`s (1: seconds, 1000: milliseconds). */
const duration = (def: string, rule: string, unit: number) =>
  z.preprocess(
    emptyAsUndefined,
    z
      .string()
      .regex(/^(0|\d{1,7}[smhd])$/, rule)
      .default(def)
      .transform((v) => (v === '0' ? 0 : Number(v.slice(0, -1)) * { s: 1, m: 60, h: 3600, d: 86_400 }[v.slice(-1) as 's' | 'm' | 'h' | 'd'] * unit)),
  );

export const envSchema = z.object({
  PORT: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(0).max(65535).default(8080)),
  HOST: optionalString,
  DATA_DIR: z.preprocess(emptyAsUndefined, z.string().default('.data')),
  SWITCHBOARD_RUNTIME_DIR: z.preprocess(emptyAsUndefined, z.string().default('/var/lib/switchboard-postgres')),
  DATABASE_URL: optionalUrl(/^postgres(ql)?:$/, 'postgres://'),
  REDIS_URL: optionalUrl(/^rediss?:$/, 'redis:// or rediss://'),
  REDIS_CLUSTER_NODES: z.preprocess(
    emptyAsUndefined,
    z
      .string()
      .transform((v, ctx) => {
        const r = parseRedisClusterNodes(v);
        if (r.ok) return r.value;
        ctx.addIssue({ code: 'custom', message: r.problem });
        return z.NEVER;
      })
      .optional(),
  ),
  QUEUE_PREFIX: z.preprocess(emptyAsUndefined, z.string().regex(/^[A-Za-z0-9_{}-]+$/, 'letters, digits, _, -, {}').default('switchboard')),
  FHIR_BASE_URL: optionalUrl(/^https?:$/, 'http:// or https://'),
  LAB_MLLP_URL: optionalUrl(/^mllps?:$/, 'mllp:// or mllps://'),
  INSURER_MLLP_URL: optionalUrl(/^mllps?:$/, 'mllp:// or mllps://'),
  FHIR_SANDBOX_PORT: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(0).max(65535).default(0)),
  CHANNELS_DIR: z.preprocess(emptyAsUndefined, z.string().default('channels')),
  PUBLIC_BASE_URL: optionalUrl(/^https?:$/, 'http:// or https://'),
  MEDIA_TOKEN: z.preprocess(emptyAsUndefined, z.string().min(16, 'must be at least 16 characters').optional()),
  ENCRYPTION_KEYS: optionalString,
  ENCRYPTION_KEYS_FILE: optionalString,
  AUDIT_RETENTION_YEARS: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1).default(6)),
  ADMIN_TOKEN: z.preprocess(emptyAsUndefined, z.string().min(16, 'must be at least 16 characters').optional()),
  TRUST_PROXY: z.preprocess(emptyAsUndefined, z.enum(['true', 'false']).default('false')).transform((v) => v === 'true'),
  AUTH_FAILURE_LIMIT: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1).max(10_000).default(10)),
  AUTH_FAILURE_WINDOW_SECONDS: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1).max(86_400).default(60)),
  AUTH_LOCKOUT_SECONDS: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1).max(86_400).default(60)),
  OIDC_ISSUER: optionalUrl(/^https?:$/, 'http:// or https://'),
  OIDC_AUDIENCE: optionalString,
  OIDC_ROLE_CLAIM: z.preprocess(emptyAsUndefined, z.string().regex(/^[A-Za-z0-9_:/.-]+$/, 'a claim name, dots for nested claims (realm_access.roles)').default('roles')),
  OIDC_ROLE_MAP: z.preprocess(
    emptyAsUndefined,
    z
      .string()
      .regex(/^\s*[^=,]+=(viewer|operator|analyst|admin)\s*(,\s*[^=,]+=(viewer|operator|analyst|admin)\s*)*$/, 'claim-value=role pairs separated by commas, roles viewer, operator, analyst or admin')
      .optional(),
  ),
  OIDC_ALGORITHMS: z.preprocess(
    emptyAsUndefined,
    z
      .string()
      .regex(/^((RS|PS|ES)(256|384|512)|EdDSA)(,((RS|PS|ES)(256|384|512)|EdDSA))*$/, 'asymmetric JWS algorithms separated by commas, e.g. RS256,ES256')
      .optional(),
  ),
  /** The console's public client at the provider (authorization code + PKCE, no secret). */
  OIDC_CONSOLE_CLIENT_ID: z.preprocess(emptyAsUndefined, z.string().min(1).default('switchboard-console')),
  OIDC_CONSOLE_SCOPE: z.preprocess(emptyAsUndefined, z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/, 'scopes separated by single spaces').default('openid')),
  /**
   * The resource indicator (RFC 8707) the console sends with its sign-in: default OIDC_AUDIENCE;
   * `none` sends none, for providers that refuse the parameter (Microsoft Entra ID's v2 endpoints:
   * the audience comes from OIDC_CONSOLE_SCOPE there).
   */
  OIDC_CONSOLE_RESOURCE: z.preprocess(emptyAsUndefined, z.string().regex(/^(none|[A-Za-z][A-Za-z0-9+.-]*:\S+)$/, 'an absolute URI (the API audience), or none').optional()),
  CONSOLE_SESSION_MINUTES: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1).max(24 * 60).default(30)),
  LOG_LEVEL: z.preprocess(emptyAsUndefined, z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info')),
  SWITCHBOARD_ROLE: z.preprocess(emptyAsUndefined, z.enum(['all', 'http', 'worker']).default('all')),
  SWITCHBOARD_ENV: z.preprocess(emptyAsUndefined, z.enum(['development', 'production']).default('development')),
  REDIS_DURABILITY: z.preprocess(emptyAsUndefined, z.enum(['strict', 'warn']).default('strict')),
  JOB_LOCK_MS: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1000).default(30_000)),
  SHUTDOWN_TIMEOUT_MS: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(0).default(10_000)),
  HTTP_HEADERS_TIMEOUT_MS: milliseconds(100, 10_000),
  HTTP_REQUEST_TIMEOUT_MS: milliseconds(100, 30_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: milliseconds(100, 65_000),
  TLS_CERT_FILE: optionalString,
  TLS_KEY_FILE: optionalString,
  TLS_RELOAD_INTERVAL_MS: milliseconds(100, 10_000),
  STORE_PRUNE_INTERVAL: duration('1h', 'a duration such as 30m, 1h or 1d (0: the gateway does not prune; run switchboard store prune)', 1000),
  MEDIA_LINK_TTL: duration('7d', 'a duration such as 900s, 24h or 7d (0: unsigned links that need MEDIA_TOKEN)', 1),
});
export type EnvConfig = z.infer<typeof envSchema>;

export class EnvError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid environment:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'EnvError';
  }
}

/** Rules across variables (envSchema stays a plain object: its keys are the documented names). */
const envRules = envSchema.superRefine((v, ctx) => {
  if (v.HTTP_HEADERS_TIMEOUT_MS > v.HTTP_REQUEST_TIMEOUT_MS) {
    ctx.addIssue({ code: 'custom', path: ['HTTP_HEADERS_TIMEOUT_MS'], message: `must not exceed HTTP_REQUEST_TIMEOUT_MS (${v.HTTP_REQUEST_TIMEOUT_MS})` });
  }
  if (v.REDIS_URL !== undefined && v.REDIS_CLUSTER_NODES !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['REDIS_CLUSTER_NODES'], message: 'set either REDIS_URL (one Redis server) or REDIS_CLUSTER_NODES (a Redis Cluster), not both' });
  }
  if ((v.TLS_CERT_FILE === undefined) !== (v.TLS_KEY_FILE === undefined)) {
    const [missing, given] = v.TLS_CERT_FILE === undefined ? ['TLS_CERT_FILE', 'TLS_KEY_FILE'] : ['TLS_KEY_FILE', 'TLS_CERT_FILE'];
    ctx.addIssue({ code: 'custom', path: [missing], message: `must be set together with ${given} (HTTPS needs both the certificate and its key, or neither)` });
  }
});

export function parseEnv(env: Readonly<Record<string, string | undefined>>): EnvConfig {
  const r = envRules.safeParse(env);
  if (!r.success) {
    throw new EnvError(r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  if (r.data.OIDC_ISSUER !== undefined && r.data.OIDC_AUDIENCE === undefined) {
    throw new EnvError(['OIDC_AUDIENCE: required with OIDC_ISSUER (the audience the provider puts into access tokens for this API)']);
  }
  return r.data;
}

/**
 * The environment channel files are interpolated from: the process environment, plus the
 * development defaults when not in production. Returns which defaults were applied, so the
 * start-up banner can say so loudly.
 */
export function effectiveEnv(
  env: Readonly<Record<string, string | undefined>>,
  mode: EnvConfig['SWITCHBOARD_ENV'],
): { env: Record<string, string | undefined>; defaulted: string[] } {
  const out: Record<string, string | undefined> = { ...env };
  const defaulted: string[] = [];
  if (mode !== 'production') {
    for (const [k, v] of Object.entries(devDefaults)) {
      if (out[k] === undefined || out[k] === '') {
        out[k] = v;
        defaulted.push(k);
      }
    }
  }
  return { env: out, defaulted };
}
