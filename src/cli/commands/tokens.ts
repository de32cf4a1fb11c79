/**
 * `switchboard tokens create|list|revoke`: named API tokens, through a running gateway's admin API
 * (permission tokens.manage) or, with --offline, directly in the database. `create` prints the
 * token once, alone on stdout (so `TOKEN=$(switchboard tokens create ...)` works); it cannot be
 * shown again, only revoked and replaced.
 */
import { z } from 'zod';
import { SwitchboardError } from '../../core/errors.js';
import { roleNames } from '../../core/principal.js';
import { ApiTokenStore, parseLifetime, roleSchema, tokenJson, tokenNameSchema } from '../../store/api-token-store.js';
import { UsageError, parseCommandArgs } from '../args.js';
import { connectGateway, gatewayOptions } from '../gateway-client.js';
import { EXIT_FAILURES, EXIT_OK, type CliIo } from '../io.js';
import { cliPrincipal, openStoreAccess } from '../store-access.js';

const tokenSchema = z.object({
  name: z.string(),
  role: z.string(),
  state: z.string(),
  createdAt: z.string(),
  createdBy: z.string(),
  expiresAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  revokedBy: z.string().nullable(),
});
type TokenView = z.infer<typeof tokenSchema>;
const createdSchema = tokenSchema.extend({ token: z.string() });

/** The three operations, the same whether they go through the gateway or to the database. */
interface TokenBackend {
  create(name: string, role: string, expires: string | undefined): Promise<z.infer<typeof createdSchema>>;
  list(): Promise<TokenView[]>;
  revoke(name: string): Promise<TokenView>;
  close(): Promise<void>;
}

function gatewayBackend(io: CliIo, options: { url?: string | undefined; token?: string | undefined }): TokenBackend {
  const client = connectGateway(io, options);
  return {
    create: async (name, role, expires) => createdSchema.parse(await client.postJson('/admin/tokens', { name, role, ...(expires !== undefined && { expires }) }, 'create')),
    list: async () => z.object({ items: z.array(tokenSchema) }).parse(await client.getJson('/admin/tokens', 'list')).items,
    revoke: async (name) => tokenSchema.parse(await client.postJson(`/admin/tokens/${encodeURIComponent(name)}/revoke`, {}, 'revoke')),
    close: async () => undefined,
  };
}

async function offlineBackend(io: CliIo): Promise<TokenBackend> {
  const access = await openStoreAccess(io);
  const tokens = new ApiTokenStore(access.pool, access.audit);
  const by = { principal: cliPrincipal(), sourceAddress: 'cli' };
  return {
    create: async (name, role, expires) => {
      const c = await tokens.create({ name, role: roleSchema.parse(role), lifetimeMs: expires === undefined ? undefined : parseLifetime(expires) }, by);
      return { ...tokenJson(c.info), token: c.token };
    },
    list: async () => (await tokens.list()).map(tokenJson),
    revoke: async (name) => tokenJson(await tokens.revoke(name, by)),
    close: () => access.close(),
  };
}

function row(t: TokenView): string {
  const until = t.revokedAt ? `revoked ${t.revokedAt} by ${t.revokedBy ?? '?'}` : t.expiresAt ? `${t.state === 'expired' ? 'expired' : 'expires'} ${t.expiresAt}` : 'no expiry';
  return `${t.name.padEnd(24)} ${t.role.padEnd(8)} ${t.state.padEnd(7)}  created ${t.createdAt} by ${t.createdBy}; ${until}; last used ${t.lastUsedAt ?? 'never'}`;
}

export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseCommandArgs(rest, {
    ...gatewayOptions,
    offline: { type: 'boolean', default: false },
    name: { type: 'string' },
    role: { type: 'string' },
    expires: { type: 'string' },
    format: { type: 'string', default: 'text' },
  });
  if (sub !== 'create' && sub !== 'list' && sub !== 'revoke') {
    throw new UsageError(sub === undefined ? 'give a subcommand: create, list or revoke' : `unknown subcommand "${sub}"`);
  }
  if (values.format !== 'text' && values.format !== 'json') throw new UsageError(`--format ${values.format}: text or json`);
  if (values.offline && (values.url !== undefined || values.token !== undefined)) throw new UsageError('--offline works on the database: it takes no --url or --token');
  let name: string | undefined;
  if (sub === 'create') {
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const n = tokenNameSchema.safeParse(values.name);
    if (values.name === undefined) throw new UsageError('give --name <name>');
    if (!n.success) throw new UsageError(`--name ${values.name}: ${n.error.issues[0]?.message}`);
    if (values.role === undefined || !roleSchema.safeParse(values.role).success) throw new UsageError(`give --role ${roleNames.join('|')}`);
    if (values.expires !== undefined && parseLifetime(values.expires) === undefined) throw new UsageError(`--expires ${values.expires}: a lifetime such as 30m, 12h, 90d or 2w`);
    name = n.data;
  } else if (sub === 'revoke') {
    if (positionals.length !== 1) throw new UsageError('give the name of the token to revoke: tokens revoke <name>');
    name = positionals[0];
  } else if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  for (const o of ['name', 'role', 'expires'] as const) if (sub !== 'create' && values[o] !== undefined) throw new UsageError(`--${o} is for tokens create`);

  const backend = values.offline ? await offlineBackend(io) : gatewayBackend(io, values);
  try {
    if (sub === 'create') {
      const c = await backend.create(name!, values.role!, values.expires);
      if (values.format === 'json') io.stdout(`${JSON.stringify(c)}\n`);
      else {
        io.stdout(`${c.token}\n`);
        io.stderr(
          `token "${c.name}" created (role ${c.role}, ${c.expiresAt ? `expires ${c.expiresAt}` : 'no expiry'}). ` +
            'It is shown this once and stored only as a hash: keep it in a secret store now. Use it as Authorization: Bearer <token>.\n',
        );
      }
    } else if (sub === 'list') {
      const items = await backend.list();
      if (values.format === 'json') io.stdout(`${JSON.stringify(items)}\n`);
      else io.stdout(items.length === 0 ? 'no API tokens (create one: switchboard tokens create --name <name> --role <role>)\n' : `${items.map(row).join('\n')}\n`);
    } else {
      const t = await backend.revoke(name!);
      if (values.format === 'json') io.stdout(`${JSON.stringify(t)}\n`);
      else io.stdout(`token "${t.name}" revoked; it no longer authenticates\n`);
    }
    return EXIT_OK;
  } catch (err) {
    if (err instanceof SwitchboardError && (err.code === 'TOKEN_NAME_TAKEN' || err.code === 'TOKEN_NOT_FOUND')) {
      io.stderr(`switchboard tokens ${sub}: ${err.message}\n`);
      return EXIT_FAILURES;
    }
    throw err;
  } finally {
    await backend.close();
  }
}
