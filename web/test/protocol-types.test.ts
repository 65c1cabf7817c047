// The committed src/protocol.gen.ts is what docs/protocol.schema.json (the server's models)
// gives; tests/unit/core/test_schema.py checks the schema against the models themselves.
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without types
import { generate, OUTPUT } from "../scripts/gen-types.mjs";
import type * as P from "../src/protocol.gen.js";

describe("generated protocol types", () => {
  it("match the committed schema", { timeout: 30_000 }, async () => {
    const committed = await readFile(OUTPUT as string, "utf8");
    expect(committed, "run: npm run gen:types").toBe(await (generate as () => Promise<string>)());
  });

  it("type the frames the socket relies on", () => {
    const w: P.ChatWelcome = {
      type: "welcome",
      user: "a",
      role: "client",
      heartbeat_s: 25,
      session_id: "s",
      epoch: "e",
      offset: 0,
      members: [{ user: "a", role: "client", status: "online" }],
      recovered: true,
    };
    const sealed: P.EncryptedBody = { ciphertext: "AA==", alg: "A256GCM", key_id: "k" };
    expect([w.type, sealed.alg]).toEqual(["welcome", "A256GCM"]);
  });
});
