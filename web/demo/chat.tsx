// One chat session through the useWebSocket hook: messages, presence and typing.
import React, { useEffect, useRef, useState } from "react";
import { useWebSocket, type Protocol } from "confide-client";

type Member = Protocol.Member;
const TYPING_SHOWN_MS = 4000;

export function Chat(props: { base: string; sessionId: string; token: string; sessionKey?: string }) {
  const { base, sessionId, token, sessionKey } = props;
  const { status, error, sendMessage, sendStatus, messages, socket } = useWebSocket({
    url: base,
    sessionId,
    token,
    encrypted: sessionKey !== undefined,
    sessionKey,
  });
  const [members, setMembers] = useState<Member[]>([]);
  const [typing, setTyping] = useState<Record<string, number>>({});
  const [text, setText] = useState("");
  const [me, setMe] = useState("");
  const lastTyping = useRef(0);
  const list = useRef<HTMLUListElement>(null);

  useEffect(() => {
    if (socket === null) return;
    return socket.on("frame", (f) => {
      if (f.type === "welcome") {
        const w = f as Protocol.ChatWelcome;
        setMembers(w.members);
        setMe(w.user);
      } else if (f.type === "presence") {
        setMembers(f.members);
      } else if (f.type === "status") {
        setMembers((ms) => ms.map((m) => (m.user === f.user ? { ...m, status: f.status } : m)));
        setTyping((t) => ({ ...t, [f.user]: f.status === "typing" ? Date.now() : 0 }));
      }
    });
  }, [socket]);

  useEffect(() => {
    const timer = setInterval(() => setTyping((t) => ({ ...t })), 1000);
    return () => clearInterval(timer);
  }, []);
  useEffect(() => {
    list.current?.scrollTo(0, list.current.scrollHeight);
  }, [messages.length]);

  const onInput = (value: string) => {
    setText(value);
    if (Date.now() - lastTyping.current > 2000) {
      lastTyping.current = Date.now();
      sendStatus("typing");
    }
  };
  const send = () => {
    if (!text.trim()) return;
    void sendMessage({ text }).catch(() => undefined);
    setText("");
    lastTyping.current = 0;
    sendStatus("online");
  };
  const typers = Object.entries(typing)
    .filter(([u, at]) => u !== me && Date.now() - at < TYPING_SHOWN_MS)
    .map(([u]) => u);

  return (
    <section>
      <h2>
        Session {sessionId} <span className={`badge ${status}`} data-testid="status">{status}</span>
        {sessionKey !== undefined && <span className="note"> · end-to-end encrypted</span>}
      </h2>
      <ul className="members" data-testid="members">
        {members.map((m) => (
          <li key={m.user}>● {m.user} <span className="note">{m.role} · {m.status}</span></li>
        ))}
      </ul>
      <ul className="messages" data-testid="messages" ref={list}>
        {messages.map((m) => (
          <li key={m.offset} data-testid="message" data-offset={m.offset}>
            <span className="meta">#{m.offset} {new Date(m.ts * 1000).toLocaleTimeString()}</span>
            <b>{m.sender}</b>:{" "}
            <span className="text">{m.decrypted === false ? "🔒 (cannot decrypt)" : String(m.body.text ?? "")}</span>
          </li>
        ))}
      </ul>
      <div className="typing" data-testid="typing">{typers.length ? `${typers.join(", ")} typing…` : ""}</div>
      <div className="row">
        <input data-testid="compose" value={text} placeholder="Message"
          onChange={(e) => onInput(e.target.value)} onKeyDown={(e) => e.key === "Enter" && send()} />
        <button data-testid="send" style={{ marginTop: 0 }} onClick={send}>Send</button>
      </div>
      <div className="error" data-testid="error">{error ? `${error.code}: ${error.message}` : ""}</div>
    </section>
  );
}
