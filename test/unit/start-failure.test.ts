import { describe, expect, it } from 'vitest';
import { formatStartFailure, startFailureReason } from '../../src/core/start-failure.js';

const prefix = 'switchboard: failed to start: ';

/** One line, the prefix, a non-empty reason, and nothing that looks like a stack frame. */
function expectOneSentence(line: string): string {
  expect(line.startsWith(prefix)).toBe(true);
  expect(line.endsWith('\n')).toBe(true);
  const reason = line.slice(prefix.length, -1);
  expect(reason).not.toContain('\n');
  expect(reason.trim().length).toBeGreaterThan(10);
  expect(reason).not.toMatch(/\bat .*:\d+:\d+/);
  expect(reason).not.toContain('Cannot read properties');
  return reason;
}

describe('switchboard: failed to start: <reason>', () => {
  it('gives a reason and what to do for a rejection with undefined', () => {
    const reason = expectOneSentence(formatStartFailure(undefined));
    expect(reason).toContain('undefined');
    expect(reason).toContain('LOG_LEVEL=debug');
  });

  it('gives a reason for null, an Error without a message and an empty object', () => {
    expect(expectOneSentence(formatStartFailure(null))).toContain('null');
    expect(expectOneSentence(formatStartFailure(new Error()))).toContain('Error without a message');
    expect(expectOneSentence(formatStartFailure({}))).toContain('LOG_LEVEL=debug');
  });

  it('prints a thrown string as it is', () => {
    expect(formatStartFailure('redis is gone')).toBe(`${prefix}redis is gone\n`);
  });

  it('prints an Error by its message, never its stack', () => {
    const err = new Error('the channels directory is empty');
    expect(err.stack).toContain('start-failure.test');
    expect(formatStartFailure(err)).toBe(`${prefix}the channels directory is empty\n`);
  });

  it('keeps a multi-line message on one line', () => {
    expect(expectOneSentence(formatStartFailure(new Error('initdb failed:\n  could not open\n  file')))).toBe('initdb failed: could not open file');
  });

  it('names the code of a system error and says what to do', () => {
    const err = Object.assign(new Error('spawn /x/initdb EACCES'), { code: 'EACCES', syscall: 'spawn /x/initdb', path: '/x/initdb' });
    const reason = expectOneSentence(formatStartFailure(err));
    expect(reason.startsWith('spawn /x/initdb EACCES; ')).toBe(true);
    expect(reason).toContain('DATA_DIR');
    const inUse = Object.assign(new Error('listen failed on 127.0.0.1:8080'), { code: 'EADDRINUSE' });
    expect(startFailureReason(inUse)).toBe('listen failed on 127.0.0.1:8080 (EADDRINUSE); another process holds that port: stop it or set PORT (or the port named above) to a free one');
  });

  it('names the code when the error has no message, and follows a cause', () => {
    expect(startFailureReason(Object.assign(new Error(''), { code: 'E_SOMETHING' }))).toBe('Error E_SOMETHING');
    expect(startFailureReason(new Error('database not reachable', { cause: new Error('connect ECONNREFUSED 127.0.0.1:5432') }))).toBe(
      'database not reachable: connect ECONNREFUSED 127.0.0.1:5432',
    );
  });

  it('describes other thrown values', () => {
    expect(startFailureReason(42)).toBe('42');
    expect(startFailureReason({ reason: 'bad' })).toBe('{"reason":"bad"}');
  });
});
