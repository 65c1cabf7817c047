// useWebSocket: the React hook over ConfideSocket, with the seed's options.
import { useCallback, useEffect, useRef, useState } from "react";
import type { ConfideError } from "./errors.js";
import {
  ConfideSocket,
  type ChatMessageFrame,
  type ConfideSocketOptions,
  type ConnectionState,
  type UserStatus,
} from "./socket.js";

export interface UseWebSocketResult {
  isConnected: boolean;
  status: ConnectionState;
  error: ConfideError | null;
  sendMessage: (body: Record<string, unknown>) => Promise<{ id: string; offset: number }>;
  sendStatus: (status: UserStatus) => void;
  connect: () => void;
  disconnect: () => void;
  /** Every message delivered since mount, in offset order, each once. */
  messages: ChatMessageFrame[];
  /** The socket itself (for `on("frame", ...)`, `requestHistory`), null before mount. */
  socket: ConfideSocket | null;
}

/**
 * One ConfideSocket per (url, sessionId, encrypted): it connects on mount and is closed,
 * with its timers, on unmount or when those change. Callbacks and `token` are read fresh on
 * every call, so passing new functions on each render does not reconnect.
 */
export function useWebSocket(options: ConfideSocketOptions): UseWebSocketResult {
  const latest = useRef(options);
  latest.current = options;
  const [socket, setSocket] = useState<ConfideSocket | null>(null);
  const [status, setStatus] = useState<ConnectionState>("closed");
  const [error, setError] = useState<ConfideError | null>(null);
  const [messages, setMessages] = useState<ChatMessageFrame[]>([]);
  const { url, sessionId, encrypted } = options;

  useEffect(() => {
    const s = new ConfideSocket({
      url,
      sessionId,
      encrypted: encrypted ?? false,
      get sessionKey() {
        return latest.current.sessionKey;
      },
      token: () => {
        const t = latest.current.token;
        return typeof t === "function" ? t() : (t ?? "");
      },
      onMessage: (frame) => {
        setMessages((list) => [...list, frame]);
        latest.current.onMessage?.(frame);
      },
      onStatusChange: (state) => {
        setStatus(state);
        if (state === "open") setError(null);
        latest.current.onStatusChange?.(state);
      },
      onError: (e) => {
        setError(e);
        latest.current.onError?.(e);
      },
    });
    setSocket(s);
    setMessages([]);
    s.connect();
    return () => {
      s.disconnect();
      setSocket((current) => (current === s ? null : current));
    };
  }, [url, sessionId, encrypted]);

  const sendMessage = useCallback(
    (body: Record<string, unknown>) =>
      socket === null
        ? Promise.reject(new Error("not mounted"))
        : socket.sendMessage(body),
    [socket],
  );
  const sendStatus = useCallback((s: UserStatus) => socket?.sendStatus(s), [socket]);
  const connect = useCallback(() => socket?.connect(), [socket]);
  const disconnect = useCallback(() => socket?.disconnect(), [socket]);

  return {
    isConnected: status === "open",
    status,
    error,
    sendMessage,
    sendStatus,
    connect,
    disconnect,
    messages,
    socket,
  };
}
