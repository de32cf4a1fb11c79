/**
 * `hl7_valid`: checks text is a well-formed HL7 v2 message (ER7) of the expected type. The
 * structure is re-parsed with @medplum/core's Hl7Message; the checks are the ones a receiver's
 * parser trips on: MSH first, segment names, no blank lines (a line break inside a field), the
 * message type in MSH-9, a control id in MSH-10 and a version in MSH-12.
 */
import { Hl7Message } from '@medplum/core';

export function checkHl7Message(text: unknown, expectedType: string): string[] {
  if (typeof text !== 'string') {
    return [
      `hl7_valid needs the ER7 text a destination sends, but the output is ${Array.isArray(text) ? 'a list' : text === null ? 'null' : typeof text}` +
        ' (test it in a channel test, where the hl7 destination renders it)',
    ];
  }
  const issues: string[] = [];
  const lines = text.replace(/\r\n|\n/g, '\r').replace(/\r+$/, '').split('\r');
  if (!lines[0]?.startsWith('MSH')) {
    return [`the message must start with an MSH segment, it starts with ${JSON.stringify(lines[0]?.slice(0, 20) ?? '')}`];
  }
  const separator = lines[0][3] ?? '|';
  lines.forEach((line, index) => {
    if (line === '') {
      issues.push(`segment ${index + 1} is empty: a line break inside a field ends the segment (escape text with $hl7Escape)`);
      return;
    }
    const name = line.split(separator)[0] ?? '';
    if (!/^[A-Z][A-Z0-9]{2}$/.test(name)) {
      issues.push(`segment ${index + 1} starts with ${JSON.stringify(name.slice(0, 20))}, not a segment name such as PID: a line break inside a field? (escape text with $hl7Escape)`);
    }
  });
  let message: Hl7Message;
  try {
    message = Hl7Message.parse(lines.join('\r'));
  } catch (err) {
    return [...issues, `the message cannot be parsed: ${err instanceof Error ? err.message : String(err)}`];
  }
  const header = message.header;
  const [type, event, structure] = expectedType.split('^');
  const got = [header.getComponent(9, 1), header.getComponent(9, 2), header.getComponent(9, 3)];
  const gotText = got.filter((c) => c !== '').join('^');
  if (got[0] !== type || got[1] !== event || (structure !== undefined && got[2] !== structure)) {
    issues.push(`MSH-9 (message type) is ${JSON.stringify(gotText)}, expected ${expectedType}`);
  }
  if (header.getField(10).toString() === '') issues.push('MSH-10 (message control id) is empty; receivers use it to match ACKs and drop duplicates');
  if (header.getField(12).toString() === '') issues.push('MSH-12 (version id) is empty, e.g. 2.5.1');
  return issues;
}
