/**
 * `npx tsx bench/profile-summary.ts <file.cpuprofile> [top] [skip-ms]`: self time by function and
 * by package/file from a V8 CPU profile (as written by `npm run bench -- --profile`), ignoring
 * the first skip-ms milliseconds (start-up: module loading, FHIR definitions).
 */
import { readFileSync } from 'node:fs';

/** Frames of the project's own files are named relative to the repository root. */
const REPOSITORY_URL = new URL('../', import.meta.url).href;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: npx tsx bench/profile-summary.ts <file.cpuprofile> [top] [skip-ms]\n');
  process.exit(2);
}
const top = Number(process.argv[3] ?? 30);
const skipUs = Number(process.argv[4] ?? 0) * 1000;
const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
let elapsed = 0;
for (let i = 0; i < p.samples.length; i++) {
  elapsed += p.timeDeltas[i] ?? 0;
  if (elapsed < skipUs) continue;
  selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
}
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);

const where = (url: string): string => {
  if (url === '') return '(native/vm)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith(REPOSITORY_URL)) return url.slice(REPOSITORY_URL.length);
  const m = /file:\/\/(.*)$/.exec(url);
  return m ? m[1]! : url;
};
const byFn = new Map<string, number>();
const byPkg = new Map<string, number>();
for (const [id, us] of selfUs) {
  const n = byId.get(id)!;
  const fn = `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  byFn.set(fn, (byFn.get(fn) ?? 0) + us);
  const pkg = where(n.callFrame.url);
  byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + us);
}
const show = (title: string, m: Map<string, number>) => {
  process.stdout.write(`\n${title} (total ${(total / 1000).toFixed(0)} ms sampled)\n`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}\n`);
  }
};
show('self time by package / file', byPkg);
show('self time by function', byFn);
