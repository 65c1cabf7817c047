// The messages sent and not acked yet, in the order they were sent: each keeps its id (and
// frame) until its ack, so that it is sent again, unchanged, after a reconnect.
import type { ConfideError } from "./errors.js";
import type * as P from "./protocol.gen.js";

export interface Acked {
  id: string;
  offset: number;
}

interface Pending {
  frame: P.ChatMessage;
  resolve: (ack: Acked) => void;
  reject: (error: ConfideError) => void;
}

export class Outbox {
  private readonly items = new Map<string, Pending>();

  /** Ids, oldest first. */
  get ids(): string[] {
    return [...this.items.keys()];
  }

  /** Frames to send (again), oldest first. */
  get frames(): P.ChatMessage[] {
    return [...this.items.values()].map((p) => p.frame);
  }

  add(frame: P.ChatMessage, resolve: (ack: Acked) => void, reject: (e: ConfideError) => void): void {
    this.items.set(frame.id, { frame, resolve, reject });
  }

  frame(id: string): P.ChatMessage | undefined {
    return this.items.get(id)?.frame;
  }

  has(id: unknown): id is string {
    return typeof id === "string" && this.items.has(id);
  }

  /** The ack of `id`: its promise resolves, it leaves the outbox. */
  acked(id: string, offset: number): void {
    const pending = this.items.get(id);
    if (pending === undefined) return;
    this.items.delete(id);
    pending.resolve({ id, offset });
  }

  /** The server refused `id`: its promise rejects, it leaves the outbox. */
  refused(id: string, error: ConfideError): void {
    const pending = this.items.get(id);
    if (pending === undefined) return;
    this.items.delete(id);
    pending.reject(error);
  }

  /** Every message still waiting is rejected (a final close). */
  rejectAll(error: ConfideError): void {
    const all = [...this.items.values()];
    this.items.clear();
    for (const pending of all) pending.reject(error);
  }
}
