/**
 * The error a helper function throws for input it cannot handle. It carries a JSONata-style
 * `code`, so JSONata adds the position of the call and the mapping reports it as
 * `file:line:column: JSONata SB01xx: ...` (MAPPING_EVALUATE).
 */
export class MappingFunctionError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'MappingFunctionError';
    this.code = code;
  }
}

/** Codes of the helper functions' errors; stable, listed in the analyst guide. */
export const functionErrorCodes = {
  /** An argument has the right type but a value the function cannot use. */
  badArgument: 'SB0101',
  /** `$lookupTable`: no table file of that name beside the mapping. */
  tableNotFound: 'SB0102',
  /** `$lookupTable`: the table file is not valid YAML, JSON or CSV, or has duplicate keys. */
  tableInvalid: 'SB0103',
} as const;
