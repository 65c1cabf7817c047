/* Generated from docs/protocol.schema.json by scripts/gen-types.mjs: do not edit. */

export type ProtocolTypes = ConfideFrame | EncryptedBody | Features;
/**
 * Confide wire protocol, subprotocol confide.v1: every frame.
 */
export type ConfideFrame = ClientFrame | ServerFrame;
export type ClientFrame =
  | Hello
  | Ping
  | ChatMessage
  | StatusUpdate
  | HistoryRequest
  | End
  | NotificationAck
  | ListRequest
  | Subscribe
  | Unsubscribe
  | Submit;
export type ServerFrame =
  | Welcome
  | ChatWelcome
  | InboxWelcome
  | Pong
  | Ack
  | MessageEvent
  | StatusEvent
  | Presence
  | History
  | Ended
  | Error
  | Notification
  | Notifications
  | Subscribed
  | Unsubscribed
  | Metrics
  | Aggregate
  | Insight;

export interface Hello {
  type: "hello";
  token?: string | null;
  resume?: Resume | null;
  client?: string | null;
}
export interface Resume {
  offset: number;
  epoch: string;
}
export interface Ping {
  type: "ping";
  id?: string | number | null;
}
export interface ChatMessage {
  type: "message";
  id: string;
  body: {
    [k: string]: unknown | undefined;
  };
  encrypted?: boolean;
}
export interface StatusUpdate {
  type: "status";
  status: "online" | "typing" | "idle" | "away";
}
export interface HistoryRequest {
  type: "history";
  before?: number | null;
  limit?: number;
}
export interface End {
  type: "end";
}
export interface NotificationAck {
  type: "ack";
  id: string;
  state: "delivered" | "read";
}
export interface ListRequest {
  type: "list";
  state?: "unread" | "all";
  limit?: number;
  before?: string | null;
}
export interface Subscribe {
  type: "subscribe";
  stream: string;
  key_id?: string | null;
}
export interface Unsubscribe {
  type: "unsubscribe";
  stream: string;
  key_id?: string | null;
}
export interface Submit {
  type: "submit";
  id: string;
  stream: string;
  key_id: string;
  ciphertext: string;
}
export interface Welcome {
  type: "welcome";
  user: string;
  role: "client" | "therapist" | "admin" | "service";
  heartbeat_s: number;
  [k: string]: unknown | undefined;
}
/**
 * `welcome` on `/ws/chat/{session_id}`: the log's position and the members.
 */
export interface ChatWelcome {
  type: "welcome";
  user: string;
  role: "client" | "therapist" | "admin" | "service";
  heartbeat_s: number;
  session_id: string;
  epoch: string;
  offset: number;
  members: Member[];
  recovered: boolean;
  [k: string]: unknown | undefined;
}
export interface Member {
  user: string;
  role: "client" | "therapist" | "admin" | "service";
  status: "online" | "typing" | "idle" | "away";
}
/**
 * `welcome` on `/ws/notifications`: how many notifications wait.
 */
export interface InboxWelcome {
  type: "welcome";
  user: string;
  role: "client" | "therapist" | "admin" | "service";
  heartbeat_s: number;
  pending: number;
  unread: number;
  [k: string]: unknown | undefined;
}
export interface Pong {
  type: "pong";
  id?: string | number;
}
export interface Ack {
  type: "ack";
  id: string;
  offset?: number;
}
export interface MessageEvent {
  type: "message";
  session_id: string;
  offset: number;
  epoch: string;
  id: string;
  sender: string;
  ts: number;
  body: {
    [k: string]: unknown | undefined;
  };
  encrypted: boolean;
}
export interface StatusEvent {
  type: "status";
  user: string;
  status: "online" | "typing" | "idle" | "away";
  ts: number;
}
export interface Presence {
  type: "presence";
  event: "join" | "leave";
  user: string;
  members: Member[];
}
export interface History {
  type: "history";
  messages: MessageEvent[];
  complete: boolean;
}
export interface Ended {
  type: "ended";
  by: string;
}
export interface Error {
  type: "error";
  code: string;
  message: string;
  id?: string | number;
}
export interface Notification {
  type: "notification";
  id: string;
  kind: string;
  title: string;
  body: string;
  data: {
    [k: string]: unknown | undefined;
  };
  created_at: number;
  state?: string;
}
export interface Notifications {
  type: "notifications";
  items: Notification[];
}
export interface Subscribed {
  type: "subscribed";
  stream: string;
  key_id?: string;
}
export interface Unsubscribed {
  type: "unsubscribed";
  stream: string;
  key_id?: string;
}
export interface Metrics {
  type: "metrics";
  stream: string;
  ts: number;
  data: {
    [k: string]: unknown | undefined;
  };
}
export interface Aggregate {
  type: "aggregate";
  stream: string;
  key_id: string;
  count: number;
  sum: string;
  mean?: string;
  ts: number;
}
export interface Insight {
  type: "insight";
  for_offset: number;
  key_id: string;
  model: string;
  ciphertext: string;
}
export interface EncryptedBody {
  ciphertext: string;
  alg: string;
  key_id: string;
  [k: string]: unknown | undefined;
}
export interface Features {
  key_id: string;
  ciphertext: string;
}
