/**
 * A steady stream of signed WhatsApp text webhooks, one unique wamid each, sent the way Meta
 * sends them: a message that does not get a 2xx is retried with backoff until it does, for at
 * most `maxRetryMs`. Records, per wamid, what was sent and whether it was acknowledged, and every
 * response with its time (to check what was answered while a store was down).
 */
import { DEMO_WA_ID, metaSerialise, newWamid, sign, textEvent } from '../../support/whatsapp-webhook.js';

export type MessageKind = 'good' | 'poison-mapping' | 'poison-422';

export const POISON_MAPPING_MARKER = 'POISON-MAPPING';
export const POISON_422_MARKER = 'POISON-422';

export interface SentMessage {
  wamid: string;
  kind: MessageKind;
  seq: number;
  firstSentAt: number;
  tries: number;
  /** Response status → how many times it was seen (0 = network error or timeout). */
  statuses: Map<number, number>;
  ackedAt: number | undefined;
  gaveUp: boolean;
}

export interface ResponseEvent {
  wamid: string;
  startedAt: number;
  endedAt: number;
  /** HTTP status, or 0 for a network error / timeout. */
  status: number;
}

export interface LoadOptions {
  url: string;
  ratePerSec: number;
  /** Which kind the n-th message is (default: all good). */
  kindOf?: (seq: number) => MessageKind;
  /** Give up on a message after this long without a 2xx (Meta retries for much longer). */
  maxRetryMs?: number;
  requestTimeoutMs?: number;
}

const OTHER_SENDER = '15557654321';

function textFor(kind: MessageKind, seq: number): string {
  switch (kind) {
    case 'poison-mapping':
      return `${POISON_MAPPING_MARKER} fault-suite message ${seq}`;
    case 'poison-422':
      return `${POISON_422_MARKER} fault-suite message ${seq}`;
    default:
      return `fault-suite message ${seq} ✓`;
  }
}

export class LoadGenerator {
  readonly messages = new Map<string, SentMessage>();
  readonly responses: ResponseEvent[] = [];
  private ticker: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private seq = 0;
  private startedAt = 0;
  private stopping = false;
  private readonly maxRetryMs: number;
  private readonly requestTimeoutMs: number;

  constructor(private readonly o: LoadOptions) {
    this.maxRetryMs = o.maxRetryMs ?? 60_000;
    this.requestTimeoutMs = o.requestTimeoutMs ?? 10_000;
  }

  start(): void {
    this.startedAt = Date.now();
    this.ticker = setInterval(() => {
      if (this.stopping) return;
      const due = Math.floor(((Date.now() - this.startedAt) * this.o.ratePerSec) / 1000);
      // Catch up after a stalled event loop, but in bounded bursts.
      for (let burst = 0; this.seq < due && burst < 20; burst++) this.launch();
    }, 20);
  }

  private launch(): void {
    const seq = this.seq++;
    const kind = this.o.kindOf?.(seq) ?? 'good';
    const m: SentMessage = { wamid: newWamid(), kind, seq, firstSentAt: Date.now(), tries: 0, statuses: new Map(), ackedAt: undefined, gaveUp: false };
    this.messages.set(m.wamid, m);
    const p = this.deliver(m).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** One message, retried until a 2xx or until maxRetryMs. */
  private async deliver(m: SentMessage): Promise<void> {
    const body = metaSerialise(textEvent({ wamid: m.wamid, from: m.seq % 2 === 0 ? DEMO_WA_ID : OTHER_SENDER, text: textFor(m.kind, m.seq) }));
    const headers = { 'content-type': 'application/json', 'x-hub-signature-256': sign(body) };
    for (;;) {
      m.tries++;
      const startedAt = Date.now();
      let status = 0;
      try {
        const r = await fetch(this.o.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(this.requestTimeoutMs) });
        await r.arrayBuffer();
        status = r.status;
      } catch {
        status = 0;
      }
      const endedAt = Date.now();
      this.responses.push({ wamid: m.wamid, startedAt, endedAt, status });
      m.statuses.set(status, (m.statuses.get(status) ?? 0) + 1);
      if (status >= 200 && status < 300) {
        m.ackedAt = endedAt;
        return;
      }
      if (endedAt - m.firstSentAt > this.maxRetryMs) {
        m.gaveUp = true;
        return;
      }
      const ceiling = Math.min(4000, 250 * 2 ** Math.min(m.tries - 1, 6));
      await new Promise((r) => setTimeout(r, Math.floor(ceiling * (0.5 + Math.random() * 0.5))));
    }
  }

  /** Stops sending new messages and waits for the retries of those already sent (bounded). */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.ticker) clearInterval(this.ticker);
    const bound = new Promise((r) => setTimeout(r, this.maxRetryMs + this.requestTimeoutMs + 5000).unref());
    await Promise.race([Promise.all([...this.inFlight]), bound]);
  }

  sent(): number {
    return this.messages.size;
  }

  acknowledged(): SentMessage[] {
    return [...this.messages.values()].filter((m) => m.ackedAt !== undefined);
  }

  statusCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.responses) out[String(r.status)] = (out[String(r.status)] ?? 0) + 1;
    return out;
  }
}
