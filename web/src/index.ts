// The browser SDK: `GET /static/confide-client.js` serves this module, bundled.
export { ConfideSocket, SUBPROTOCOL, CLIENT_NAME } from "./socket.js";
export type {
  ChatMessageFrame,
  CloseInfo,
  ConfideSocketOptions,
  ConnectionState,
  SocketEvents,
  TokenSource,
  UserStatus,
} from "./socket.js";
export { useWebSocket } from "./react.js";
export type { UseWebSocketResult } from "./react.js";
export { ConfideError } from "./errors.js";
export { backoffDelay, shouldReconnect, RECONNECT_CODES, FINAL_CODES } from "./backoff.js";
export { generateSessionKey, ALG as ENCRYPTION_ALG } from "./crypto.js";
export type { SessionKey } from "./crypto.js";
export type * as Protocol from "./protocol.gen.js";
