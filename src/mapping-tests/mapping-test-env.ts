/**
 * The environment channel files are checked against offline (lint, channel tests, validate):
 * what the gateway itself would use. Besides the variables given, the gateway fills some in:
 * in development the documented defaults (config/env.ts), and the addresses of the sandboxes it
 * starts when they are unset (FHIR_BASE_URL, LAB_MLLP_URL, INSURER_MLLP_URL).
 */
import { devDefaults } from '../config/env.js';

export type EnvMode = 'development' | 'production';

/**
 * Variables the gateway provides itself when unset, with what stands in (keep in step with
 * src/app.ts, which starts the sandboxes and sets these).
 */
export const gatewayProvided: Readonly<Record<string, { value: string; why: string }>> = {
  FHIR_BASE_URL: { value: 'http://127.0.0.1:0/fhir/R4', why: 'the gateway starts its in-process FHIR sandbox' },
  LAB_MLLP_URL: { value: 'mllp://127.0.0.1:2575', why: 'the gateway starts a sandbox lab MLLP peer' },
  INSURER_MLLP_URL: { value: 'mllp://127.0.0.1:2576', why: 'the gateway starts a sandbox insurer MLLP peer' },
  WHATSAPP_GRAPH_URL: { value: 'http://127.0.0.1:1', why: 'the zero-config gateway starts its sandbox Graph API (nothing reaches WhatsApp)' },
  WHATSAPP_ACCESS_TOKEN: { value: 'sandbox-graph-api-token', why: 'the sandbox Graph API takes any token' },
  WHATSAPP_PHONE_NUMBER_ID: { value: '100555000000099', why: 'a sandbox business number' },
  FHIR_SUBSCRIPTION_SECRET: { value: 'sandbox-subscription-secret-0123456789abcdef', why: 'the zero-config gateway generates the sandbox Subscription\'s secret' },
};

export interface EffectiveEnv {
  env: Record<string, string | undefined>;
  /** Variable → why it has a value although it is unset. */
  filledIn: Map<string, string>;
}

/** The variables given, plus the gateway's own fill-ins for `mode`. */
export function effectiveChannelEnv(given: Readonly<Record<string, string | undefined>>, mode: EnvMode): EffectiveEnv {
  const env: Record<string, string | undefined> = { ...given };
  const filledIn = new Map<string, string>();
  const unset = (name: string): boolean => env[name] === undefined || env[name] === '';
  if (mode === 'development') {
    for (const [name, value] of Object.entries(devDefaults)) {
      if (unset(name)) {
        env[name] = value;
        filledIn.set(name, 'the development default is used (set it in production)');
      }
    }
  }
  for (const [name, provided] of Object.entries(gatewayProvided)) {
    if (unset(name)) {
      env[name] = provided.value;
      filledIn.set(name, provided.why);
    }
  }
  return { env, filledIn };
}

/** SWITCHBOARD_ENV of an environment (development unless it says production). */
export function envMode(env: Readonly<Record<string, string | undefined>>): EnvMode {
  return env['SWITCHBOARD_ENV'] === 'production' ? 'production' : 'development';
}
