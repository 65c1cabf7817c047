// A small socket for the demo's inbox and analytics panels: hello, heartbeat, reconnect.
import { backoffDelay, shouldReconnect } from "confide-client";

export type Frame = { type: string; [k: string]: unknown };

export class PlainSocket {
  private ws: WebSocket | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private ping: ReturnType<typeof setInterval> | null = null;
  private attempt = 0;
  private stopped = false;

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly onFrame: (frame: Frame) => void,
    private readonly onState: (state: string) => void,
  ) {
    this.open();
  }

  send(frame: Frame): void {
    if (this.ws?.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  close(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.ping !== null) clearInterval(this.ping);
    this.ws?.close(1000);
    this.ws = null;
  }

  private open(): void {
    this.onState("connecting");
    const ws = new WebSocket(this.url, "confide.v1");
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "hello", token: this.token, client: "confide-demo" }));
    ws.onmessage = (e) => {
      const frame = JSON.parse(String(e.data)) as Frame;
      if (frame.type === "welcome") {
        this.attempt = 0;
        const every = 800 * Number(frame.heartbeat_s ?? 25);
        this.ping = setInterval(() => this.send({ type: "ping" }), every);
        this.onState("open");
      }
      this.onFrame(frame);
    };
    ws.onclose = (e) => {
      if (this.ping !== null) clearInterval(this.ping);
      if (this.stopped) return;
      if (!shouldReconnect(e.code)) {
        this.onState(`closed (${e.code})`);
        return;
      }
      this.onState("reconnecting");
      this.timer = setTimeout(() => this.open(), backoffDelay(this.attempt++));
    };
  }
}
