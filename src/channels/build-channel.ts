/** Turns a validated channel file into the connectors and compiled expressions the pipeline runs. */
import type { Logger } from '../core/logger.js';
import { ConfigError } from '../core/errors.js';
import { compileMapping, loadMapping, type CompiledMapping } from '../mapping/jsonata-mapping.js';
import type { RuntimeChannel } from '../pipeline/runtime-channel.js';
import type { ConnectorRegistry } from '../connectors/types.js';
import type { LoadedChannel } from './load-channel.js';
import { channelRetention } from './channel-schema.js';

export async function buildRuntimeChannel(loaded: LoadedChannel, registry: ConnectorRegistry, logger: Logger): Promise<RuntimeChannel> {
  const { config } = loaded;
  const sourceConnector = registry.sources.find((s) => s.kind === config.source.kind);
  if (!sourceConnector) throw new ConfigError([{ file: loaded.file, line: 1, column: 1, message: `unknown source kind ${config.source.kind}` }]);
  const source = sourceConnector.create(config.source, { channelId: loaded.id });
  const filter = config.filter === undefined ? undefined : compileMapping(`${loaded.file}#filter`, config.filter);
  const destinations = [];
  const routing = new Map<string, CompiledMapping>();
  for (const d of config.destinations) {
    const connector = registry.destinations.find((c) => c.kind === d.kind);
    const mappingFile = loaded.mappingFiles[d.name];
    if (!connector || mappingFile === undefined) {
      throw new ConfigError([{ file: loaded.file, line: 1, column: 1, message: `destination ${d.name}: unknown kind or mapping` }]);
    }
    const mapping = await loadMapping(mappingFile);
    if (d.when !== undefined) routing.set(d.name, compileMapping(`${loaded.file}#destinations.${d.name}.when`, d.when));
    destinations.push(connector.create(d, { channelId: loaded.id, logger: logger.child({ channel: loaded.id, destination: d.name }), mapping }));
  }
  return { id: loaded.id, file: loaded.file, source, filter, destinations, routing, media: config.media, retention: channelRetention(config.retention) };
}
