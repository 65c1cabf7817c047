// End-to-end encrypted chat bodies: AES-256-GCM with WebCrypto under a session key the
// application provides. The server stores and forwards `{"ciphertext","alg","key_id"}`
// without reading it. Same format as the Python SDK (confide/client/sealed.py):
//   alg        "A256GCM"
//   key_id     the first 16 hex digits of SHA-256(raw key)
//   ciphertext base64(iv[12] || AES-GCM(key, iv, utf8(JSON(body)), aad = utf8(session id)))
import type { EncryptedBody } from "./protocol.gen.js";
import { ConfideError } from "./errors.js";

export const ALG = "A256GCM";

/** A 32-byte key (raw bytes, or base64 / base64url of them), or a WebCrypto key with its id. */
export type SessionKey = string | Uint8Array | { key: CryptoKey; keyId: string };

export interface SealingKey {
  key: CryptoKey;
  keyId: string;
}

const subtle = (): SubtleCrypto => globalThis.crypto.subtle;

export function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

export function fromBase64(text: string): Uint8Array {
  const std = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = std + "=".repeat((4 - (std.length % 4)) % 4);
  const raw = atob(padded);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

export async function keyIdOf(raw: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await subtle().digest("SHA-256", raw as BufferSource));
  return [...digest.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function importSessionKey(source: SessionKey): Promise<SealingKey> {
  if (typeof source === "object" && !(source instanceof Uint8Array)) return source;
  const raw = typeof source === "string" ? fromBase64(source) : source;
  if (raw.length !== 32) throw new ConfideError("no_session_key", "sessionKey must be 32 bytes");
  const key = await subtle().importKey("raw", raw as BufferSource, "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
  return { key, keyId: await keyIdOf(raw) };
}

/** A fresh random session key, base64: for apps and tests that make one. */
export function generateSessionKey(): string {
  return toBase64(globalThis.crypto.getRandomValues(new Uint8Array(32)));
}

const encoder = new TextEncoder();

export async function sealBody(
  key: SealingKey,
  sessionId: string,
  body: Record<string, unknown>,
  iv: Uint8Array = globalThis.crypto.getRandomValues(new Uint8Array(12)),
): Promise<EncryptedBody> {
  const params = { name: "AES-GCM", iv: iv as BufferSource, additionalData: encoder.encode(sessionId) };
  const sealed = new Uint8Array(
    await subtle().encrypt(params, key.key, encoder.encode(JSON.stringify(body))),
  );
  const out = new Uint8Array(iv.length + sealed.length);
  out.set(iv);
  out.set(sealed, iv.length);
  return { ciphertext: toBase64(out), alg: ALG, key_id: key.keyId };
}

/** The body inside `sealed`; throws `ConfideError("decrypt_failed")` for any failure. */
export async function openBody(
  key: SealingKey | null,
  sessionId: string,
  sealed: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const fail = (why: string) => new ConfideError("decrypt_failed", why);
  if (sealed.alg !== ALG) throw fail(`unsupported alg`);
  if (key === null) throw fail("no session key for this encrypted message");
  if (sealed.key_id !== key.keyId) throw fail("message sealed under another key");
  if (typeof sealed.ciphertext !== "string") throw fail("no ciphertext");
  let bytes: Uint8Array;
  try {
    bytes = fromBase64(sealed.ciphertext);
  } catch {
    throw fail("ciphertext is not base64");
  }
  if (bytes.length < 12 + 16) throw fail("ciphertext too short");
  let plain: ArrayBuffer;
  try {
    const params = {
      name: "AES-GCM",
      iv: bytes.subarray(0, 12) as BufferSource,
      additionalData: encoder.encode(sessionId),
    };
    plain = await subtle().decrypt(params, key.key, bytes.subarray(12) as BufferSource);
  } catch {
    throw fail("authentication failed (wrong key or altered message)");
  }
  const body: unknown = JSON.parse(new TextDecoder().decode(plain));
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw fail("decrypted body is not an object");
  }
  return body as Record<string, unknown>;
}

/** The imported session key, imported again when its source changes (the hook's getter). */
export class Sealer {
  private imported: Promise<SealingKey | null> | null = null;
  private source: SessionKey | undefined;

  constructor(private readonly current: () => SessionKey | undefined) {}

  key(): Promise<SealingKey | null> {
    const source = this.current();
    if (this.imported === null || source !== this.source) {
      this.source = source;
      this.imported = source === undefined ? Promise.resolve(null) : importSessionKey(source);
    }
    return this.imported;
  }
}
