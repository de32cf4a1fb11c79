/**
 * HL7 v2 over MLLP destination (`hl7v2_mllp`): the channel's JSONata mapping returns the JSON
 * message shape of src/hl7/message-spec.ts; Switchboard adds MSH from this config, escapes and
 * builds ER7 (src/hl7/build-message.ts), checks it with independent parsers, sends it over a
 * persistent MLLP connection (src/mllp/mllp-client.ts, TLS optional) and acts on the ACK.
 *
 * MSH-10 is derived from the delivery id: every retry, reconnect and replay sends the same
 * control id, so a partner can discard duplicates. MSH-7 is the message's received time, so a
 * retry resends the same bytes.
 *
 * ACK → action (overridable per partner with `ack_actions`, docs/destinations/hl7v2-mllp.md):
 *   AA, CA                         delivered (CA + MSH-16 AL: the application ACK is awaited on
 *                                  the same connection for ack_timeout_ms; none → delivered, committed)
 *   AE, CE                         dead-letter (HL7_ACK_AE) with ERR location, code, severity
 *   AR, CR                         retry unchanged (HL7_ACK_AR)
 *   AR, CR with ERR-3 200–203      pause the destination and alert (HL7_PARTNER_REJECTS_TYPE)
 *   timeout / refused / closed     retry with the same MSH-10 (MLLP_*)
 *
 * PHI: errors and outcome details carry control ids, ACK codes and ERR positions/codes only;
 * never message text, MSA-3 or ERR-7/8. Docs: docs/destinations/hl7v2-mllp.md.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { CanonicalMessage } from '../../core/canonical-message.js';
import { ConfigError, SwitchboardError } from '../../core/errors.js';
import type { Ack, AckCode } from '../../hl7/ack.js';
import { mappingOutputInvalid } from '../../mapping/mapping-output-error.js';
import { Hl7BuildError, ackConditions, buildMessage, type BuildOptions, type BuiltMessage } from '../../hl7/build-message.js';
import { controlIdFor } from '../../hl7/control-id.js';
import { charsets, ftLineBreaks, otherLineBreaks, txLineBreaks, wireEncoding } from '../../hl7/escape.js';
import { formatSpecIssues, messageSpecSchema } from '../../hl7/message-spec.js';
import { MllpClient, MllpError, type MllpTlsOptions, type SendResult } from '../../mllp/mllp-client.js';
import { MLLP_URL_PATTERN, parseMllpUrl } from '../../mllp/mllp-url.js';
import type { DeliveryContext, DeliveryOutcome, DestinationConnector, DestinationCreateContext, DestinationInstance } from '../types.js';
import { destinationBase, destinationBaseShape } from '../types.js';

export const HL7V2_MLLP_KIND = 'hl7v2_mllp';
export const HL7_ER7_CONTENT_TYPE = 'x-application/hl7-v2+er7';

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/** HD text for MSH-3..6: components separated by `^`; no other delimiter, no control character. */
const hdText = (what: string) =>
  z
    .string()
    .max(227)
    .regex(/^[^|~\\&\u0000-\u001F\u007F]*$/, `${what}: no | ~ \\ & or control characters (use ^ between HD components)`);

const ackAction = z.enum(['delivered', 'retry', 'dead_letter', 'pause']);
export type AckAction = z.infer<typeof ackAction>;

const DEFAULT_PAUSE_CODES = ['200', '201', '202', '203'];

const ackActionsSchema = z
  .strictObject({
    AE: ackAction.default('dead_letter').describe('Application error (content or structure): default dead_letter.'),
    CE: ackAction.default('dead_letter').describe('Commit error (enhanced mode): default dead_letter.'),
    AR: ackAction.default('retry').describe('Application reject (system down, or type/version refused): default retry.'),
    CR: ackAction.default('retry').describe('Commit reject (enhanced mode): default retry.'),
    pause_on_error_codes: z
      .array(z.string().regex(/^[A-Za-z0-9._-]{1,20}$/))
      .default(DEFAULT_PAUSE_CODES)
      .describe('ERR-3 codes that, on an AR or CR, pause the destination and alert (every message would fail): default 200–203 (unsupported message type, event, processing id, version).'),
  })
  .default({ AE: 'dead_letter', CE: 'dead_letter', AR: 'retry', CR: 'retry', pause_on_error_codes: DEFAULT_PAUSE_CODES })
  .describe('What each negative ACK code does, for partners that use the codes their own way. Actions: delivered, retry, dead_letter, pause.');

