/**
 * The FHIR server the bench delivers to: the project's sandbox (Medplum FhirRouter, validation on
 * every write) started in the bench process, over a MemoryRepository subclass that
 *
 * 1. records, for every Communication created, its message identifier and the monotonic time it
 *    came to exist (that instant is the end of a message's end-to-end latency), and
 * 2. answers the conditional-create search `Communication?identifier=<system>|<value>` from an
 *    index instead of MemoryRepository's full scan.
 *
 * Why 2: MemoryRepository.search evaluates every stored resource of the type
 * (`matchesSearchRequest`, ≈7 µs each), so each conditional create costs O(stored
 * Communications): ≈2 ms at 300 stored, ≈30 ms at 3 000 (measured). Left as is, the sandbox
 * becomes the bottleneck of every scenario within seconds and the bench measures Medplum's
 * in-memory store, not the pipeline. The index returns exactly what the scan would: candidates
 * are found by identifier and then checked with the same `matchesSearchRequest`. Any other
 * search (Patient by phone, anything with sort, include, several filters) goes to the original
 * implementation. `--fhir-scan` turns the index off.
 */
import { deepClone, matchesSearchRequest, parseSearchRequest, type SearchRequest, type WithId } from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';
import type { Bundle, BundleEntry, Resource } from '@medplum/fhirtypes';
import { DEMO_PATIENT_IDENTIFIER_SYSTEM, DEMO_PATIENT_IDENTIFIER_VALUE, startFhirSandbox, type FhirSandbox } from '../src/sandbox/fhir-sandbox.js';
import { monoMs } from './protocol.js';

export const MESSAGE_IDENTIFIER_SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';

/** Search request keys the index understands; anything else goes to the full scan. */
const INDEXABLE_KEYS: ReadonlySet<string> = new Set(['resourceType', 'filters', 'count', 'offset', 'sortRules', 'total']);

export class RecordingRepository extends MemoryRepository {
  private readonly byIdentifier = new Map<string, Set<string>>();
  /** Called for every Communication created with an identifier in MESSAGE_IDENTIFIER_SYSTEM. */
  onCommunication: ((identifierValue: string, atMs: number) => void) | undefined;
  indexed = 0;
  scanned = 0;
  created = 0;

  constructor(private readonly useIndex: boolean) {
    super();
  }

  override clear(): void {
    super.clear();
    this.byIdentifier.clear();
  }

  override async createResource<T extends Resource>(resource: T): Promise<WithId<T>> {
    const created = await super.createResource(resource);
    this.created++;
    if (created.resourceType === 'Communication') {
      const at = monoMs();
      for (const id of created.identifier ?? []) {
        if (id.system === undefined || id.value === undefined) continue;
        const key = `${id.system}|${id.value}`.toLowerCase();
        let ids = this.byIdentifier.get(key);
        if (!ids) this.byIdentifier.set(key, (ids = new Set()));
        ids.add(created.id);
        if (id.system === MESSAGE_IDENTIFIER_SYSTEM) this.onCommunication?.(id.value, at);
      }
    }
    return created;
  }

  override async search<T extends Resource>(searchRequest: SearchRequest<T>): Promise<Bundle<WithId<T>>> {
    const key = this.useIndex ? indexKey(searchRequest) : undefined;
    if (key === undefined) {
      this.scanned++;
      return super.search(searchRequest);
    }
    this.indexed++;
    const matches: WithId<T>[] = [];
    for (const id of this.byIdentifier.get(key) ?? []) {
      let resource: WithId<T>;
      try {
        resource = await super.readResource<WithId<T>>(searchRequest.resourceType, id);
      } catch {
        continue; // deleted
      }
      if (matchesSearchRequest(resource, searchRequest as SearchRequest)) matches.push(resource);
    }
    let entry: BundleEntry<WithId<T>>[] = matches.map((resource) => ({ resource: deepClone(resource) }));
    if (searchRequest.offset !== undefined) entry = entry.slice(searchRequest.offset);
    if (searchRequest.count !== undefined) entry = entry.slice(0, searchRequest.count);
    return { resourceType: 'Bundle', type: 'searchset', ...(entry.length > 0 ? { entry } : {}), total: matches.length };
  }
}

/** `Communication?identifier=<system>|<value>` (one value, nothing else) -> the index key. */
function indexKey(req: SearchRequest): string | undefined {
  if (req.resourceType !== 'Communication') return undefined;
  if (Object.keys(req).some((k) => !INDEXABLE_KEYS.has(k))) return undefined;
  if (req.sortRules !== undefined && req.sortRules.length > 0) return undefined;
  const [filter, ...rest] = req.filters ?? [];
  if (!filter || rest.length > 0) return undefined;
  if (filter.code !== 'identifier' || filter.operator !== 'eq') return undefined;
  const value = filter.value;
  if (!value.includes('|') || value.startsWith('|') || value.includes(',')) return undefined;
  return value.toLowerCase();
}

export interface RecordingFhirServer {
  sandbox: FhirSandbox;
  repo: RecordingRepository;
  /** The seeded demo Patient, as the `$patient` binding the mapping receives. */
  patient: { reference: string; display: string };
}

export async function startRecordingFhirServer(opts: { useIndex: boolean }): Promise<RecordingFhirServer> {
  const repo = new RecordingRepository(opts.useIndex);
  const sandbox = await startFhirSandbox({ port: 0, host: '127.0.0.1', seed: true, repo });
  const found = await repo.searchResources(
    parseSearchRequest(`Patient?identifier=${encodeURIComponent(DEMO_PATIENT_IDENTIFIER_SYSTEM)}|${encodeURIComponent(DEMO_PATIENT_IDENTIFIER_VALUE)}`),
  );
  const patient = found[0];
  if (!patient) throw new Error('the FHIR sandbox did not seed its demo Patient');
  return { sandbox, repo, patient: { reference: `Patient/${patient.id}`, display: 'Jane Demo' } };
}
