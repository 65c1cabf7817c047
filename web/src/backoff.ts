// Reconnect policy (PROTOCOL.md, "Errors and close codes").

/** Close codes after which the client reconnects (with backoff). */
export const RECONNECT_CODES: ReadonlySet<number> = new Set([
  1001, 1006, 1011, 1012, 1013, 4408, 4429, 4503,
]);

/** Close codes after which it does not (4401: not until given a new token). */
export const FINAL_CODES: ReadonlySet<number> = new Set([4400, 4401, 4403, 4404, 4410, 1009]);

export const BASE_BACKOFF_MS = 500;
export const MAX_BACKOFF_MS = 20_000;

/**
 * Full-jitter backoff: a delay drawn uniformly from [0, min(max, base * 2^attempt)).
 * `attempt` counts failed tries since the last successful `welcome` (0 for the first retry).
 */
export function backoffDelay(
  attempt: number,
  random: () => number = Math.random,
  baseMs: number = BASE_BACKOFF_MS,
  maxMs: number = MAX_BACKOFF_MS,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return random() * ceiling;
}

/** Whether a close with `code` is followed by a reconnect. Unknown codes are final. */
export function shouldReconnect(code: number): boolean {
  return RECONNECT_CODES.has(code);
}