const tlsSchema = z
  .strictObject({
    ca_file: z.string().min(1).optional().describe('PEM file with the CA certificate(s) that signed the partner certificate. Default: the system CAs.'),
    cert_file: z.string().min(1).optional().describe('PEM client certificate, for mutual TLS (with key_file).'),
    key_file: z.string().min(1).optional().describe('PEM private key of cert_file. A file path (e.g. ${LAB_TLS_KEY_FILE}), never the key itself.'),
    servername: z.string().min(1).optional().describe('Name sent as SNI and checked against the partner certificate. Default: the URL host (none for an IP address).'),
    reject_unauthorized: z.boolean().default(true).describe('Refuse a partner certificate that does not verify. Only false for a throwaway test partner.'),
  })
  .refine((t) => (t.cert_file === undefined) === (t.key_file === undefined), { message: 'cert_file and key_file go together (mutual TLS)', path: ['key_file'] })
  .describe('TLS settings for an mllps:// URL. Paths are absolute or relative to the working directory.');

export const hl7v2MllpConfigSchema = z
  .strictObject({
    kind: z.literal(HL7V2_MLLP_KIND).describe('Destination kind: an HL7 v2 partner over MLLP (lab, insurer).'),
    ...destinationBaseShape,
    concurrency: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(1)
      .describe('Connections to the partner, each with one message in flight. 1 (default) keeps the order messages were received in.'),
    url: z
      .string()
      .regex(MLLP_URL_PATTERN, 'mllp://host:port, or mllps://host:port for TLS')
      .describe('The partner endpoint: mllp://host:port (plain TCP) or mllps://host:port (TLS).'),
    tls: tlsSchema.optional(),
    connect_timeout_ms: z.number().int().min(100).max(300_000).default(10_000).describe('Timeout of one connection attempt (TCP and TLS handshake), in milliseconds.'),
    ack_timeout_ms: z.number().int().min(100).max(600_000).default(30_000).describe('How long to wait for the ACK after sending (and, in enhanced mode, for the application ACK after a CA).'),
    reconnect: z
      .strictObject({
        initial_delay_ms: z.number().int().min(0).default(500).describe('Wait after the first failed connection attempt; doubles per failure.'),
        max_delay_ms: z.number().int().min(0).default(30_000).describe('Cap on the wait between connection attempts.'),
      })
      .default({ initial_delay_ms: 500, max_delay_ms: 30_000 })
      .describe('Backoff between connection attempts to an unreachable partner (within a delivery\'s own retry policy).'),
    sending_application: hdText('sending_application').default('SWITCHBOARD').describe('MSH-3, as agreed with the partner (HD: components separated by ^).'),
    sending_facility: hdText('sending_facility').default('').describe('MSH-4, as agreed with the partner.'),
    receiving_application: hdText('receiving_application').default('').describe('MSH-5, as agreed with the partner.'),
    receiving_facility: hdText('receiving_facility').default('').describe('MSH-6, as agreed with the partner.'),
    processing_id: z.enum(['P', 'T', 'D']).default('P').describe('MSH-11: P production, T training/test, D debugging. Partners answer AR to the wrong one.'),
    acknowledgment_mode: z
      .enum(['original', 'enhanced'])
      .default('original')
      .describe('original: MSH-15/16 empty, one ACK (AA/AE/AR). enhanced: MSH-15 AL and MSH-16 application_ack; a commit ACK (CA/CE/CR) first.'),
    application_ack: z
      .enum(ackConditions)
      .default('AL')
      .describe('Enhanced mode only: MSH-16. AL waits for the application ACK after the CA; NE, ER, SU take the CA as final.'),
    charset: z
      .enum(charsets)
      .default('UNICODE UTF-8')
      .describe('MSH-18 and the bytes on the wire. UNICODE UTF-8 (default); ASCII and 8859/1 fold what they cannot carry (é→e, emoji→?). Agree it with the partner.'),
    line_breaks: z
      .strictObject({
        ft: z.enum(ftLineBreaks).default('br').describe('FT fields (NTE-3, OBX-5 with OBX-2 FT): br = \\.br\\, hex = \\X0D\\\\X0A\\, space, split_segments = one segment per line.'),
        tx: z.enum(txLineBreaks).default('repetition').describe('TX fields (OBX-5 with OBX-2 TX): repetition = one repetition per line (default), br, hex, space, split_segments.'),
        other: z.enum(otherLineBreaks).default('space').describe('Any other field: space (default) or hex.'),
      })
      .default({ ft: 'br', tx: 'repetition', other: 'space' })
      .describe('How line breaks in chat text are written, per field type.'),
    max_field_length: z
      .number()
      .int()
      .min(16)
      .max(99_999)
      .default(65_536)
      .describe('Longest field repetition the partner takes, in characters after escaping. Longer FT/TX text is split into repetitions; any other field longer than this fails with HL7_BUILD_INVALID.'),
    structure_check: z
      .enum(['schema', 'delimiters'])
      .default('schema')
      .describe('schema (default): every built message must also pass a group-aware v2.5 structure check. delimiters: only the field-by-field re-parse (for Z-segments or structures the schema does not know).'),
    ack_actions: ackActionsSchema,
  })
  .refine((c) => c.tls === undefined || c.url.startsWith('mllps://'), { message: 'tls settings need an mllps:// url', path: ['tls'] })
  .describe('Sends each message as HL7 v2 over MLLP and acts on the partner ACK.');

