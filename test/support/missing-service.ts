/**
 * What a test run does when something it tests against is absent (a system service such as
 * redis-server, or the optional conformance corpus): one loud line naming what is skipped and how
 * to get it, and with CI=true a failure, because nothing may be skipped in CI. global-setup calls
 * this once per run; the test files themselves only skip (describe.skipIf). `optionalInCi` keeps
 * the loud skip under CI=true for what the run was told may be absent.
 */
export function reportMissing(what: string, skipped: string, howToGet: string, o: { optionalInCi?: boolean } = {}): void {
  if (process.env['CI'] === 'true' && !o.optionalInCi) {
    throw new Error(`${what} is missing and CI=true: nothing may be skipped. ${howToGet}`);
  }
  process.stderr.write(`\n\x1b[1;33m!!! ${what} not found: ${skipped} SKIPPED. ${howToGet}\x1b[0m\n\n`);
}
