// ConfideSocket: one chat session (`${url}/chat/${sessionId}`), framework-free.
// Follows PROTOCOL.md: hello with the token in the first frame, full-jitter backoff,
// close codes that forbid reconnecting, heartbeat, resume with history catch-up, an outbox
// that keeps each message until its ack, and each offset delivered once, in order.
import { backoffDelay, FINAL_CODES, shouldReconnect } from "./backoff.js";
import { openBody, sealBody, Sealer } from "./crypto.js";
import { DeliveryCursor } from "./cursor.js";
import { ConfideError } from "./errors.js";
import { fetchRange, HistoryRequests } from "./history.js";
import { Outbox, type Acked } from "./outbox.js";
import type * as P from "./protocol.gen.js";
import type {
  ChatMessageFrame,
  CloseInfo,
  ConfideSocketOptions,
  ConnectionState,
  Listener,
  SocketEvents,
  TokenSource,
  UserStatus,
} from "./types.js";

export type {
  ChatMessageFrame,
  CloseInfo,
  ConfideSocketOptions,
  ConnectionState,
  SocketEvents,
  TokenSource,
  UserStatus,
};

export const SUBPROTOCOL = "confide.v1";
export const CLIENT_NAME = "confide-web/0.1";
/** Messages fetched per `history` request while catching up. */
export const CATCH_UP_PAGE = 200;
const RATE_LIMIT_RETRY_MS = 1000;

export class ConfideSocket {
  readonly options: ConfideSocketOptions;
  /** Where delivery stands: the epoch and the last offset delivered. */
  readonly cursor = new DeliveryCursor();
  private _state: ConnectionState = "closed";
  private ws: WebSocket | null = null;
  private generation = 0;
  private wanted = false;
  private attempt = 0;
  private everOpened = false;
  private lastToken: string | undefined;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private watchdog: ReturnType<typeof setTimeout> | null = null;
  private heartbeatMs = 25_000;
  private pingId = 0;
  private readonly outbox = new Outbox();
  private preparing: Promise<unknown> = Promise.resolve();
  private inbound: Promise<void> = Promise.resolve();
  private catchingUp = false;
  private held: P.MessageEvent[] = [];
  private readonly historyRequests = new HistoryRequests((frame) => this.send(frame));
  private readonly sealer = new Sealer(() => this.options.sessionKey);
  private readonly listeners: { [K in keyof SocketEvents]: Set<Listener<K>> } = {
    message: new Set(),
    status: new Set(),
    error: new Set(),
    close: new Set(),
    frame: new Set(),
  };
  private readonly onOnline = (): void => {
    if (this.wanted && this.ws === null && this.timers.size > 0) this.retryNow();
  };

  constructor(options: ConfideSocketOptions) {
    this.options = options;
  }

  get state(): ConnectionState {
    return this._state;
  }

  get isConnected(): boolean {
    return this._state === "open";
  }

  /** Ids of messages sent and not acked yet, oldest first. */
  get pending(): string[] {
    return this.outbox.ids;
  }

  get chatUrl(): string {
    return `${this.options.url.replace(/\/+$/, "")}/chat/${encodeURIComponent(this.options.sessionId)}`;
  }

  on<K extends keyof SocketEvents>(event: K, listener: Listener<K>): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  /** Open the socket (no-op while already connected or connecting). */
  connect(): void {
    if (this.wanted) return;
    this.wanted = true;
    this.attempt = 0;
    globalThis.addEventListener?.("online", this.onOnline);
    void this.open();
  }

  /** Close for good: the socket, every timer; messages not acked yet are rejected. */
  disconnect(): void {
    this.finish(1000, "client disconnect", false);
  }

  /** Send a chat message; settles with its offset once the server acks it (durable). */
  sendMessage(body: Record<string, unknown>): Promise<Acked> {
    const id = globalThis.crypto.randomUUID();
    const ready = this.preparing.then(() => this.prepare(id, body));
    this.preparing = ready.catch(() => undefined);
    return ready.then(
      (frame) =>
        new Promise((resolve, reject) => {
          this.outbox.add(frame, resolve, reject);
          if (this._state === "open") this.send(frame);
        }),
    );
  }

  /** Tell the others `online|typing|idle|away`. Ephemeral: dropped while not open. */
  sendStatus(status: UserStatus): void {
    if (this._state === "open") this.send({ type: "status", status });
  }

  /** The `history` frame: retained messages before `before` (newest `limit`, oldest first).
   * Does not move the cursor and delivers nothing through `onMessage`. */
  requestHistory(before?: number, limit = 50): Promise<P.History> {
    if (this._state !== "open") {
      return Promise.reject(new ConfideError("closed", "not connected"));
    }
    return this.historyRequests.request(before, limit);
  }

  // ---------------------------------------------------------------- connection

  private setState(state: ConnectionState): void {
    if (state === this._state) return;
    this._state = state;
    this.options.onStatusChange?.(state);
    this.emit("status", state);
  }

