import { readFileSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { fromBase64, generateSessionKey, importSessionKey, openBody, sealBody } from "../src/crypto.js";
import { ConfideSocket, type ChatMessageFrame } from "../src/socket.js";
import type { ConfideError } from "../src/errors.js";
import { FakeWebSocket, message, welcome } from "./fake-ws.js";

// Written by Python's confide/client/sealed.py (tests/unit/client/test_sealed.py checks it too).
const vector = JSON.parse(
  readFileSync(new URL("./vectors/sealed-body.json", import.meta.url), "utf8"),
) as { key: string; session_id: string; iv: string; body: Record<string, unknown>; sealed: Record<string, string> };

describe("sealed bodies (AES-256-GCM)", () => {
  it("seal and open exactly like the Python SDK", async () => {
    const key = await importSessionKey(vector.key);
    expect(await sealBody(key, vector.session_id, vector.body, fromBase64(vector.iv))).toEqual(
      vector.sealed,
    );
    expect(await openBody(key, vector.session_id, vector.sealed)).toEqual(vector.body);
  });

  it("refuses another session, another key, an altered ciphertext", async () => {
    const key = await importSessionKey(vector.key);
    const other = await importSessionKey(generateSessionKey());
    await expect(openBody(key, "other", vector.sealed)).rejects.toMatchObject({ code: "decrypt_failed" });
    await expect(openBody(other, vector.session_id, vector.sealed)).rejects.toMatchObject({
      code: "decrypt_failed",
    });
    const altered = { ...vector.sealed, ciphertext: vector.sealed.ciphertext!.replace(/^../, "AA") };
    await expect(openBody(key, vector.session_id, altered)).rejects.toMatchObject({ code: "decrypt_failed" });
    await expect(importSessionKey("c2hvcnQ=")).rejects.toMatchObject({ code: "no_session_key" });
  });
});

describe("encrypted sockets", () => {
  beforeEach(() => {
    vi.stubGlobal("WebSocket", FakeWebSocket);
    FakeWebSocket.reset();
  });
  afterEach(() => vi.unstubAllGlobals());

  async function member(sessionKey?: string) {
    const got: ChatMessageFrame[] = [];
    const errors: ConfideError[] = [];
    const socket = new ConfideSocket({
      url: "ws://h/ws",
      sessionId: "s1",
      token: "t",
      encrypted: true,
      sessionKey,
      onMessage: (m) => got.push(m),
      onError: (e) => errors.push(e),
    });
    socket.connect();
    await vi.waitFor(() => expect(FakeWebSocket.instances.length).toBeGreaterThan(0));
    const ws = FakeWebSocket.last;
    ws.accept();
    ws.receive(welcome());
    await vi.waitFor(() => expect(socket.state).toBe("open"));
    return { socket, ws, got, errors };
  }

  it("sends only ciphertext; members with the key read it, others get an error event", async () => {
    const shared = generateSessionKey();
    const alice = await member(shared);
    const sent = alice.socket.sendMessage({ text: "my secret" });
    await vi.waitFor(() => expect(alice.ws.sentOf("message")).toHaveLength(1));
    const frame = alice.ws.sentOf("message")[0]!;
    expect(frame.encrypted).toBe(true);
    expect(Object.keys(frame.body as object).sort()).toEqual(["alg", "ciphertext", "key_id"]);
    expect(JSON.stringify(frame)).not.toContain("secret");
    alice.ws.receive({ type: "ack", id: frame.id, offset: 1 });
    await expect(sent).resolves.toEqual({ id: frame.id, offset: 1 });

    const event = message(1, { id: frame.id, sender: "alice", body: frame.body, encrypted: true });
    const bob = await member(shared);
    const eve = await member(generateSessionKey());
    const mallory = await member(undefined);
    for (const m of [bob, eve, mallory]) m.ws.receive(event);
    for (const m of [bob, eve, mallory]) m.ws.receive(message(2, { body: { text: "plain" } }));
    await vi.waitFor(() => expect(mallory.got).toHaveLength(2));
    await vi.waitFor(() => expect(eve.got).toHaveLength(2));
    await vi.waitFor(() => expect(bob.got).toHaveLength(2));
    expect(bob.got[0]).toMatchObject({ body: { text: "my secret" }, decrypted: true });
    expect(bob.errors).toEqual([]);
    for (const m of [eve, mallory]) {
      expect(m.got.map((g) => g.offset)).toEqual([1, 2]);
      expect(m.got[0]).toMatchObject({ decrypted: false, body: frame.body });
      expect(m.errors.map((e) => [e.code, e.offset])).toEqual([["decrypt_failed", 1]]);
      expect(m.socket.state).toBe("open");
    }
    for (const m of [alice, bob, eve, mallory]) m.socket.disconnect();
  });

  it("refuses to send encrypted without a session key", async () => {
    const m = await member(undefined);
    await expect(m.socket.sendMessage({ text: "x" })).rejects.toMatchObject({ code: "no_session_key" });
    expect(m.ws.sentOf("message")).toEqual([]);
    expect(m.errors.map((e) => e.code)).toEqual(["no_session_key"]);
    m.socket.disconnect();
  });
});
