/** `mllp://host:port` (plain TCP) and `mllps://host:port` (TLS) endpoint URLs. */

export interface MllpUrl {
  tls: boolean;
  host: string;
  port: number;
}

export const MLLP_URL_PATTERN = /^mllps?:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/;

/** Parses an MLLP URL; undefined when it is not one (no path, query or credentials allowed). */
export function parseMllpUrl(url: string): MllpUrl | undefined {
  const m = MLLP_URL_PATTERN.exec(url.trim());
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  return { tls: url.trim().startsWith('mllps:'), host, port };
}
