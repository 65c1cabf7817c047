// `history` requests on a chat socket: answered in order (history frames carry no id), each
// with a timeout; and the paging back through them that a catch-up needs.
import { ConfideError } from "./errors.js";
import type * as P from "./protocol.gen.js";

const HISTORY_TIMEOUT_MS = 30_000;

interface Waiter {
  resolve: (frame: P.History) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class HistoryRequests {
  private waiters: Waiter[] = [];

  constructor(private readonly send: (frame: P.HistoryRequest) => void) {}

  request(before: number | undefined, limit: number): Promise<P.History> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new ConfideError("timeout", "no history answer"));
      }, HISTORY_TIMEOUT_MS);
      const waiter: Waiter = { resolve, reject, timer };
      this.waiters.push(waiter);
      const frame: P.HistoryRequest = { type: "history", limit };
      if (before !== undefined) frame.before = before;
      this.send(frame);
    });
  }

  /** A `history` frame arrived: it answers the oldest request. */
  answer(frame: P.History): void {
    const waiter = this.waiters.shift();
    if (waiter === undefined) return;
    clearTimeout(waiter.timer);
    waiter.resolve(frame);
  }

  /** The connection is gone: every request still open fails. */
  failAll(error: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
  }
}

/** The retained messages in (since, upto], paging back from `upto` (any order). */
export async function fetchRange(
  history: HistoryRequests,
  since: number,
  upto: number,
  page: number,
): Promise<P.MessageEvent[]> {
  const missed: P.MessageEvent[] = [];
  let before = upto + 1;
  while (before - 1 > since) {
    const got = await history.request(before, page);
    missed.push(...got.messages.filter((m) => m.offset > since && m.offset < before));
    const lowest = Math.min(before, ...got.messages.map((m) => m.offset));
    if (got.complete || lowest >= before) break;
    before = lowest;
  }
  return missed;
}
