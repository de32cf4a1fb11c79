/**
 * Sandbox HL7 partners for zero-config runs and tests: a real MLLP peer (src/mllp/mllp-server.ts)
 * that checks what it receives the way a partner's engine would and answers real acknowledgments.
 *
 * - `lab`: takes ORM^O01, OML^O21, MDM^T02 (and ORU^R01); answers `ACK^<event>^ACK`.
 * - `insurer`: takes RQA^I08–I11; answers `RPA^<event>^RPA_I08` with MSA AA and the decision in
 *   RF1/AUT (always "pending review": a sandbox approves nothing); other types get AR 200.
 *
 * Every reply swaps MSH-3/4 with MSH-5/6, echoes MSH-11/12, has its own unique MSH-10 and MSA-2 =
 * the received MSH-10. Checks, in the order a receiver applies them: HL7 at all (else AR 100),
 * MSH-12 2.5.x (else AR 203 at MSH^1^12), message type for the role (else AR 200 at MSH^1^9),
 * structure and delimiters (@medplum/core re-parse + v2.5 schema; else AE 100). Enhanced mode
 * (MSH-15/16 set) answers CA first, then the application ACK as MSH-16 asks.
 *
 * A control id seen before is acknowledged again and not counted twice, like a receiver that
 * de-duplicates on MSH-10. Logs carry control ids, message types and ACK codes, never content.
 */
import type { Logger } from '../core/logger.js';
import { buildAck, type AckCode } from '../hl7/ack.js';
import { randomControlId } from '../hl7/control-id.js';
import { parseEr7, valueOf, type Er7Field, type Er7Segment } from '../hl7/er7.js';
import { formatHl7Timestamp } from '../hl7/hl7-time.js';
import { verifyBuiltMessage } from '../hl7/verify-message.js';
import { startMllpServer, type MllpServer } from '../mllp/mllp-server.js';
import type { TlsOptions } from 'node:tls';

export type MllpSandboxRole = 'lab' | 'insurer';

export interface MllpSandboxOptions {
  role: MllpSandboxRole;
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  logger?: Logger;
  /** Serve MLLP over TLS (the url becomes mllps://). */
  tls?: TlsOptions;
  /** Called with each received message's text (tests); never logged. */
  onMessage?: (text: string) => void;
}

export interface ReceivedHl7 {
  /** MSH-10 of the received message. */
  controlId: string;
  /** MSH-9, e.g. `ORM^O01^ORM_O01`. */
  messageType: string;
  /** The (application) acknowledgment code answered. */
  ackCode: AckCode;
  connectionId: number;
  at: string;
}

export interface MllpSandbox {
  role: MllpSandboxRole;
  /** e.g. `mllp://127.0.0.1:41234` (`mllps://` with tls). */
  url: string;
  port: number;
  /** Distinct messages received (by MSH-10), in arrival order. No content. */
  readonly received: readonly ReceivedHl7[];
  /** Messages that repeated a control id already received. */
  readonly duplicates: number;
  close(): Promise<void>;
}

const ACCEPTED: Record<MllpSandboxRole, ReadonlySet<string>> = {
  lab: new Set(['ORM^O01', 'OML^O21', 'MDM^T02', 'ORU^R01']),
  insurer: new Set(['RQA^I08', 'RQA^I09', 'RQA^I10', 'RQA^I11']),
};

const v = (t: string): Er7Field => [[[t]]];

function typeOf(msh: Er7Segment | undefined): string {
  return [valueOf(msh, 9, 1), valueOf(msh, 9, 2), valueOf(msh, 9, 3)].filter((x) => x !== '').join('^');
}

/** The RPA segments after MSA: decision (RF1, AUT), then PRD/PID copied and the procedure. */
function rpaSegments(request: Er7Segment[], now: Date): Er7Segment[] {
  const providers = request.filter((s) => s.name === 'PRD');
  const pid = request.find((s) => s.name === 'PID') ?? { name: 'PID', fields: [v('1')] };
  const obr = request.find((s) => s.name === 'OBR');
  const pr1 = request.find((s) => s.name === 'PR1');
  const procedure: Er7Field = pr1?.fields[2] ?? obr?.fields[3] ?? [[['AUTH-REQUEST'], ['Authorization request'], ['L']]];
  const authorization = randomControlId('AUTH');
  return [
    // RF1-1 referral status P = pending; RF1-6 the originating referral identifier.
    { name: 'RF1', fields: [[[['P'], ['Pending'], ['HL70283']]], v(''), v(''), v(''), v(''), [[[authorization], ['SANDBOX-INSURER']]]] },
    // AUT-2 payor company, AUT-3 name, AUT-6 authorization identifier, AUT-10 process date.
    {
      name: 'AUT',
      fields: [v(''), [[['SANDBOX'], ['Sandbox insurer'], ['L']]], v('Switchboard sandbox insurer'), v(''), v(''), [[[authorization], ['SANDBOX-INSURER']]], v(''), v(''), v(''), v(formatHl7Timestamp(now))],
    },
    ...(providers.length > 0 ? providers : [{ name: 'PRD', fields: [v('RT')] }]),
    pid,
    { name: 'PR1', fields: [v('1'), v(''), procedure, v(''), v(formatHl7Timestamp(now))] },
  ];
}