export type Hl7v2MllpConfig = z.infer<typeof hl7v2MllpConfigSchema>;

// ---------------------------------------------------------------------------------------------
// ACK handling and failure classification
// ---------------------------------------------------------------------------------------------

/** The action for a final ACK under a partner's ack_actions. */
export function ackActionFor(ack: Ack, actions: Hl7v2MllpConfig['ack_actions']): AckAction {
  const code: AckCode = ack.code;
  if (code === 'AA' || code === 'CA') return 'delivered';
  const configured = actions[code];
  if ((code === 'AR' || code === 'CR') && configured !== 'delivered' && ack.errors.some((e) => actions.pause_on_error_codes.includes(e.code))) {
    return 'pause';
  }
  return configured;
}

type Hl7Failure = { kind: 'ack'; ack: Ack; action: Exclude<AckAction, 'delivered'>; controlId: string } | { kind: 'thrown'; error: unknown };

function ackDetails(ack: Ack, controlId: string): Record<string, unknown> {
  return {
    control_id: controlId,
    ack_code: ack.code,
    msa_2: ack.acknowledged_control_id,
    ack_control_id: ack.control_id,
    ack_message_type: ack.message_type,
    err: ack.errors,
  };
}

function errSummary(ack: Ack): string {
  const e = ack.errors[0];
  if (!e) return 'no ERR segment';
  return `ERR-3 ${e.code || '(none)'}${e.code_text ? ` ${e.code_text}` : ''}${e.location ? ` at ${e.location}` : ''}${e.severity ? `, severity ${e.severity}` : ''}`;
}

/** The one place that turns anything a delivery can fail with into a SwitchboardError. */
export function classifyHl7Failure(f: Hl7Failure, endpoint: string): SwitchboardError {
  if (f.kind === 'ack') {
    const { ack, action, controlId } = f;
    const details = { ...ackDetails(ack, controlId), action };
    const negative = ack.code === 'AE' || ack.code === 'CE' ? 'HL7_ACK_AE' : 'HL7_ACK_AR';
    switch (action) {
      case 'pause': {
        const typeRefused = ack.errors.some((e) => ['200', '201', '202', '203'].includes(e.code));
        return new SwitchboardError(typeRefused ? 'HL7_PARTNER_REJECTS_TYPE' : negative, `HL7 partner answered ${ack.code} (${errSummary(ack)}); pausing the destination until an operator resumes it`, {
          details,
          pauseDestination: true,
          disposition: 'retryable',
        });
      }
      case 'retry':
        return new SwitchboardError(negative, `HL7 partner answered ${ack.code} (${errSummary(ack)}); resending unchanged`, { details, disposition: 'retryable' });
      case 'dead_letter':
        return new SwitchboardError(negative, `HL7 partner answered ${ack.code} (${errSummary(ack)})`, { details, disposition: 'permanent' });
    }
  }
  const err = f.error;
  if (err instanceof SwitchboardError) return err;
  if (err instanceof Hl7BuildError) {
    return new SwitchboardError('HL7_BUILD_INVALID', err.message, { details: { issues: err.issues } });
  }
  if (err instanceof MllpError) {
    const details = { endpoint, failure: err.failure, ...(err.errorCode ? { socket_code: err.errorCode } : {}) };
    switch (err.failure) {
      case 'timeout':
        return new SwitchboardError('MLLP_TIMEOUT', `${endpoint}: ${err.message}`, { details });
      case 'closed':
      case 'aborted':
        return new SwitchboardError('MLLP_CONNECTION_CLOSED', `${endpoint}: ${err.message}`, { details });
      case 'protocol':
        return new SwitchboardError('HL7_ACK_INVALID', `${endpoint}: ${err.message}`, { details });
      case 'connect':
      case 'tls':
        return new SwitchboardError('MLLP_CONNECT', err.message, { details });
    }
  }
  return new SwitchboardError('INTERNAL', err instanceof Error ? `${err.name}: ${err.message}` : 'unexpected failure', { cause: err });
}

