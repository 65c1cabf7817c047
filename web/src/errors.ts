// Errors the client reports through `onError` / the `error` event, and rejects with.

/**
 * `code` is a server error code (`invalid_message`, `rate_limited`, `forbidden`, ...), or one
 * of the client's own: `decrypt_failed` (an encrypted body this member cannot open),
 * `no_session_key` (`encrypted` without a `sessionKey`), `closed` (the socket closed for good
 * before the message was acked), `token` (the token function failed), `protocol` (a frame
 * that is not valid JSON).
 */
export class ConfideError extends Error {
  readonly code: string;
  /** The frame's id (a message id) when the error concerns one. */
  readonly id?: string | number;
  /** The message's offset, for `decrypt_failed`. */
  readonly offset?: number;
  /** The close code, for `closed`. */
  readonly closeCode?: number;

  constructor(
    code: string,
    message: string,
    extra: { id?: string | number; offset?: number; closeCode?: number } = {},
  ) {
    super(message);
    this.name = "ConfideError";
    this.code = code;
    if (extra.id !== undefined) this.id = extra.id;
    if (extra.offset !== undefined) this.offset = extra.offset;
    if (extra.closeCode !== undefined) this.closeCode = extra.closeCode;
  }
}
