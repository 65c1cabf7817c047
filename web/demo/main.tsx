// The demo page (GET /): sign in with a token, then chat, inbox and system analytics.
import React, { useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { generateSessionKey } from "confide-client";
import { Chat } from "./chat.js";
import { SystemChart } from "./chart.js";
import { Inbox } from "./inbox.js";

const defaultBase = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

interface Joined { base: string; token: string; sessionId: string; sessionKey?: string }

function SignIn({ onJoin }: { onJoin: (j: Joined) => void }) {
  const [base, setBase] = useState(defaultBase);
  const [token, setToken] = useState("");
  const [sessionId, setSessionId] = useState("demo");
  const [devTokens, setDevTokens] = useState<boolean | null>(null);
  const [user, setUser] = useState("alice");
  const [role, setRole] = useState("therapist");
  const [encrypted, setEncrypted] = useState(false);
  const [sessionKey, setSessionKey] = useState("");
  const [error, setError] = useState("");

  useEffect(() => {
    fetch("/api/dev").then((r) => r.json()).then((d) => setDevTokens(Boolean(d.dev_tokens)))
      .catch(() => setDevTokens(false));
  }, []);

  const mint = async () => {
    setError("");
    const r = await fetch("/api/dev/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ sub: user, role, sessions: ["*"] }),
    });
    const d = await r.json();
    if (r.ok) setToken(d.token);
    else setError(d.error?.message ?? `HTTP ${r.status}`);
  };

  return (
    <section>
      <h2>Sign in</h2>
      <label>WebSocket base</label>
      <input value={base} onChange={(e) => setBase(e.target.value)} />
      <label>Token (JWT)</label>
      <textarea className="secret" data-testid="token" value={token} onChange={(e) => setToken(e.target.value.trim())} />
      {devTokens ? (
        <div>
          <label>Development token: user and role</label>
          <div className="row">
            <input data-testid="dev-user" value={user} onChange={(e) => setUser(e.target.value)} />
            <select value={role} onChange={(e) => setRole(e.target.value)} style={{ width: 110 }}>
              <option>client</option><option>therapist</option><option>admin</option>
            </select>
          </div>
          <button data-testid="mint" onClick={() => void mint()}>Mint dev token</button>
        </div>
      ) : (
        <p className="note" data-testid="no-dev-tokens">
          {devTokens === null ? "…" : "Development tokens are off (the server has a configured key): paste a token."}
        </p>
      )}
      <label>Session</label>
      <input data-testid="session" value={sessionId} onChange={(e) => setSessionId(e.target.value)} />
      <label>
        <input type="checkbox" data-testid="encrypted" style={{ width: "auto" }} checked={encrypted}
          onChange={(e) => setEncrypted(e.target.checked)} /> end-to-end encrypted
      </label>
      {encrypted && (
        <div className="row">
          <input data-testid="session-key" placeholder="session key (base64, 32 bytes)" value={sessionKey}
            onChange={(e) => setSessionKey(e.target.value.trim())} />
          <button className="small" onClick={() => setSessionKey(generateSessionKey())}>new</button>
        </div>
      )}
      <button data-testid="join" disabled={!token || !sessionId}
        onClick={() => onJoin({ base, token, sessionId, ...(encrypted ? { sessionKey } : {}) })}>
        Join
      </button>
      <div className="error">{error}</div>
    </section>
  );
}

function App() {
  const [joined, setJoined] = useState<Joined | null>(null);
  return (
    <>
      <header><h1>Confide</h1><span>real-time, end-to-end encrypted: demo</span></header>
      <main>
        <div>
          <SignIn onJoin={setJoined} />
          {joined && <button onClick={() => setJoined(null)}>Leave</button>}
        </div>
        {joined ? (
          <Chat key={`${joined.sessionId}:${joined.token}`} {...joined} />
        ) : (
          <section><h2>Chat</h2><p className="note">Sign in and join a session.</p></section>
        )}
        <div>
          {joined && <SystemChart base={joined.base} token={joined.token} />}
          {joined && <Inbox base={joined.base} token={joined.token} />}
        </div>
      </main>
    </>
  );
}

createRoot(document.getElementById("root") as HTMLElement).render(<App />);
