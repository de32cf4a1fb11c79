import { describe, expect, it } from 'vitest';
import { EnvError, parseEnv } from '../../src/config/env.js';

describe('identity settings from the environment', () => {
  it('needs OIDC_AUDIENCE with OIDC_ISSUER, and checks the role map and algorithms', () => {
    expect(() => parseEnv({ OIDC_ISSUER: 'https://sso.example/realms/clinic' })).toThrow(/OIDC_AUDIENCE: required with OIDC_ISSUER/);
    const ok = parseEnv({ OIDC_ISSUER: 'https://sso.example/realms/clinic', OIDC_AUDIENCE: 'switchboard-api', OIDC_ROLE_MAP: 'sb-viewers=viewer, sb-admins=admin' });
    expect(ok).toMatchObject({ OIDC_ROLE_CLAIM: 'roles', OIDC_ROLE_MAP: 'sb-viewers=viewer, sb-admins=admin' });
    expect(() => parseEnv({ OIDC_ROLE_MAP: 'sb-root=root' })).toThrow(EnvError);
    expect(() => parseEnv({ OIDC_ALGORITHMS: 'RS256,HS256' })).toThrow(/asymmetric/);
    expect(() => parseEnv({ OIDC_ISSUER: 'not a url', OIDC_AUDIENCE: 'a' })).toThrow(/OIDC_ISSUER/);
  });

  it('lets the console send no resource indicator (OIDC_CONSOLE_RESOURCE=none), or another one', () => {
    expect(parseEnv({}).OIDC_CONSOLE_RESOURCE).toBeUndefined();
    expect(parseEnv({ OIDC_CONSOLE_RESOURCE: 'none' }).OIDC_CONSOLE_RESOURCE).toBe('none');
    expect(parseEnv({ OIDC_CONSOLE_RESOURCE: 'api://switchboard' }).OIDC_CONSOLE_RESOURCE).toBe('api://switchboard');
    expect(() => parseEnv({ OIDC_CONSOLE_RESOURCE: 'no resource' })).toThrow(/OIDC_CONSOLE_RESOURCE: an absolute URI \(the API audience\), or none/);
  });

  it('trusts X-Forwarded-For only when told, and bounds the throttling settings', () => {
    expect(parseEnv({}).TRUST_PROXY).toBe(false);
    expect(parseEnv({ TRUST_PROXY: 'true' }).TRUST_PROXY).toBe(true);
    expect(() => parseEnv({ TRUST_PROXY: 'yes' })).toThrow(/TRUST_PROXY/);
    expect(parseEnv({})).toMatchObject({ AUTH_FAILURE_LIMIT: 10, AUTH_FAILURE_WINDOW_SECONDS: 60, AUTH_LOCKOUT_SECONDS: 60 });
    expect(() => parseEnv({ AUTH_FAILURE_LIMIT: '0' })).toThrow(/AUTH_FAILURE_LIMIT/);
  });
});
