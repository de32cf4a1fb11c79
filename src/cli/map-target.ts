/**
 * What `switchboard map` maps for: the channel destination that uses the mapping (given with
 * --channel, or found among the channel files), built as the gateway builds it, so that the output
 * is rendered and validated as that destination would (its bindings, its checks), and raw
 * webhooks are parsed by that channel's source.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { buildRuntimeChannel } from '../channels/build-channel.js';
import { loadChannelFile, type LoadedChannel } from '../channels/load-channel.js';
import { ConfigError, type ConfigIssue } from '../core/errors.js';
import { createLogger } from '../core/logger.js';
import type { ConnectorRegistry, DestinationInstance } from '../connectors/types.js';
import { effectiveChannelEnv, envMode } from '../mapping-tests/mapping-test-env.js';
import type { RuntimeChannel } from '../pipeline/runtime-channel.js';

export interface MapTarget {
  channel: RuntimeChannel;
  destination: DestinationInstance;
  /** The destination's connector kind, e.g. fhir_r4. */
  kind: string;
  /** The channel's source kind, e.g. whatsapp_cloud. */
  sourceKind: string;
  /** How it was chosen, for the analyst: "destination ehr (fhir_r4) of channels/x.yaml". */
  label: string;
  close(): Promise<void>;
}

/** A channel file's destinations that name this mapping, read without validating the file. */
function destinationsUsing(channelFile: string, mappingFile: string): { name: string; kind: string }[] {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(channelFile, 'utf8'));
  } catch {
    return [];
  }
  const destinations = (doc as { destinations?: unknown } | null)?.destinations;
  if (!Array.isArray(destinations)) return [];
  const found: { name: string; kind: string }[] = [];
  for (const d of destinations as unknown[]) {
    const { name, kind, mapping } = (d ?? {}) as { name?: unknown; kind?: unknown; mapping?: unknown };
    if (typeof mapping !== 'string' || typeof name !== 'string') continue;
    if (path.resolve(path.dirname(channelFile), mapping) === mappingFile) found.push({ name, kind: typeof kind === 'string' ? kind : '?' });
  }
  return found;
}

/** Channel files (top level of the channels folder, tests skipped) with a destination using `mappingFile`, in name order. */
export function channelsUsing(channelsDir: string, mappingFile: string): { file: string; destination: string; kind: string }[] {
  let names: string[];
  try {
    names = readdirSync(channelsDir).filter((n) => /\.ya?ml$/.test(n) && !/\.test\.ya?ml$/.test(n) && !n.startsWith('.'));
  } catch {
    return [];
  }
  return names.sort().flatMap((n) => {
    const file = path.join(channelsDir, n);
    return destinationsUsing(file, mappingFile).map((d) => ({ file, destination: d.name, kind: d.kind }));
  });
}

export class MapTargetError extends Error {
  constructor(
    message: string,
    readonly issues: readonly ConfigIssue[] = [],
  ) {
    super(message);
    this.name = 'MapTargetError';
  }
}

/**
 * Loads and builds a channel as the gateway would (development defaults and sandbox addresses
 * filled in), and picks the destination that uses `mappingFile` (or the one named).
 */
export async function buildMapTarget(
  channelFile: string,
  mappingFile: string | undefined,
  destinationName: string | undefined,
  ctx: { registry: ConnectorRegistry; env: Readonly<Record<string, string | undefined>>; shown: (f: string) => string },
): Promise<MapTarget> {
  const { env } = effectiveChannelEnv(ctx.env, envMode(ctx.env));
  let channel: RuntimeChannel;
  let loaded: LoadedChannel;
  try {
    loaded = await loadChannelFile(channelFile, { registry: ctx.registry, env });
    channel = await buildRuntimeChannel(loaded, ctx.registry, createLogger({ level: 'silent' }));
  } catch (err) {
    if (err instanceof ConfigError) throw new MapTargetError(`${ctx.shown(channelFile)} does not load`, err.issues);
    throw err;
  }
  const close = async () => {
    await Promise.allSettled(channel.destinations.map((d) => d.close()));
  };
  const names = channel.destinations.map((d) => d.name);
  const candidates = channel.destinations.filter(
    (d) => (destinationName === undefined || d.name === destinationName) && (mappingFile === undefined || d.mapping.file === mappingFile),
  );
  const destination = candidates.length === 1 ? candidates[0] : undefined;
  if (destination === undefined) {
    await close();
    const which =
      destinationName !== undefined
        ? `has no destination "${destinationName}"${mappingFile === undefined ? '' : ` using ${ctx.shown(mappingFile)}`} (its destinations: ${names.join(', ')})`
        : candidates.length === 0
          ? `has no destination using ${mappingFile === undefined ? 'a mapping' : ctx.shown(mappingFile)} (its destinations: ${names.join(', ')})`
          : `has several destinations${mappingFile === undefined ? '' : ` using ${ctx.shown(mappingFile)}`}: say which with --destination (${candidates.map((d) => d.name).join(', ')})`;
    throw new MapTargetError(`${ctx.shown(channelFile)} ${which}`);
  }
  const kind = loaded.config.destinations.find((d) => d.name === destination.name)?.kind ?? '?';
  return { channel, destination, kind, sourceKind: loaded.config.source.kind, label: `destination ${destination.name} (${kind}) of ${ctx.shown(channelFile)}`, close };
}
