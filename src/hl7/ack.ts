/**
 * Acknowledgments: reading what a partner answered (validated with zod: a reply is untrusted
 * input) and writing ACKs (for the sandbox peers).
 *
 * Only PHI-free facts leave this module: ACK code, control ids, message type, ERR location,
 * code and severity. MSA-3 and ERR-7/ERR-8 (free text a partner may fill with patient details)
 * are never kept.
 */
import { z } from 'zod';
import { randomControlId } from './control-id.js';
import { parseEr7, textOf, trimSegment, valueOf, type Er7Field, type Er7Segment } from './er7.js';
import { formatHl7Timestamp } from './hl7-time.js';
import { serializeWithHl7Standard } from './hl7-standard-serializer.js';

export const ackCodes = ['AA', 'AE', 'AR', 'CA', 'CE', 'CR'] as const;
export type AckCode = (typeof ackCodes)[number];

/** Table 0357 (message error condition codes), our own wording. */
export const errorConditions: Record<string, string> = {
  '0': 'Message accepted',
  '100': 'Segment sequence error',
  '101': 'Required field missing',
  '102': 'Data type error',
  '103': 'Table value not found',
  '200': 'Unsupported message type',
  '201': 'Unsupported event code',
  '202': 'Unsupported processing id',
  '203': 'Unsupported version id',
  '204': 'Unknown key identifier',
  '205': 'Duplicate key identifier',
  '206': 'Application record locked',
  '207': 'Application internal error',
};

const safeToken = (max: number) =>
  z
    .string()
    .max(max)
    .transform((s) => s.replace(/[^A-Za-z0-9^._ -]/g, '?'));

export const ackErrorSchema = z.object({
  /** ERR-2 (v2.5) or ERR-1.1–1.3 (v2.3 ELD), e.g. `PID^1^3`. */
  location: safeToken(80),
  /** ERR-3.1 (or ERR-1.4.1): table 0357 code or the partner's own. */
  code: safeToken(20),
  /** Our description of a table 0357 code; undefined for other codes. */
  code_text: z.string().optional(),
  /** ERR-4: E error, W warning, I information, F fatal; empty when not sent. */
  severity: z.enum(['E', 'W', 'I', 'F', '']).catch(''),
});
export type AckError = z.infer<typeof ackErrorSchema>;

/** What we keep of a reply that carries an MSA. */
export const ackSchema = z.object({
  code: z.enum(ackCodes),
  /** MSA-2: the control id of the message acknowledged. */
  acknowledged_control_id: z.string().min(1).max(199),
  /** The reply's own MSH-10. */
  control_id: z.string().max(199),
  /** The reply's MSH-9, e.g. `ACK^O01^ACK` or `RPA^I08^RPA_I08`. */
  message_type: z.string().max(40),
  /** The reply's MSH-12. */
  version: z.string().max(20),
  errors: z.array(ackErrorSchema).max(50),
});
export type Ack = z.infer<typeof ackSchema>;

export type ReplyReading =
  | { kind: 'ack'; ack: Ack; segments: Er7Segment[] }
  /** Parsable HL7 without an MSA (an unsolicited message on our connection). */
  | { kind: 'not_ack'; messageType: string; controlId: string }
  | { kind: 'unparsable'; reason: string };

function plain(segment: Er7Segment | undefined, n: number, component = 1): string {
  return textOf(segment, n, component);
}

function readErrors(segments: Er7Segment[]): unknown[] {
  return segments
    .filter((s) => s.name === 'ERR')
    .map((err) => {
      const v25Location = [1, 2, 3, 4, 5, 6].map((c) => valueOf(err, 2, c)).join('^').replace(/\^+$/, '');
      const v23Location = [1, 2, 3].map((c) => valueOf(err, 1, c)).join('^').replace(/\^+$/, '');
      const code = plain(err, 3, 1) || textOf(err, 1, 4, 1);
      return {
        location: v25Location || v23Location,
        code,
        ...(errorConditions[code] ? { code_text: errorConditions[code] } : {}),
        severity: plain(err, 4),
      };
    });
}

/** Reads a reply frame's text. Never throws. */
export function readReply(text: string): ReplyReading {
  let segments: Er7Segment[];
  try {
    segments = parseEr7(text).segments;
  } catch (err) {
    return { kind: 'unparsable', reason: err instanceof Error ? err.message : 'not HL7' };
  }
  const msh = segments[0];
  const msa = segments.find((s) => s.name === 'MSA');
  const messageType = valueOf(msh, 9, 1) + (valueOf(msh, 9, 2) ? `^${valueOf(msh, 9, 2)}` : '') + (valueOf(msh, 9, 3) ? `^${valueOf(msh, 9, 3)}` : '');
  if (!msa) return { kind: 'not_ack', messageType: messageType.slice(0, 40), controlId: plain(msh, 10).slice(0, 40) };
  const result = ackSchema.safeParse({
    code: plain(msa, 1).toUpperCase(),
    acknowledged_control_id: plain(msa, 2),
    control_id: plain(msh, 10),
    message_type: messageType,
    version: plain(msh, 12),
    errors: readErrors(segments),
  });
  if (!result.success) {
    return { kind: 'unparsable', reason: `not a valid acknowledgment: ${result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
  }
  return { kind: 'ack', ack: result.data, segments };
}

export interface AckBuildOptions {
  code: AckCode;
  /** Our MSH-10 for the ACK; random when absent. */
  controlId?: string;
  timestamp?: Date;
  errors?: { location?: string; code: string; severity?: 'E' | 'W' | 'I' | 'F' }[];
  /** Replaces `ACK^<event>^ACK` (e.g. for RPA replies, see sandbox). */
  messageType?: Er7Field;
  /** Extra segments after MSA/ERR (e.g. AUT, PRD, PID for an RPA). */
  extraSegments?: Er7Segment[];
}

const v = (t: string): Er7Field => [[[t]]];

/**
 * Builds the reply to `original` the way receivers should: MSH-3/4 and MSH-5/6 swapped, MSH-9
 * `ACK^<event>^ACK`, its own MSH-10, MSH-11 and MSH-12 echoed, MSA-2 = the original MSH-10,
 * ERR (v2.5 layout) per error.
 */
export function buildAck(original: readonly Er7Segment[], o: AckBuildOptions): string {
  const msh = original[0];
  const field = (n: number): Er7Field => (msh && msh.fields[n - 2] ? msh.fields[n - 2]! : v(''));
  const event = valueOf(msh, 9, 2);
  const segments: Er7Segment[] = [
    {
      name: 'MSH',
      fields: [
        v('^~\\&'),
        field(5),
        field(6),
        field(3),
        field(4),
        v(formatHl7Timestamp(o.timestamp ?? new Date())),
        v(''),
        o.messageType ?? [[['ACK'], ...(event ? [[event], ['ACK']] : [])]],
        v(o.controlId ?? randomControlId('A')),
        field(11),
        field(12),
      ],
    },
    { name: 'MSA', fields: [v(o.code), v(valueOf(msh, 10))] },
    ...(o.errors ?? []).map(
      (e): Er7Segment => ({
        name: 'ERR',
        fields: [
          v(''),
          [(e.location ?? '').split('^').map((c) => [c])],
          [[[e.code], [errorConditions[e.code] ?? ''], ['HL70357']]],
          v(e.severity ?? 'E'),
        ],
      }),
    ),
    ...(o.extraSegments ?? []),
  ];
  return serializeWithHl7Standard(segments.map(trimSegment));
}
