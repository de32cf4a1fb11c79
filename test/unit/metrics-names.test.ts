/** Metric names as an operator types them into dashboards: one switchboard_ prefix, no doubled words. */
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/core/metrics.js';

describe('metric names', () => {
  it('process and Node.js metrics carry the switchboard_ prefix once', async () => {
    const text = await createMetrics().registry.metrics();
    const names = [...new Set([...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!))];
    expect(names).toContain('switchboard_process_cpu_seconds_total');
    expect(names).toContain('switchboard_nodejs_heap_size_used_bytes');
    expect(names.filter((n) => /switchboard_process_process_|switchboard_switchboard_/.test(n))).toEqual([]);
    expect(names.every((n) => n.startsWith('switchboard_'))).toBe(true);
  });
});
