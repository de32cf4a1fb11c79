/**
 * The live set of channels, with hot reload: edits to channel files or their mappings are loaded
 * and built in the background; a valid set replaces the running one atomically, an invalid one
 * is refused (with every issue logged and kept for the admin API) and the last good set keeps
 * running. Jobs already in flight keep the destination instance they started with.
 */
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { ConfigError, formatIssue, type ConfigIssue } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { RuntimeChannel } from '../pipeline/runtime-channel.js';
import { buildRuntimeChannel } from './build-channel.js';
import type { ConnectorRegistry } from '../connectors/types.js';
import { loadChannelDirectory } from './load-channel.js';

export interface ReloadStatus {
  ok: boolean;
  at: string;
  /** Mapping versions in use, by channel and destination. */
  versions: Record<string, Record<string, string>>;
  issues: ConfigIssue[];
  error?: string;
}

export interface ChannelRuntimeOptions {
  dir: string;
  /** Further channel folders loaded with `dir` (the zero-config run's sandbox channels). */
  extraDirs?: readonly string[];
  registry: ConnectorRegistry;
  env: Record<string, string | undefined>;
  logger: Logger;
}

async function buildAll(o: ChannelRuntimeOptions): Promise<RuntimeChannel[]> {
  const loaded = [];
  for (const dir of [o.dir, ...(o.extraDirs ?? [])]) loaded.push(...(await loadChannelDirectory(dir, { registry: o.registry, env: o.env })));
  const issues: ConfigIssue[] = [];
  const ids = new Set<string>();
  for (const l of loaded) {
    if (ids.has(l.config.id)) issues.push({ file: l.file, line: 1, column: 1, message: `channel id "${l.config.id}" is used by a channel of another folder too` });
    ids.add(l.config.id);
  }
  if (issues.length > 0) throw new ConfigError(issues);
  const channels: RuntimeChannel[] = [];
  for (const l of loaded) channels.push(await buildRuntimeChannel(l, o.registry, o.logger));
  return channels;
}

function versionsOf(channels: readonly RuntimeChannel[]): ReloadStatus['versions'] {
  return Object.fromEntries(channels.map((c) => [c.id, Object.fromEntries(c.destinations.map((d) => [d.name, d.mapping.version]))]));
}

export class ChannelRuntime {
  private current: readonly RuntimeChannel[] = [];
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private reloading: Promise<ReloadStatus> | undefined;
  private readonly listeners: ((channels: readonly RuntimeChannel[], previous: readonly RuntimeChannel[]) => Promise<void> | void)[] = [];
  private lastStatus: ReloadStatus;

  constructor(private readonly o: ChannelRuntimeOptions) {
    this.lastStatus = { ok: true, at: new Date().toISOString(), versions: {}, issues: [] };
  }

  /** Loads the channels the first time; throws ConfigError so the process refuses to start. */
  async load(): Promise<readonly RuntimeChannel[]> {
    this.current = await buildAll(this.o);
    this.lastStatus = { ok: true, at: new Date().toISOString(), versions: versionsOf(this.current), issues: [] };
    return this.current;
  }

  channels(): readonly RuntimeChannel[] {
    return this.current;
  }

  status(): ReloadStatus {
    return this.lastStatus;
  }

  /** Called after a successful reload with the new and the previous channels. */
  onChange(listener: (channels: readonly RuntimeChannel[], previous: readonly RuntimeChannel[]) => Promise<void> | void): void {
    this.listeners.push(listener);
  }

  /** Reloads now. Never throws: an invalid set is refused and reported in the status. */
  async reload(): Promise<ReloadStatus> {
    if (this.reloading) return this.reloading;
    this.reloading = this.doReload().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private async doReload(): Promise<ReloadStatus> {
    const at = new Date().toISOString();
    let next: RuntimeChannel[];
    try {
      next = await buildAll(this.o);
    } catch (err) {
      const issues = err instanceof ConfigError ? err.issues : [];
      const message = err instanceof ConfigError ? 'invalid channel configuration' : (err as Error).message;
      this.lastStatus = { ok: false, at, versions: versionsOf(this.current), issues, error: message };
      this.o.logger.error(
        { reload: 'refused', issues: issues.map(formatIssue), error: message },
        'channel reload refused; the last good configuration keeps running',
      );
      return this.lastStatus;
    }
    const previous = this.current;
    this.current = next;
    this.lastStatus = { ok: true, at, versions: versionsOf(next), issues: [] };
    this.o.logger.info({ reload: 'applied', versions: this.lastStatus.versions }, 'channels reloaded');
    for (const l of this.listeners) {
      try {
        await l(next, previous);
      } catch (err) {
        this.o.logger.error({ err: { message: (err as Error).message } }, 'error while applying a channel reload');
      }
    }
    // Destinations that were replaced are closed once the new set is in place.
    const kept = new Set(next.flatMap((c) => c.destinations));
    await Promise.allSettled(previous.flatMap((c) => c.destinations.filter((d) => !kept.has(d)).map((d) => d.close())));
    return this.lastStatus;
  }

  /** Watches the channel directory and every mapping's directory; reloads debounced. */
  watch(debounceMs = 250): void {
    const dirs = new Set<string>([this.o.dir, ...(this.o.extraDirs ?? [])].map((d) => path.resolve(d)));
    for (const c of this.current) {
      for (const d of c.destinations) {
        dirs.add(path.dirname(path.resolve(d.mapping.file)));
        // Code tables a mapping reads ($lookupTable) reload it too.
        for (const dep of d.mapping.dependencies ?? []) dirs.add(path.dirname(path.resolve(dep)));
      }
    }
    for (const dir of dirs) {
      try {
        const w = watch(dir, { persistent: false }, (_event, file) => {
          if (file && !/\.(ya?ml|jsonata|json|csv)$/i.test(String(file))) return;
          if (this.timer) clearTimeout(this.timer);
          this.timer = setTimeout(() => void this.reload(), debounceMs);
        });
        w.on('error', (err) => this.o.logger.warn({ dir, err: { message: err.message } }, 'file watcher error'));
        this.watchers.push(w);
      } catch (err) {
        this.o.logger.warn({ dir, err: { message: (err as Error).message } }, 'cannot watch directory; hot reload disabled for it');
      }
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
    this.watchers = [];
    await this.reloading;
    await Promise.allSettled(this.current.flatMap((c) => c.destinations.map((d) => d.close())));
  }
}
