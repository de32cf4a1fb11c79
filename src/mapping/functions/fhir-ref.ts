/** `$fhirRef(type, id, display?)`: a FHIR Reference object `{reference: 'Type/id'}`, or undefined without an id. */
import { MappingFunctionError, functionErrorCodes } from './function-error.js';

const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;
/** R4 id: 1 to 64 of A-Z a-z 0-9 - . */
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

export function fhirRef(type: unknown, id: unknown, display?: unknown): { reference: string; display?: string } | undefined {
  if (typeof type !== 'string' || !RESOURCE_TYPE.test(type)) {
    throw new MappingFunctionError(
      functionErrorCodes.badArgument,
      `$fhirRef: type must be a FHIR resource type such as 'Patient', not ${JSON.stringify(type)}`,
    );
  }
  if (id === undefined || id === null || id === '') return undefined;
  const text = typeof id === 'number' && Number.isInteger(id) ? String(id) : id;
  if (typeof text !== 'string' || !FHIR_ID.test(text)) {
    throw new MappingFunctionError(
      functionErrorCodes.badArgument,
      `$fhirRef: a FHIR id is 1 to 64 letters, digits, "-" and "."; this ${type} id is not (use an identifier reference for other keys)`,
    );
  }
  const reference = { reference: `${type}/${text}` };
  return typeof display === 'string' && display.trim() !== '' ? { ...reference, display } : reference;
}
