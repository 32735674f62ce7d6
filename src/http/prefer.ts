/** The preferences asyncfirst honours from a Prefer header (RFC 7240). */
export interface Preferences {
  /** Seconds the client is willing to wait (wait=N), already capped; undefined when not asked. */
  wait?: number;
  /** respond-async: answer 202 at once. */
  respondAsync: boolean;
}

/** Reads `Prefer: wait=N` and `respond-async`, capping the wait at `maxWaitSeconds`. Unknown preferences are ignored, as RFC 7240 asks. */
export function parsePrefer(header: string | string[] | undefined, maxWaitSeconds: number): Preferences {
  const preferences: Preferences = { respondAsync: false };
  if (header === undefined) return preferences;
  for (const item of (Array.isArray(header) ? header.join(',') : header).split(',')) {
    const [token = ''] = item.split(';');
    const [name = '', rawValue] = token.split('=');
    const key = name.trim().toLowerCase();
    const value = rawValue?.trim().replace(/^"|"$/g, '');
    if (key === 'respond-async') preferences.respondAsync = true;
    else if (key === 'wait' && value !== undefined && /^\d+$/.test(value)) preferences.wait = Math.min(Number(value), maxWaitSeconds);
  }
  return preferences;
}
