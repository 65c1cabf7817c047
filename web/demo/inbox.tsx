// The user's notification inbox: delivered on arrival, read on click.
import React, { useEffect, useRef, useState } from "react";
import { PlainSocket, type Frame } from "./plain-socket.js";

interface Item { id: string; title: string; body: string; state: string; created_at: number }

export function Inbox({ base, token }: { base: string; token: string }) {
  const [items, setItems] = useState<Item[]>([]);
  const [state, setState] = useState("connecting");
  const socket = useRef<PlainSocket | null>(null);

  useEffect(() => {
    const upsert = (item: Item) =>
      setItems((list) => [item, ...list.filter((i) => i.id !== item.id)].sort((a, b) => b.created_at - a.created_at));
    const s = new PlainSocket(`${base}/notifications`, token, (f: Frame) => {
      if (f.type === "welcome") s.send({ type: "list", state: "all", limit: 50 });
      if (f.type === "notifications") {
        for (const n of f.items as Item[]) upsert({ ...n, state: n.state ?? "sent" });
      }
      if (f.type === "notification") {
        const item = f as unknown as Item;
        s.send({ type: "ack", id: item.id, state: "delivered" });
        upsert({ ...item, state: "delivered" });
      }
    }, setState);
    socket.current = s;
    return () => s.close();
  }, [base, token]);

  const markRead = (id: string) => {
    socket.current?.send({ type: "ack", id, state: "read" });
    setItems((list) => list.map((i) => (i.id === id ? { ...i, state: "read" } : i)));
  };
  const unread = items.filter((i) => i.state !== "read").length;
  return (
    <section>
      <h2>Inbox <span className={`badge ${state}`}>{state}</span> <span data-testid="unread">{unread}</span> unread</h2>
      <ul className="inbox" data-testid="inbox">
        {items.map((i) => (
          <li key={i.id} className={i.state === "read" ? "read" : "unread"}>
            <span><b>{i.title}</b> {i.body}</span>
            {i.state === "read" ? <span className="note">read</span>
              : <button className="small" onClick={() => markRead(i.id)}>mark read</button>}
          </li>
        ))}
        {items.length === 0 && <li className="note">no notifications</li>}
      </ul>
    </section>
  );
}
