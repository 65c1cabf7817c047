// The offset rule of one reader of a chat log (mirrors confide/cursor.py): each offset is
// delivered once, in order; a jump forward is a gap to fill from `history`.

export type Decision =
  | { kind: "skip"; offset: number }
  | { kind: "deliver"; offset: number }
  | { kind: "gap"; after: number; upto: number };

export class DeliveryCursor {
  /** The log's epoch (null before the first `welcome`). */
  epoch: string | null = null;
  /** The offset of the last message delivered (a fresh join starts at `welcome.offset`). */
  last = 0;

  decide(offset: number): Decision {
    if (offset <= this.last) return { kind: "skip", offset };
    if (offset === this.last + 1) return { kind: "deliver", offset };
    return { kind: "gap", after: this.last, upto: offset - 1 };
  }

  /** Move past `offset` (delivered, or known lost). Never moves back. */
  delivered(offset: number): void {
    if (offset > this.last) this.last = offset;
  }

  /** Whether a log in `epoch` whose newest offset is `latest` continues this position. */
  continues(epoch: string, latest: number): boolean {
    return epoch === this.epoch && latest >= this.last;
  }

  reset(epoch: string, last = 0): void {
    this.epoch = epoch;
    this.last = last;
  }

  /** The messages of `page` after `last` (and up to `upto`), first copy of each, in order. */
  cover<M>(page: Iterable<M>, offsetOf: (m: M) => number, upto?: number): M[] {
    const fresh = new Map<number, M>();
    for (const message of page) {
      const offset = offsetOf(message);
      if (offset > this.last && (upto === undefined || offset <= upto) && !fresh.has(offset)) {
        fresh.set(offset, message);
      }
    }
    return [...fresh.keys()].sort((a, b) => a - b).map((o) => fresh.get(o) as M);
  }
}
