import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ConfideSocket, type ChatMessageFrame, type ConnectionState } from "../src/socket.js";
import type { ConfideError } from "../src/errors.js";
import { FakeWebSocket, message, welcome } from "./fake-ws.js";

const flush = () => vi.advanceTimersByTimeAsync(0);

function make(extra: Partial<ConstructorParameters<typeof ConfideSocket>[0]> = {}) {
  const got: ChatMessageFrame[] = [];
  const states: ConnectionState[] = [];
  const errors: ConfideError[] = [];
  const socket = new ConfideSocket({
    url: "ws://h:8000/ws",
    sessionId: "s1",
    token: "tok-1",
    onMessage: (m) => got.push(m),
    onStatusChange: (s) => states.push(s),
    onError: (e) => errors.push(e),
    ...extra,
  });
  return { socket, got, states, errors };
}

/** connect() and complete the handshake with `w`. */
async function open(socket: ConfideSocket, w = welcome()): Promise<FakeWebSocket> {
  if (socket.state === "closed") socket.connect();
  await flush();
  const ws = FakeWebSocket.last;
  ws.accept();
  ws.receive(w);
  await flush();
  return ws;
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.stubGlobal("WebSocket", FakeWebSocket);
  FakeWebSocket.reset();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("handshake", () => {
  it("opens the chat socket with the subprotocol and sends the token in the first frame", async () => {
    const { socket, states } = make();
    socket.connect();
    await flush();
    const ws = FakeWebSocket.last;
    expect(ws.url).toBe("ws://h:8000/ws/chat/s1");
    expect(ws.protocols).toBe("confide.v1");
    expect(ws.url).not.toContain("tok-1");
    ws.accept();
    expect(ws.sent[0]).toEqual({ type: "hello", token: "tok-1", client: "confide-web/0.1" });
    expect(socket.state).toBe("connecting");
    ws.receive(welcome());
    await flush();
    expect(socket.state).toBe("open");
    expect(states).toEqual(["connecting", "open"]);
    socket.disconnect();
    expect(states.at(-1)).toBe("closed");
    expect(FakeWebSocket.live()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("reconnect", () => {
  it("backs off with full jitter after a transient close and resumes from the last offset", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0.5);
    const tokens = ["t1", "t2", "t3"];
    const token = vi.fn(async () => tokens.shift() ?? "t-last");
    const { socket, got, states } = make({ token });
    const ws1 = await open(socket, welcome({ epoch: "e1", offset: 4 }));
    ws1.receive(message(5));
    ws1.receive(message(6));
    await flush();
    ws1.drop(1006);
    await flush();
    expect(socket.state).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(249); // attempt 0: 0.5 × 500 ms
    expect(FakeWebSocket.instances).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    const ws2 = FakeWebSocket.last;
    expect(ws2).not.toBe(ws1);
    ws2.drop(1006); // fails again before open: attempt 1 waits 0.5 × 1000 ms
    await vi.advanceTimersByTimeAsync(499);
    expect(FakeWebSocket.instances).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    const ws3 = FakeWebSocket.last;
    ws3.accept();
    expect(ws3.sent[0]).toEqual({
      type: "hello",
      token: "t3",
      client: "confide-web/0.1",
      resume: { offset: 6, epoch: "e1" },
    });
    expect(token).toHaveBeenCalledTimes(3);
    ws3.receive(welcome({ epoch: "e1", offset: 8, recovered: true }));
    ws3.receive(message(6)); // overlap: already delivered
    ws3.receive(message(7));
    ws3.receive(message(8));
    await flush();
    expect(got.map((m) => m.offset)).toEqual([5, 6, 7, 8]);
    expect(states).toEqual(["connecting", "open", "reconnecting", "open"]);
    socket.disconnect();
  });

  it.each([4400, 4401, 4403, 4404, 4410, 1009])("does not reconnect after %i", async (code) => {
    const { socket, states } = make();
    const closes: number[] = [];
    socket.on("close", (c) => closes.push(c.code));
    const ws = await open(socket);
    ws.drop(code, "no");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(socket.state).toBe("closed");
    expect(states.at(-1)).toBe("closed");
    expect(closes).toEqual([code]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("reconnects after 4401 only when the token function gives a new token", async () => {
    let current = "old";
    const { socket } = make({ token: () => current });
    const ws = await open(socket);
    current = "new";
    ws.drop(4401);
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeWebSocket.instances).toHaveLength(2);
    FakeWebSocket.last.accept();
    expect(FakeWebSocket.last.sent[0]?.token).toBe("new");
    FakeWebSocket.last.drop(4401); // same token again: final
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(socket.state).toBe("closed");
  });

  it("sends pings every 0.8 × heartbeat and reconnects after 2 × heartbeat of silence", async () => {
    const { socket } = make();
    const ws = await open(socket, welcome({ heartbeat_s: 10 }));
    await vi.advanceTimersByTimeAsync(8000);
    expect(ws.sentOf("ping")).toHaveLength(1);
    ws.receive({ type: "pong", id: 1 });
    await vi.advanceTimersByTimeAsync(19_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000); // 20 s since the pong
    expect(ws.closedWith).not.toBeNull();
    expect(socket.state).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(500);
    expect(FakeWebSocket.instances).toHaveLength(2);
    socket.disconnect();
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("resume and catch-up", () => {
  it("pages back through history when recovered is false, holding live messages", async () => {
    const { socket, got } = make();
    const ws1 = await open(socket, welcome({ offset: 2 }));
    ws1.drop(1011);
    await vi.advanceTimersByTimeAsync(500);
    const ws2 = FakeWebSocket.last;
    ws2.accept();
    ws2.receive(welcome({ offset: 6, recovered: false }));
    ws2.receive(message(7)); // live, while catching up
    await flush();
    expect(got).toEqual([]);
    expect(ws2.sentOf("history")).toEqual([{ type: "history", before: 7, limit: 200 }]);
    ws2.receive({ type: "history", messages: [message(5), message(6)], complete: false });
    await flush();
    expect(ws2.sentOf("history").at(-1)).toEqual({ type: "history", before: 5, limit: 200 });
    ws2.receive({ type: "history", messages: [message(2), message(3), message(4)], complete: false });
    await flush();
    expect(got.map((m) => m.offset)).toEqual([3, 4, 5, 6, 7]);
    expect(socket.cursor.last).toBe(7);
    socket.disconnect();
  });

  it("fills a gap in the live stream from history, each offset once", async () => {
    const { socket, got } = make();
    const ws = await open(socket, welcome({ offset: 0 }));
    ws.receive(message(1));
    ws.receive(message(4)); // 2 and 3 missing
    ws.receive(message(4));
    ws.receive(message(1));
    await flush();
    expect(ws.sentOf("history")).toEqual([{ type: "history", before: 4, limit: 200 }]);
    ws.receive({ type: "history", messages: [message(2), message(3)], complete: true });
    ws.receive(message(5));
    await flush();
    expect(got.map((m) => m.offset)).toEqual([1, 2, 3, 4, 5]);
    socket.disconnect();
  });

  it("starts over in a new epoch without replaying old positions", async () => {
    const { socket, got } = make();
    const ws1 = await open(socket, welcome({ offset: 10 }));
    ws1.drop(1001);
    await vi.advanceTimersByTimeAsync(500);
    const ws2 = FakeWebSocket.last;
    ws2.accept();
    ws2.receive(welcome({ epoch: "e2", offset: 3, recovered: false }));
    ws2.receive(message(4, { epoch: "e2" }));
    await flush();
    expect(ws2.sentOf("history")).toEqual([]);
    expect(got.map((m) => m.offset)).toEqual([4]);
    expect(socket.cursor.epoch).toBe("e2");
    socket.disconnect();
  });
});

describe("send queue", () => {
  it("keeps each message until its ack, resends it with the same id after reconnect", async () => {
    const { socket } = make();
    const ws1 = await open(socket);
    const first = socket.sendMessage({ text: "one" });
    await flush();
    const sent1 = ws1.sentOf("message");
    expect(sent1).toHaveLength(1);
    expect(sent1[0]).toMatchObject({ body: { text: "one" }, encrypted: false });
    const id = sent1[0]?.id as string;
    ws1.drop(1006);
    const second = socket.sendMessage({ text: "two" }); // queued while reconnecting
    await vi.advanceTimersByTimeAsync(500);
    const ws2 = FakeWebSocket.last;
    ws2.accept();
    ws2.receive(welcome());
    await flush();
    const resent = ws2.sentOf("message");
    expect(resent.map((f) => f.id)[0]).toBe(id);
    expect(resent.map((f) => (f.body as { text: string }).text)).toEqual(["one", "two"]);
    expect(socket.pending).toHaveLength(2);
    ws2.receive({ type: "ack", id, offset: 1 });
    ws2.receive({ type: "ack", id: resent[1]?.id, offset: 2 });
    await expect(first).resolves.toEqual({ id, offset: 1 });
    await expect(second).resolves.toEqual({ id: resent[1]?.id, offset: 2 });
    expect(socket.pending).toEqual([]);
    socket.disconnect();
  });

  it("rejects a refused message, retries a rate-limited one, and rejects what is left on disconnect", async () => {
    const { socket, errors } = make();
    const ws = await open(socket);
    const refused = socket.sendMessage({ text: "bad" }).catch((e: unknown) => e);
    const limited = socket.sendMessage({ text: "slow" });
    const orphan = socket.sendMessage({ text: "never acked" });
    await flush();
    const [a, b] = ws.sentOf("message");
    ws.receive({ type: "error", code: "invalid_message", message: "invalid field(s): body", id: a?.id });
    ws.receive({ type: "error", code: "rate_limited", message: "slow down", id: b?.id });
    await flush();
    expect(await refused).toMatchObject({ code: "invalid_message" });
    expect(errors.map((e) => e.code)).toEqual(["invalid_message"]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(ws.sentOf("message").filter((f) => f.id === b?.id)).toHaveLength(2);
    ws.receive({ type: "ack", id: b?.id, offset: 1 });
    await expect(limited).resolves.toMatchObject({ offset: 1 });
    socket.disconnect();
    await expect(orphan).rejects.toMatchObject({ code: "closed" });
    expect(vi.getTimerCount()).toBe(0);
  });

  it("drops status updates while not open", async () => {
    const { socket } = make();
    socket.sendStatus("typing");
    const ws = await open(socket);
    socket.sendStatus("typing");
    expect(ws.sentOf("status")).toEqual([{ type: "status", status: "typing" }]);
    socket.disconnect();
  });
});
