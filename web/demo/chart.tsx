// Live chart of the `system` analytics stream (admins and therapists).
import React, { useEffect, useState } from "react";
import { PlainSocket, type Frame } from "./plain-socket.js";

interface Point { ts: number; messages: number; connections: number }
const KEEP = 60;

export function SystemChart({ base, token }: { base: string; token: string }) {
  const [points, setPoints] = useState<Point[]>([]);
  const [updates, setUpdates] = useState(0);
  const [state, setState] = useState("connecting");
  const [error, setError] = useState("");

  useEffect(() => {
    const socket = new PlainSocket(
      `${base}/analytics`,
      token,
      (f: Frame) => {
        if (f.type === "welcome") socket.send({ type: "subscribe", stream: "system" });
        if (f.type === "error") setError(`${String(f.code)}: ${String(f.message)}`);
        if (f.type !== "metrics" || f.stream !== "system") return;
        const data = f.data as Record<string, unknown>;
        const point = {
          ts: Number(f.ts),
          messages: Number(data.messages_per_s ?? 0),
          connections: Number(data.connections_total ?? 0),
        };
        setPoints((list) => [...list, point].slice(-KEEP));
        setUpdates((n) => n + 1);
      },
      setState,
    );
    return () => socket.close();
  }, [base, token]);

  const W = 320, H = 150;
  const top = Math.max(1, ...points.map((p) => Math.max(p.messages, p.connections)));
  const line = (key: "messages" | "connections") =>
    points
      .map((p, i) => `${((i / Math.max(points.length - 1, 1)) * W).toFixed(1)},${(H - 5 - (p[key] / top) * (H - 15)).toFixed(1)}`)
      .join(" ");
  const last = points.at(-1);
  return (
    <section>
      <h2>System analytics <span className={`badge ${state}`}>{state}</span></h2>
      <svg viewBox={`0 0 ${W} ${H}`} data-testid="chart" data-updates={updates}>
        <polyline fill="none" stroke="#2f6fdb" strokeWidth="2" points={line("messages")} />
        <polyline fill="none" stroke="#1d9a5b" strokeWidth="2" points={line("connections")} />
        <text x="4" y="12" fontSize="10" fill="#7a869a">max {top.toFixed(1)}</text>
      </svg>
      <div className="legend">
        <span style={{ color: "#2f6fdb" }}>messages/s {last ? last.messages.toFixed(1) : "–"}</span>
        <span style={{ color: "#1d9a5b" }}>connections {last ? last.connections : "–"}</span>
      </div>
      <div className="note" data-testid="chart-updates">{updates} updates</div>
      <div className="error">{error}</div>
    </section>
  );
}