// ---------------------------------------------------------------------------------------------
// The destination
// ---------------------------------------------------------------------------------------------

function readPem(file: string, key: string, channelId: string): Buffer {
  try {
    return readFileSync(path.resolve(file));
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
    throw new ConfigError([{ file: path.resolve(file), line: 1, column: 1, message: `channel ${channelId}: tls.${key}: ${reason}` }]);
  }
}

/** A small pool: `size` clients, each with one message in flight. */
class ClientPool {
  private readonly idle: MllpClient[];
  private readonly waiting: ((c: MllpClient) => void)[] = [];
  constructor(readonly clients: MllpClient[]) {
    this.idle = [...clients];
  }
  async use<T>(fn: (c: MllpClient) => Promise<T>): Promise<T> {
    const client = this.idle.shift() ?? (await new Promise<MllpClient>((r) => this.waiting.push(r)));
    try {
      return await fn(client);
    } finally {
      const next = this.waiting.shift();
      if (next) next(client);
      else this.idle.push(client);
    }
  }
}

function createHl7v2MllpDestination(config: Hl7v2MllpConfig, ctx: DestinationCreateContext): DestinationInstance {
  const { mapping, channelId, logger } = ctx;
  const url = parseMllpUrl(config.url);
  if (!url) throw new ConfigError([{ file: mapping.file, line: 1, column: 1, message: `destination ${config.name}: url is not mllp://host:port` }]);
  const t = config.tls;
  const tlsOptions: MllpTlsOptions | undefined = url.tls
    ? {
        ...(t?.ca_file ? { ca: readPem(t.ca_file, 'ca_file', channelId) } : {}),
        ...(t?.cert_file ? { cert: readPem(t.cert_file, 'cert_file', channelId) } : {}),
        ...(t?.key_file ? { key: readPem(t.key_file, 'key_file', channelId) } : {}),
        ...(t?.servername ? { servername: t.servername } : {}),
        rejectUnauthorized: t?.reject_unauthorized ?? true,
      }
    : undefined;
  const encoding = wireEncoding(config.charset);
  const pool = new ClientPool(
    Array.from(
      { length: config.concurrency },
      () =>
        new MllpClient({
          endpoint: { host: url.host, port: url.port, tls: tlsOptions },
          connectTimeoutMs: config.connect_timeout_ms,
          encoding,
          logger,
          reconnect: { initialDelayMs: config.reconnect.initial_delay_ms, maxDelayMs: config.reconnect.max_delay_ms },
        }),
    ),
  );
  const endpoint = pool.clients[0]!.endpointLabel;
  const enhanced = config.acknowledgment_mode === 'enhanced';
  const buildOptions = (controlId: string, timestamp: Date): BuildOptions => ({
    header: {
      sendingApplication: config.sending_application,
      sendingFacility: config.sending_facility,
      receivingApplication: config.receiving_application,
      receivingFacility: config.receiving_facility,
      processingId: config.processing_id,
      enhanced: enhanced ? { accept: 'AL', application: config.application_ack } : undefined,
      charset: config.charset,
    },
    controlId,
    timestamp,
    lineBreaks: config.line_breaks,
    maxFieldLength: config.max_field_length,
    structureCheck: config.structure_check,
  });

  /** Mapping -> validated spec -> checked ER7; undefined when the mapping dropped the message. */
  async function renderMessage(message: CanonicalMessage, now: Date, controlId: string, bindings: Record<string, unknown>): Promise<BuiltMessage | undefined> {
    const output = await mapping.evaluate(message, {
      now,
      bindings: {
        ...bindings,
        control_id: controlId,
        channel: { id: channelId },
        destination: {
          name: config.name,
          sending_application: config.sending_application,
          sending_facility: config.sending_facility,
          receiving_application: config.receiving_application,
          receiving_facility: config.receiving_facility,
          processing_id: config.processing_id,
        },
      },
    });
    if (output === undefined) return undefined;
    const json = JSON.stringify(output);
    const parsed = messageSpecSchema.safeParse(json === undefined ? undefined : JSON.parse(json));
    if (!parsed.success) {
      throw mappingOutputInvalid(mapping, formatSpecIssues(parsed.error), { what: 'HL7 message spec', output: json === undefined ? undefined : JSON.parse(json) });
    }
    try {
      return buildMessage(parsed.data, buildOptions(controlId, now));
    } catch (err) {
      if (err instanceof Hl7BuildError) {
        throw mappingOutputInvalid(mapping, err.issues, { what: `HL7 ${parsed.data.message_type} message`, code: 'HL7_BUILD_INVALID', output: parsed.data });
      }
      const e = classifyHl7Failure({ kind: 'thrown', error: err }, endpoint);
      e.details['mapping_version'] = mapping.version;
      e.details['mapping_file'] = mapping.file;
      throw e;
    }
  }

  async function deliver(message: CanonicalMessage, dctx: DeliveryContext): Promise<DeliveryOutcome> {
    const controlId = controlIdFor(dctx.deliveryId);
    const built = await renderMessage(message, dctx.now, controlId, {});
    if (built === undefined) return { detail: { dropped: true, mapping_version: mapping.version } };
    const payload = Buffer.from(built.text, encoding);

    let result: SendResult;
    try {
      result = await pool.use((client) =>
        client.send(payload, {
          controlId,
          ackTimeoutMs: config.ack_timeout_ms,
          signal: dctx.signal,
          awaitApplicationAck: enhanced && config.application_ack === 'AL',
        }),
      );
    } catch (err) {
      throw classifyHl7Failure({ kind: 'thrown', error: err }, endpoint);
    }
    const { ack } = result;
    const action = ackActionFor(ack, config.ack_actions);
    dctx.logger.info({ control_id: controlId, ack_code: ack.code, action, elapsed_ms: result.elapsedMs, ignored_replies: result.ignored }, 'hl7v2_mllp: acknowledged');
    if (action !== 'delivered') throw classifyHl7Failure({ kind: 'ack', ack, action, controlId }, endpoint);
    const firstErr = ack.errors[0];
    return {
      detail: {
        control_id: controlId,
        message_type: built.messageType,
        ack_code: ack.code,
        msa_2: ack.acknowledged_control_id,
        ack_control_id: ack.control_id,
        ack_message_type: ack.message_type,
        ...(result.commit ? { commit_ack: result.commit.code } : {}),
        ...(enhanced && config.application_ack === 'AL'
          ? { application_ack: result.applicationAckTimedOut ? 'not_received_committed' : ack.code.startsWith('A') ? 'received' : 'none' }
          : {}),
        ...(ack.code !== 'AA' && ack.code !== 'CA' ? { ack_overridden: true, err_code: firstErr?.code ?? null, err_location: firstErr?.location ?? null } : {}),
        bytes: payload.length,
        elapsed_ms: result.elapsedMs,
        new_connection: result.connected,
        ignored_replies: result.ignored,
        structure_check: built.structure,
        mapping_version: mapping.version,
      },
    };
  }

  return {
    ...destinationBase(config, mapping),
    deliver,
    async render(message, options) {
      const controlId = controlIdFor(options.deliveryId ?? `preview:${channelId}:${config.name}:${message.dedup_key}`);
      const built = await renderMessage(message, options.now, controlId, options.bindings);
      return built === undefined
        ? { dropped: true, contentType: HL7_ER7_CONTENT_TYPE, body: undefined }
        : { dropped: false, contentType: HL7_ER7_CONTENT_TYPE, body: built.text };
    },
    async healthcheck(signal: AbortSignal): Promise<string> {
      const how =
        tlsOptions === undefined
          ? 'plain TCP, no authentication'
          : t?.cert_file !== undefined
            ? 'mutual TLS: server certificate verified, client certificate presented'
            : 'TLS: server certificate verified, no client authentication';
      if (!pool.clients.some((c) => c.isConnected())) {
        try {
          await pool.clients[0]!.connect(signal);
        } catch (err) {
          throw classifyHl7Failure({ kind: 'thrown', error: err }, endpoint);
        }
      }
      return `reachable: MLLP connection opened (${how})`;
    },
    async close(): Promise<void> {
      await Promise.allSettled(pool.clients.map((c) => c.close()));
    },
  };
}

export const hl7v2MllpDestination: DestinationConnector<typeof hl7v2MllpConfigSchema> = {
  kind: HL7V2_MLLP_KIND,
  summary: 'HL7 v2 partner (lab, insurer) over MLLP, optionally TLS: mapping to a JSON message shape, built and checked ER7, ACK-driven delivery.',
  status: 'beta',
  since: '0.2.0',
  configSchema: hl7v2MllpConfigSchema,
  create: createHl7v2MllpDestination,
};
