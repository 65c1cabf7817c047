// A stand-in for the browser's WebSocket: the test plays the server.
export class FakeWebSocket {
  static instances: FakeWebSocket[] = [];
  static get last(): FakeWebSocket {
    const ws = FakeWebSocket.instances.at(-1);
    if (ws === undefined) throw new Error("no socket opened");
    return ws;
  }
  static reset(): void {
    FakeWebSocket.instances = [];
  }
  /** Sockets not closed yet (a leak check). */
  static live(): FakeWebSocket[] {
    return FakeWebSocket.instances.filter((ws) => ws.readyState < 2);
  }

  readyState = 0;
  sent: Array<Record<string, unknown>> = [];
  closedWith: { code?: number; reason?: string } | null = null;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    FakeWebSocket.instances.push(this);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // -------------------------------------------------- the test's side (the server)

  accept(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  sentOf(type: string): Array<Record<string, unknown>> {
    return this.sent.filter((f) => f.type === type);
  }
}

export function welcome(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: "welcome",
    user: "alice",
    role: "client",
    heartbeat_s: 25,
    session_id: "s1",
    epoch: "e1",
    offset: 0,
    members: [],
    recovered: true,
    ...extra,
  };
}

export function message(offset: number, extra: Record<string, unknown> = {}) {
  return {
    type: "message",
    session_id: "s1",
    offset,
    epoch: "e1",
    id: `m${offset}`,
    sender: "bob",
    ts: 1_700_000_000 + offset,
    body: { text: `hello ${offset}` },
    encrypted: false,
    ...extra,
  };
}
