/** `$e164(phone, defaultCountry?)`: a phone number in E.164 (`+31612345678`), or undefined. */
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';
import { MappingFunctionError, functionErrorCodes } from './function-error.js';

/** Digits only, with at most the separators people write: spaces, dots, dashes, slashes and parentheses. */
const WRITTEN_NUMBER = /^\+?[\d\s().\-/]+$/;

/**
 * Rules, in order:
 *  - `+…` or `00…` is an international number;
 *  - with `defaultCountry` (ISO 3166 alpha-2, e.g. `NL`), anything else is a national number of that country;
 *  - without it, 8 to 15 bare digits are an international number written without `+`
 *    (WhatsApp `wa_id`, Twilio `WaId`);
 *  - the result must be a valid number for its country (libphonenumber metadata), else undefined.
 */
export function e164(phone: unknown, defaultCountry?: unknown): string | undefined {
  if (phone === undefined || phone === null) return undefined;
  let text = typeof phone === 'number' ? (Number.isInteger(phone) && phone > 0 ? String(phone) : '') : String(phone).trim();
  if (text === '' || !WRITTEN_NUMBER.test(text)) return undefined;
  let country: CountryCode | undefined;
  if (defaultCountry !== undefined && defaultCountry !== null && defaultCountry !== '') {
    if (typeof defaultCountry !== 'string' || !/^[A-Za-z]{2}$/.test(defaultCountry)) {
      throw new MappingFunctionError(
        functionErrorCodes.badArgument,
        `$e164: defaultCountry must be a two-letter ISO 3166 country code such as 'NL' or 'US', not ${JSON.stringify(defaultCountry)}`,
      );
    }
    country = defaultCountry.toUpperCase() as CountryCode;
  }
  if (text.startsWith('00')) text = `+${text.slice(2)}`;
  if (!text.startsWith('+') && country === undefined) {
    const digits = text.replace(/\D/g, '');
    if (digits.length < 8 || digits.length > 15 || digits.startsWith('0')) return undefined;
    text = `+${digits}`;
  }
  let parsed;
  try {
    parsed = parsePhoneNumberFromString(text, country);
  } catch {
    return undefined;
  }
  return parsed !== undefined && parsed.isValid() ? parsed.number : undefined;
}
