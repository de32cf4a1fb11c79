/**
 * An audit trail entry as a FHIR R4 AuditEvent (https://hl7.org/fhir/R4/auditevent.html), in the
 * shapes of the Basic Audit Log Patterns: `type` from DICOM (Patient Record, Application Activity,
 * User Authentication, Export) or `rest`; `subtype` the Switchboard action; `agent` the principal
 * with its network address; `source` Switchboard; `entity` the resources by identifier, the chain
 * hashes as entity details.
 */
import type { AuditEvent, AuditEventEntity, Coding } from '@medplum/fhirtypes';
import type { AuditAction, RecordedAuditEntry } from '../core/audit.js';
import { principalLabel } from '../core/principal.js';
import { auditEntryJson } from '../core/audit-json.js';

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
export const AUDIT_ACTION_SYSTEM = 'urn:switchboard:audit-action';

const patientRecord: Coding = { system: DCM, code: '110110', display: 'Patient Record' };
const applicationActivity: Coding = { system: DCM, code: '110100', display: 'Application Activity' };
const userAuthentication: Coding = { system: DCM, code: '110114', display: 'User Authentication' };
const exportType: Coding = { system: DCM, code: '110106', display: 'Export' };
const securityAlert: Coding = { system: DCM, code: '110113', display: 'Security Alert' };

function typeOf(action: AuditAction): Coding {
  if (action.startsWith('message.') || action.startsWith('delivery.') || action.startsWith('conversation.') || action === 'media.fetched') return patientRecord;
  if (action.startsWith('auth.')) return userAuthentication;
  if (action === 'audit.exported') return exportType;
  if (action.startsWith('keys.') || action.startsWith('token.') || action === 'audit.verified') return securityAlert;
  return applicationActivity;
}

/** C create, R read, U update, D delete, E execute. */
function actionCode(action: AuditAction): AuditEvent['action'] {
  if (action.endsWith('.viewed') || action.endsWith('.searched') || action === 'media.fetched' || action === 'audit.exported') return 'R';
  if (action.startsWith('delivery.') || action.startsWith('destination.')) return 'U';
  if (action === 'token.created') return 'C';
  if (action === 'token.revoked' || action === 'store.pruned') return 'D';
  return 'E';
}

export function toFhirAuditEvent(e: RecordedAuditEntry): AuditEvent {
  const address = e.sourceAddress && e.sourceAddress !== 'cli' && e.sourceAddress !== 'system' ? e.sourceAddress : undefined;
  const entities: AuditEventEntity[] = (e.resources ?? []).map((r) => ({
    what: { identifier: { system: `urn:switchboard:${r.type}`, value: r.id } },
    type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '2', display: 'System Object' },
  }));
  const details = Object.entries(e.detail ?? {}).map(([type, v]) => ({ type, valueString: v === null ? 'null' : String(v) }));
  entities.push({
    what: { identifier: { system: 'urn:switchboard:audit-events', value: String(e.seq) } },
    type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '4', display: 'Other' },
    detail: [...details, { type: 'prev_hash', valueString: e.prevHash }, { type: 'hash', valueString: e.hash }],
  });
  return {
    resourceType: 'AuditEvent',
    id: `switchboard-audit-${e.seq}`,
    type: typeOf(e.action),
    subtype: [{ system: AUDIT_ACTION_SYSTEM, code: e.action }],
    action: actionCode(e.action),
    recorded: e.recordedAt.toISOString(),
    outcome: e.outcome === 'success' ? '0' : '4',
    agent: [
      {
        who: e.principal
          ? { identifier: { system: 'urn:switchboard:principal', value: principalLabel(e.principal) }, display: e.principal.display }
          : { display: 'unauthenticated' },
        requestor: true,
        ...(address ? { network: { address, type: '2' as const } } : {}),
      },
    ],
    source: {
      observer: { display: 'Switchboard' },
      type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }],
    },
    entity: entities,
  };
}

export const auditExportFormats = ['ndjson', 'fhir'] as const;
export type AuditExportFormat = (typeof auditExportFormats)[number];

/** One line of an audit export (CLI and admin API): the entry as recorded, or as an R4 AuditEvent. */
export function auditExportLine(e: RecordedAuditEntry, format: AuditExportFormat): string {
  return `${JSON.stringify(format === 'fhir' ? toFhirAuditEvent(e) : auditEntryJson(e))}\n`;
}
