/**
 * Redis Cluster configuration: REDIS_CLUSTER_NODES as an operator writes it, and the hash-tag rule
 * on QUEUE_PREFIX (BullMQ keeps every key of a queue in one slot, or its scripts fail CROSSSLOT).
 */
import { describe, expect, it } from 'vitest';
import { EnvError, parseEnv } from '../../src/config/env.js';
import { assertClusterPrefix, createRedisClusterBackend, hashTagOf, RedisClusterPrefixError } from '../../src/queue/queue-backend.js';
import { createLogger } from '../../src/core/logger.js';

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    parseEnv(env);
  } catch (err) {
    if (err instanceof EnvError) return err.problems;
    throw err;
  }
  return [];
};

describe('REDIS_CLUSTER_NODES', () => {
  it('takes host:port seed nodes separated by commas, without duplicates', () => {
    const cfg = parseEnv({ REDIS_CLUSTER_NODES: ' redis-a.internal:7000, 10.0.0.2:7001,[::1]:7002,10.0.0.2:7001' });
    expect(cfg.REDIS_CLUSTER_NODES).toEqual({
      nodes: [
        { host: 'redis-a.internal', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: '::1', port: 7002 },
      ],
      tls: false,
    });
    expect(parseEnv({}).REDIS_CLUSTER_NODES).toBeUndefined();
    expect(parseEnv({ REDIS_CLUSTER_NODES: '' }).REDIS_CLUSTER_NODES).toBeUndefined();
  });

  it('takes URLs, whose scheme and credentials serve every node', () => {
    const cfg = parseEnv({ REDIS_CLUSTER_NODES: 'rediss://queue:s%40cret@redis-a:6380,redis-b:6380,rediss://queue:s%40cret@redis-c' });
    expect(cfg.REDIS_CLUSTER_NODES).toEqual({
      nodes: [
        { host: 'redis-a', port: 6380 },
        { host: 'redis-b', port: 6380 },
        { host: 'redis-c', port: 6379 },
      ],
      tls: true,
      username: 'queue',
      password: 's@cret',
    });
  });

  it('refuses what it cannot use, saying what is wrong', () => {
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'redis-a:7000,,redis-b:7000' })).toEqual([expect.stringMatching(/^REDIS_CLUSTER_NODES: an empty entry/)]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'redis-a' })).toEqual([expect.stringMatching(/"redis-a": expected host:port/)]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'redis-a:70000' })).toEqual([expect.stringMatching(/port out of range/)]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'http://redis-a:7000' })).toEqual([expect.stringMatching(/must be redis:\/\/ or rediss:\/\//)]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'redis://redis-a:7000/2' })).toEqual([expect.stringMatching(/only database 0/)]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'redis://:one@redis-a:7000,redis://:two@redis-b:7000' })).toEqual([expect.stringMatching(/differ in scheme or credentials/)]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'redis://redis-a:7000,rediss://redis-b:7000' })).toEqual([expect.stringMatching(/differ in scheme or credentials/)]);
    // A problem names the nodes, never a password.
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'redis://:pw-alpha@redis-a:7000,redis://:pw-beta@redis-b:7000' }).join()).not.toMatch(/pw-/);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'redis://:pw-alpha@redis-a:99999' })).toEqual([expect.not.stringMatching(/pw-/)]);
  });

  it('is exclusive with REDIS_URL', () => {
    expect(problemsOf({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_CLUSTER_NODES: '127.0.0.1:7000' })).toEqual([
      'REDIS_CLUSTER_NODES: set either REDIS_URL (one Redis server) or REDIS_CLUSTER_NODES (a Redis Cluster), not both',
    ]);
  });
});

describe('QUEUE_PREFIX on a Redis Cluster', () => {
  it('finds the hash tag as Redis does: the first {…}, when not empty', () => {
    expect(hashTagOf('{switchboard}')).toBe('switchboard');
    expect(hashTagOf('prod-{switchboard}-eu')).toBe('switchboard');
    expect(hashTagOf('{a}{b}')).toBe('a');
    expect(hashTagOf('switchboard')).toBeUndefined();
    expect(hashTagOf('{}switchboard')).toBeUndefined();
    expect(hashTagOf('{}{switchboard}')).toBeUndefined();
    expect(hashTagOf('switchboard}{')).toBeUndefined();
  });

  it('refuses a prefix without a hash tag, in one line that says what to set', () => {
    expect(() => assertClusterPrefix('{switchboard}')).not.toThrow();
    let err: unknown;
    try {
      assertClusterPrefix('switchboard');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RedisClusterPrefixError);
    const message = (err as Error).message;
    expect(message).not.toContain('\n');
    expect(message).toMatch(/^QUEUE_PREFIX "switchboard" has no hash tag: .*one slot.*QUEUE_PREFIX=\{switchboard\}$/);
  });

  it('the cluster backend refuses such a prefix before it opens any connection', () => {
    const logger = createLogger({ level: 'silent' });
    expect(() => createRedisClusterBackend({ nodes: [{ host: '127.0.0.1', port: 1 }], tls: false }, { prefix: 'switchboard', logger })).toThrow(RedisClusterPrefixError);
  });
});
