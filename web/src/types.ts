// The ConfideSocket's public types: options, states, events.
import type { SessionKey } from "./crypto.js";
import type { ConfideError } from "./errors.js";
import type * as P from "./protocol.gen.js";

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";
export type UserStatus = P.StatusUpdate["status"];
/** A chat message as delivered: `body` is decrypted when the socket is `encrypted`. */
export type ChatMessageFrame = P.MessageEvent & {
  /** False when the body is encrypted and could not be opened (an `error` event says why). */
  decrypted?: boolean;
};
export type TokenSource = string | (() => string | Promise<string>);

export interface ConfideSocketOptions {
  /** The server's WebSocket base, e.g. `ws://host:8000/ws`. */
  url: string;
  sessionId: string;
  onMessage?: (frame: ChatMessageFrame) => void;
  onStatusChange?: (state: ConnectionState) => void;
  onError?: (error: ConfideError) => void;
  /** Encrypt message bodies end to end with `sessionKey` (AES-256-GCM). */
  encrypted?: boolean;
  /** A JWT, or a function returning one, called again before each reconnect. */
  token?: TokenSource;
  sessionKey?: SessionKey;
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** Whether the socket reconnects (false: the close is final). */
  reconnecting: boolean;
}

export interface SocketEvents {
  message: ChatMessageFrame;
  status: ConnectionState;
  error: ConfideError;
  close: CloseInfo;
  /** Every other server frame: welcome, presence, status (typing), ended, insight, ... */
  frame: P.ServerFrame;
}
export type Listener<K extends keyof SocketEvents> = (event: SocketEvents[K]) => void;
