/** What to do about an error an analyst caused: one sentence per error code. */

const evaluateHints: Record<string, string> = {
  T2001: 'a value used in arithmetic is not a number for this message: convert it with $number() or guard it, e.g. $exists(x) ? x + 1',
  T2002: 'a value used in arithmetic is not a number for this message: convert it with $number() or guard it, e.g. $exists(x) ? x + 1',
  T0410: 'an argument has the wrong type for this message: check the value passed at this position ($string() converts), or guard it with $exists()',
  T0412: 'an argument has the wrong type for this message: check the value passed at this position, or guard it with $exists()',
  T1006: 'this calls something that is not a function: check the spelling (helpers: $e164, $hl7Escape, $hl7Ts, $fhirRef, $truncate, $lookupTable)',
  T1005: 'this calls something that is not a function: check the spelling (helpers: $e164, $hl7Escape, $hl7Ts, $fhirRef, $truncate, $lookupTable)',
  D3137: 'the mapping called $error() on purpose: this message is one it refuses; test it with expect.error',
  SB0001: 'the mapping ran past its time budget: look for a recursion or a loop that does not end',
  SB0101: 'fix the argument given to the helper function at this position (docs/analyst-guide.md lists what each accepts)',
  SB0102: 'create the table file under tables/ beside the mapping, or fix the table name',
  SB0103: 'fix the table file at the position given',
};

/** A hint for a mapping evaluation error, by JSONata (or helper) code. */
export function evaluateHint(jsonataCode: string | undefined): string {
  return (jsonataCode !== undefined ? evaluateHints[jsonataCode] : undefined) ?? 'fix the expression at this line and column, or guard it against this message\'s shape';
}

/** A hint for a JSONata syntax error. */
export function compileHint(message: string): string {
  if (/S0101|String literal must be terminated/.test(message)) return 'close the string: every quote needs its matching quote';
  if (/S0102|Number out of range/.test(message)) return 'the number is too large; write it as a string';
  if (/S0203|Expected ".*" before end of expression/.test(message)) return 'a bracket or brace is not closed: add the missing closing one';
  if (/S0202/.test(message)) return 'check the brackets, quotes and commas just before this position';
  if (/S0211|S0207|S0204/.test(message)) return 'an operator or name is misplaced here: check the expression around this position';
  return 'fix the JSONata syntax at this position (try it with `switchboard map -m <mapping> -i <sample> --watch`)';
}