export async function startMllpSandbox(o: MllpSandboxOptions): Promise<MllpSandbox> {
  const received: ReceivedHl7[] = [];
  const seen = new Map<string, AckCode>();
  let duplicates = 0;
  const log = o.logger;

  const handle = (text: string, connectionId: number): string[] => {
    const now = new Date();
    let segments: Er7Segment[];
    try {
      segments = parseEr7(text).segments;
    } catch {
      log?.warn({ role: o.role, connection: connectionId }, 'mllp sandbox: received something that is not HL7; answering AR');
      return [buildAck([], { code: 'AR', errors: [{ code: '100', location: '' }] })];
    }
    o.onMessage?.(text);
    const msh = segments[0];
    const controlId = valueOf(msh, 10);
    const type = typeOf(msh);
    const typeKey = [valueOf(msh, 9, 1), valueOf(msh, 9, 2)].join('^');
    const accept = valueOf(msh, 15);
    const application = valueOf(msh, 16);
    const enhanced = accept !== '' || application !== '';

    let code: AckCode = 'AA';
    let errors: { code: string; location: string; severity?: 'E' }[] = [];
    if (!valueOf(msh, 12).startsWith('2.5')) {
      code = 'AR';
      errors = [{ code: '203', location: 'MSH^1^12' }];
    } else if (!ACCEPTED[o.role].has(typeKey)) {
      code = 'AR';
      errors = [{ code: '200', location: 'MSH^1^9' }];
    } else {
      const verdict = verifyBuiltMessage(text.endsWith('\r') ? text : `${text}\r`, segments, { structure: 'schema' });
      if (verdict.issues.length > 0) {
        code = 'AE';
        errors = [{ code: '100', location: '' }];
      }
    }

    const duplicate = seen.has(controlId);
    if (duplicate) duplicates++;
    else if (controlId !== '') {
      seen.set(controlId, code);
      received.push({ controlId, messageType: type, ackCode: code, connectionId, at: now.toISOString() });
    }
    log?.info({ role: o.role, control_id: controlId, message_type: type, ack_code: code, duplicate, connection: connectionId }, 'mllp sandbox: message acknowledged');

    const replies: string[] = [];
    if (enhanced && accept !== 'NE') {
      // Commit ACK: the sandbox commits everything it could read (errors surface in the application ACK).
      if (accept === 'AL' || (accept === 'SU' && code === 'AA') || (accept === 'ER' && code !== 'AA')) {
        replies.push(buildAck(segments, { code: code === 'AR' ? 'CR' : 'CA', errors: code === 'AR' ? errors : [], timestamp: now }));
        if (code === 'AR') return replies;
      }
    }
    const wantApplication = !enhanced || application === 'AL' || (application === 'ER' && code !== 'AA') || (application === 'SU' && code === 'AA');
    if (!wantApplication) return replies;
    if (o.role === 'insurer' && code === 'AA') {
      const event = valueOf(msh, 9, 2);
      replies.push(
        buildAck(segments, {
          code,
          timestamp: now,
          messageType: [[['RPA'], [event], ['RPA_I08']]],
          extraSegments: rpaSegments(segments, now),
        }),
      );
    } else {
      replies.push(buildAck(segments, { code, errors, timestamp: now }));
    }
    return replies;
  };

  const server: MllpServer = await startMllpServer({
    host: o.host ?? '127.0.0.1',
    port: o.port ?? 0,
    ...(o.tls ? { tls: o.tls } : {}),
    logger: log,
    handler: (m) => handle(m.text, m.connectionId),
  });
  const shownHost = server.host === '0.0.0.0' || server.host === '' ? '127.0.0.1' : server.host.includes(':') ? `[${server.host}]` : server.host;
  const url = `${o.tls ? 'mllps' : 'mllp'}://${shownHost}:${server.port}`;
  log?.info({ role: o.role, url }, 'mllp sandbox listening');
  return {
    role: o.role,
    url,
    port: server.port,
    received,
    get duplicates() {
      return duplicates;
    },
    close: () => server.close(),
  };
}
