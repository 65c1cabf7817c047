// @vitest-environment jsdom
import { act, renderHook } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useWebSocket } from "../src/react.js";
import { FakeWebSocket, message, welcome } from "./fake-ws.js";

beforeEach(() => {
  vi.useFakeTimers();
  vi.stubGlobal("WebSocket", FakeWebSocket);
  FakeWebSocket.reset();
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

const flush = () => act(() => vi.advanceTimersByTimeAsync(0));

describe("useWebSocket", () => {
  it("connects on mount, exposes status and messages, and leaks nothing on unmount", async () => {
    const onMessage = vi.fn();
    const onStatusChange = vi.fn();
    const { result, unmount } = renderHook(() =>
      useWebSocket({ url: "ws://h/ws", sessionId: "s1", token: "t", onMessage, onStatusChange }),
    );
    await flush();
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(result.current.status).toBe("connecting");
    const ws = FakeWebSocket.last;
    await act(async () => {
      ws.accept();
      ws.receive(welcome());
    });
    await flush();
    expect(result.current.isConnected).toBe(true);
    expect(result.current.status).toBe("open");

    let sent: Promise<{ id: string; offset: number }> | undefined;
    await act(async () => {
      sent = result.current.sendMessage({ text: "hi" });
    });
    await flush();
    const frame = ws.sentOf("message")[0]!;
    await act(async () => {
      ws.receive({ type: "ack", id: frame.id, offset: 1 });
      ws.receive(message(1, { id: frame.id, sender: "alice", body: { text: "hi" } }));
      ws.receive(message(1, { id: frame.id, sender: "alice", body: { text: "hi" } }));
    });
    await flush();
    await expect(sent).resolves.toEqual({ id: frame.id, offset: 1 });
    expect(result.current.messages.map((m) => m.offset)).toEqual([1]);
    expect(onMessage).toHaveBeenCalledTimes(1);

    await act(async () => ws.drop(4503));
    expect(result.current.status).toBe("reconnecting");
    expect(result.current.isConnected).toBe(false);
    expect(vi.getTimerCount()).toBe(1); // the backoff timer

    unmount();
    expect(FakeWebSocket.live()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1); // no reconnect after unmount
    expect(onStatusChange).toHaveBeenLastCalledWith("closed");
  });

  it("disconnect and connect from the hook, and a new socket when the session changes", async () => {
    const { result, rerender, unmount } = renderHook(
      ({ sessionId }) => useWebSocket({ url: "ws://h/ws", sessionId, token: () => "t" }),
      { initialProps: { sessionId: "s1" } },
    );
    await flush();
    const first = FakeWebSocket.last;
    await act(async () => {
      first.accept();
      first.receive(welcome());
    });
    await flush();
    act(() => result.current.disconnect());
    expect(result.current.status).toBe("closed");
    expect(FakeWebSocket.live()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
    act(() => result.current.connect());
    await flush();
    expect(FakeWebSocket.instances).toHaveLength(2);
    rerender({ sessionId: "s2" });
    await flush();
    expect(FakeWebSocket.instances).toHaveLength(3);
    expect(FakeWebSocket.last.url).toBe("ws://h/ws/chat/s2");
    expect(FakeWebSocket.live()).toEqual([FakeWebSocket.last]);
    unmount();
    expect(FakeWebSocket.live()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
