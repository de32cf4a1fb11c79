/**
 * Open-loop load generator, run as a child process of bench/run.ts (so it does not share an
 * event loop with the gateway or the FHIR server). For each `run` command it sends signed
 * WhatsApp text webhooks at a fixed rate for a fixed time, whatever the answers, and streams back
 * when each message was sent and acknowledged. Loopback only: it posts to the URL it is given,
 * which the orchestrator builds from 127.0.0.1.
 */
import { whatsappSignature } from '../src/connectors/sources/whatsapp-cloud.js';
import http from 'node:http';
import { metaSerialise, whatsappTextEvent } from '../src/sandbox/whatsapp-sample-events.js';
import { monoMs, type AckRecord, type FromGenerator, type GeneratorRun, type SentRecord, type ToGenerator } from './protocol.js';

const FLUSH_EVERY_MS = 100;

function send(m: FromGenerator): void {
  process.send?.(m);
}

/** A WhatsApp Cloud API text webhook, serialised the way Meta does (non-ASCII as \uXXXX). */
export function webhookBody(wamid: string, from: string, text: string): string {
  return metaSerialise(whatsappTextEvent({ wamid, from, text }));
}

const TEXT = 'Hello, can I move my appointment on Friday to next week? I have a fever since Tuesday. Merci 🙏 café ✓';

// Requests queue in the agent beyond maxSockets: the time they wait there is part of the ack
// latency, as it would be for a real sender whose connections are all busy.
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, keepAliveMsecs: 1000 });

let current: { phase: string; abort: () => void } | undefined;

async function run(cmd: GeneratorRun): Promise<void> {
  const url = new URL(cmd.url);
  if (url.hostname !== '127.0.0.1' && url.hostname !== 'localhost' && url.hostname !== '[::1]') {
    throw new Error(`generator refuses a non-loopback target: ${url.hostname}`);
  }
  const total = Math.max(0, Math.round((cmd.rate * cmd.durationMs) / 1000));
  const intervalMs = 1000 / cmd.rate;
  const cpu0 = process.cpuUsage();
  let sentBuf: SentRecord[] = [];
  let ackBuf: AckRecord[] = [];
  const flush = () => {
    if (sentBuf.length > 0) {
      send({ type: 'sent', phase: cmd.phase, recs: sentBuf });
      sentBuf = [];
    }
    if (ackBuf.length > 0) {
      send({ type: 'acked', phase: cmd.phase, recs: ackBuf });
      ackBuf = [];
    }
  };
  const flusher = setInterval(flush, FLUSH_EVERY_MS);

  let seq = 0;
  let inFlight = 0;
  let maxLagMs = 0;
  let cappedAt: number | null = null;
  let aborted = false;
  let firstSendMs = 0;
  let lastSendMs = 0;
  let onIdle: (() => void) | undefined;

  const post = (i: number) => {
    const wamid = `wamid.B${cmd.runId}.${cmd.phase}.${i}`;
    const body = webhookBody(wamid, cmd.from, TEXT);
    const signature = whatsappSignature(cmd.appSecret, Buffer.from(body));
    const req = http.request({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-hub-signature-256': signature },
    });
    let settled = false;
    const settle = (status: number) => {
      if (settled) return;
      settled = true;
      ackBuf.push([wamid, monoMs(), status]);
      inFlight--;
      if (inFlight === 0) onIdle?.();
    };
    req.setTimeout(cmd.requestTimeoutMs, () => req.destroy(new Error('request timeout')));
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => settle(res.statusCode ?? 0));
      res.on('error', () => settle(0));
    });
    req.on('error', () => settle(0));
    inFlight++;
    const t = monoMs();
    if (i === 0) firstSendMs = t;
    lastSendMs = t;
    sentBuf.push([wamid, t]);
    req.end(body);
  };

  await new Promise<void>((resolve) => {
    const t0 = monoMs() + 2;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      if (timer) clearTimeout(timer);
      current = undefined;
      resolve();
    };
    current = {
      phase: cmd.phase,
      abort: () => {
        aborted = true;
        finish();
      },
    };
    const tick = () => {
      const now = monoMs();
      const due = Math.min(total, Math.floor((now - t0) / intervalMs) + 1);
      while (seq < due) {
        if (inFlight >= cmd.maxInFlight) {
          cappedAt = seq;
          finish();
          return;
        }
        maxLagMs = Math.max(maxLagMs, now - (t0 + seq * intervalMs));
        post(seq++);
      }
      if (seq >= total) {
        finish();
        return;
      }
      timer = setTimeout(tick, Math.max(0, t0 + seq * intervalMs - monoMs()));
    };
    timer = setTimeout(tick, Math.max(0, t0 - monoMs()));
  });

  // Wait for the answers still outstanding, bounded.
  if (inFlight > 0) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, cmd.requestTimeoutMs + 1000);
      onIdle = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
  clearInterval(flusher);
  flush();
  const cpu = process.cpuUsage(cpu0);
  send({
    type: 'done',
    phase: cmd.phase,
    scheduled: total,
    sent: seq,
    maxLagMs,
    cappedAt,
    aborted,
    unanswered: inFlight,
    firstSendMs,
    lastSendMs,
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
  });
}

process.on('message', (raw) => {
  const m = raw as ToGenerator;
  if (m.type === 'run') {
    run(m).catch((err: unknown) => {
      process.stderr.write(`generator: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    });
  } else if (m.type === 'abort') {
    if (current?.phase === m.phase) current.abort();
  } else if (m.type === 'exit') {
    agent.destroy();
    process.exit(0);
  }
});
// The orchestrator died: do not linger.
process.on('disconnect', () => process.exit(0));
send({ type: 'ready', pid: process.pid });