  private emit<K extends keyof SocketEvents>(event: K, value: SocketEvents[K]): void {
    for (const listener of [...this.listeners[event]]) listener(value);
  }

  private reportError(error: ConfideError): void {
    this.options.onError?.(error);
    this.emit("error", error);
  }

  private async token(): Promise<string | undefined> {
    const source = this.options.token;
    return typeof source === "function" ? await source() : source;
  }

  private async open(): Promise<void> {
    const generation = ++this.generation;
    this.setState(this.everOpened || this.attempt > 0 ? "reconnecting" : "connecting");
    let token: string | undefined;
    try {
      token = await this.token();
    } catch {
      if (generation !== this.generation || !this.wanted) return;
      this.reportError(new ConfideError("token", "the token function failed"));
      this.scheduleReconnect();
      return;
    }
    if (generation !== this.generation || !this.wanted) return;
    this.lastToken = token;
    const ws = new WebSocket(this.chatUrl, SUBPROTOCOL);
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      const hello: P.Hello = { type: "hello", client: CLIENT_NAME };
      if (token !== undefined) hello.token = token;
      if (this.cursor.epoch !== null) {
        hello.resume = { offset: this.cursor.last, epoch: this.cursor.epoch };
      }
      this.send(hello);
      this.armWatchdog();
    };
    ws.onmessage = (event: MessageEvent) => {
      if (ws !== this.ws) return;
      this.armWatchdog();
      let frame: P.ServerFrame;
      try {
        frame = JSON.parse(String(event.data)) as P.ServerFrame;
      } catch {
        this.reportError(new ConfideError("protocol", "a frame that is not JSON"));
        return;
      }
      this.inbound = this.inbound.then(() =>
        ws === this.ws ? this.handle(frame) : undefined,
      ).catch(() => undefined);
    };
    ws.onclose = (event: CloseEvent) => {
      if (ws !== this.ws) return;
      void this.closed(event.code, event.reason);
    };
  }

  private async closed(code: number, reason: string): Promise<void> {
    this.dropSocket();
    if (!this.wanted) return;
    if (code === 4401 && typeof this.options.token === "function") {
      // 4401 is final "until given a new token": ask for one, retry only if it changed.
      const previous = this.lastToken;
      let fresh: string | undefined;
      try {
        fresh = await this.token();
      } catch {
        fresh = previous;
      }
      if (!this.wanted) return;
      if (fresh !== previous) {
        this.emit("close", { code, reason, reconnecting: true });
        this.scheduleReconnect();
        return;
      }
    }
    if (shouldReconnect(code) && !FINAL_CODES.has(code)) {
      this.emit("close", { code, reason, reconnecting: true });
      this.scheduleReconnect();
    } else {
      this.finish(code, reason, true);
    }
  }

  private scheduleReconnect(): void {
    this.setState("reconnecting");
    const delay = backoffDelay(this.attempt++);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.wanted) void this.open();
    }, delay);
    this.timers.add(timer);
  }

  private retryNow(): void {
    this.clearTimers();
    this.attempt = 0;
    void this.open();
  }

  /** Tear everything down; `fromServer`: the close came from the server (final code). */
  private finish(code: number, reason: string, fromServer: boolean): void {
    const wasActive = this.wanted || this.ws !== null;
    this.wanted = false;
    this.generation++;
    globalThis.removeEventListener?.("online", this.onOnline);
    const ws = this.ws;
    this.dropSocket();
    this.clearTimers();
    if (ws !== null && ws.readyState <= 1) ws.close(1000, "client disconnect");
    const error = new ConfideError("closed", `closed (${code}) before the ack`, { closeCode: code });
    this.outbox.rejectAll(error);
    this.historyRequests.failAll(new ConfideError("closed", "closed"));
    this.catchingUp = false;
    this.held = [];
    this.inbound = Promise.resolve();
    this.setState("closed");
    if (wasActive) this.emit("close", { code, reason: fromServer ? reason : "", reconnecting: false });
  }

  private dropSocket(): void {
    const ws = this.ws;
    this.ws = null;
    if (ws !== null) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    }
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    if (this.watchdog !== null) clearTimeout(this.watchdog);
    this.heartbeat = this.watchdog = null;
    this.historyRequests.failAll(new ConfideError("closed", "connection lost"));
    this.catchingUp = false; // the next welcome catches up again from the same offset
    this.held = [];
    if (this._state === "open") this.setState("reconnecting");
  }

  private clearTimers(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  /** No frame for 2 × heartbeat: the connection is dead; reconnect (as after 1006). */
  private armWatchdog(): void {
    if (this.watchdog !== null) clearTimeout(this.watchdog);
    const ws = this.ws;
    this.watchdog = setTimeout(() => {
      if (ws !== this.ws || ws === null) return;
      ws.close(4000, "heartbeat timeout");
      void this.closed(1006, "heartbeat timeout");
    }, 2 * this.heartbeatMs);
  }

  private send(frame: P.ClientFrame): void {
    if (this.ws !== null && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  // ---------------------------------------------------------------- frames

  private async handle(frame: P.ServerFrame): Promise<void> {
    switch (frame.type) {
      case "welcome":
        return this.onWelcome(frame as P.ChatWelcome);
      case "message":
        return this.take(frame);
      case "ack":
        return this.onAck(frame);
      case "history": {
        this.historyRequests.answer(frame);
        return;
      }
      case "error":
        this.onServerError(frame);
        return;
      case "pong":
        return;
      default:
        this.emit("frame", frame);
    }
  }

  private onWelcome(welcome: P.ChatWelcome): void {
    this.heartbeatMs = Math.max(1, welcome.heartbeat_s) * 1000;
    this.attempt = 0;
    this.everOpened = true;
    if (!this.cursor.continues(welcome.epoch, welcome.offset)) {
      this.cursor.reset(welcome.epoch, welcome.offset);
    } else if (welcome.recovered === false) {
      this.startCatchUp(this.cursor.last, welcome.offset);
    }
    this.heartbeat = setInterval(
      () => this.send({ type: "ping", id: ++this.pingId }),
      0.8 * this.heartbeatMs,
    );
    this.armWatchdog();
    this.setState("open");
    this.emit("frame", welcome);
    for (const frame of this.outbox.frames) this.send(frame);
  }

  private async take(message: P.MessageEvent): Promise<void> {
    if (this.catchingUp) {
      this.held.push(message);
      return;
    }
    const decision = this.cursor.decide(message.offset);
    if (decision.kind === "skip") return;
    if (decision.kind === "gap") {
      this.held.push(message);
      this.startCatchUp(decision.after, decision.upto);
      return;
    }
    this.cursor.delivered(message.offset);
    await this.deliver(message);
  }

  private async deliver(message: P.MessageEvent): Promise<void> {
    let out: ChatMessageFrame = message;
    if (message.encrypted) {
      try {
        const body = await openBody(await this.sealer.key(), message.session_id, message.body);
        out = { ...message, body, decrypted: true };
      } catch (e) {
        const why = e instanceof ConfideError ? e.message : "cannot decrypt";
        this.reportError(
          new ConfideError("decrypt_failed", why, { id: message.id, offset: message.offset }),
        );
        out = { ...message, decrypted: false };
      }
    }
    this.options.onMessage?.(out);
    this.emit("message", out);
  }

  private onAck(ack: P.Ack): void {
    if (typeof ack.offset === "number") this.outbox.acked(ack.id, ack.offset);
  }

  private onServerError(error: P.Error): void {
    const id = error.id;
    const err = new ConfideError(error.code, error.message, id == null ? {} : { id });
    if (this.outbox.has(id)) {
      if (error.code === "rate_limited") {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          const still = this.outbox.frame(id);
          if (still !== undefined && this._state === "open") this.send(still);
        }, RATE_LIMIT_RETRY_MS);
        this.timers.add(timer);
        return;
      }
      this.outbox.refused(id, err);
    }
    this.reportError(err);
  }

  // ---------------------------------------------------------------- catch-up

  private startCatchUp(since: number, upto: number): void {
    this.catchingUp = true;
    const generation = this.generation;
    void this.catchUp(since, upto, generation);
  }

  /** Deliver the retained messages in (since, upto], then those held meanwhile, in order. */
  private async catchUp(since: number, upto: number, generation: number): Promise<void> {
    let missed: P.MessageEvent[];
    try {
      missed = await fetchRange(this.historyRequests, since, upto, CATCH_UP_PAGE);
    } catch {
      return; // connection lost: the next welcome catches up again from the same offset
    }
    if (generation !== this.generation) return;
    // Run in the inbound chain, so that no live frame is handled in between.
    this.inbound = this.inbound.then(async () => {
      this.catchingUp = false;
      for (const message of this.cursor.cover(missed, (m) => m.offset, upto)) {
        this.cursor.delivered(message.offset);
        await this.deliver(message);
      }
      this.cursor.delivered(upto); // what is no longer retained is lost
      const held = this.held.sort((a, b) => a.offset - b.offset);
      this.held = [];
      for (const message of held) await this.take(message);
    });
  }

  // ---------------------------------------------------------------- encryption

  private async prepare(id: string, body: Record<string, unknown>): Promise<P.ChatMessage> {
    if (!this.options.encrypted) return { type: "message", id, body, encrypted: false };
    const key = await this.sealer.key();
    if (key === null) {
      const error = new ConfideError("no_session_key", "encrypted needs a sessionKey", { id });
      this.reportError(error);
      throw error;
    }
    const sealed = await sealBody(key, this.options.sessionId, body);
    return { type: "message", id, body: { ...sealed }, encrypted: true };
  }
}
