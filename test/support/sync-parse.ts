/** For sources whose parse() is synchronous: the result, or a failure if it returned a Promise. */
export function syncResult<T>(r: T | Promise<T>): T {
  if (r instanceof Promise) throw new Error('expected a synchronous parse() for this source');
  return r;
}
