"""Settings: one pydantic model read once from `CONFIDE_*` environment variables."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from confide.tokens import DEV_SECRET_FILE


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONFIDE_", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./data")
    #: `sqlite:///path/to/file.db` (default: `<data_dir>/confide.db`) or `postgresql://...`.
    store: str = ""
    #: Number of host actors that hold the entities (sessions, inboxes, streams). One
    #: per node by default: on 2 cores a second host cost more in Ray calls than it gave
    #: (docs/operations.md); raise it with the cores and nodes.
    hosts: int = Field(default=1, ge=1)
    #: Ray namespace of the detached host actors: one per deployment of Confide.
    ray_namespace: str = "confide"

    jwt_secret: str = ""
    jwt_public_key: Path | None = None
    #: A JWKS file (RS256/ES256 keys chosen by the token's `kid`); wins over the PEM key.
    jwt_jwks: Path | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None

    heartbeat_s: float = Field(default=25.0, gt=0)
    hello_timeout_s: float = Field(default=10.0, gt=0)
    max_frame_bytes: int = 64 * 1024
    max_large_frame_bytes: int = 8 * 1024 * 1024
    rate_per_s: float = Field(default=20.0, gt=0)
    rate_burst: int = Field(default=40, ge=1)
    #: Seconds of sending while rate limited before the connection is closed with 4429.
    rate_abuse_s: float = 10.0
    #: Frames a connection's outbound queue holds before it is closed as a slow consumer.
    send_queue: int = Field(default=1024, ge=8)
    #: Bytes a connection's outbound queue may hold (frames not yet written); beyond: 4503.
    send_queue_bytes: int = Field(default=8 * 2**20, ge=64 * 1024)
    #: Bytes of messages one `history` reply (or one replay page) holds at most; at least
    #: one message is always sent, and `complete: false` says there is more.
    history_max_bytes: int = Field(default=1 * 2**20, ge=1024)
    #: Status frames of one user in one session fan out at most this often (latest wins).
    status_interval_s: float = Field(default=0.25, ge=0)
    #: WebSockets one gateway replica serves (`max_ongoing_requests`).
    connections_per_replica: int = Field(default=2000, ge=1000)
    gateway_replicas: int = Field(default=1, ge=1)

    #: Messages retained per chat session; older ones are deleted.
    retention_messages: int = Field(default=100_000, ge=1)
    #: Seconds an idle entity stays in memory on its host.
    entity_ttl_s: float = 600.0
    #: Events a host keeps for the gateways' long polls.
    event_buffer: int = 10_000
    poll_timeout_s: float = 30.0

    #: Serve application name (the FHE workers are found by it).
    app_name: str = "confide"
    fhe_backend: str = "auto"
    fhe_min_workers: int = Field(default=1, ge=1)
    fhe_max_workers: int = Field(default=4, ge=1)
    #: CPUs each FHE worker reserves (fractional is fine); OpenFHE threads per worker.
    fhe_worker_cpus: float = Field(default=1.0, gt=0)
    fhe_omp_threads: int = Field(default=1, ge=1)
    fhe_max_batch: int = Field(default=16, ge=1)
    fhe_batch_wait_s: float = Field(default=0.01, ge=0)
    #: Requests queued per caller beyond the replicas' capacity before shedding load.
    fhe_max_queued: int = Field(default=512, ge=1)
    fhe_upscale_delay_s: float = Field(default=5.0, ge=0)
    fhe_downscale_delay_s: float = Field(default=60.0, ge=0)
    #: A stream folds its pending contributions into its sum at least this often.
    fhe_flush_s: float = Field(default=0.2, gt=0)
    # --- fhe helper (issue 8/9) additions ---
    #: Security level an uploaded CKKS context must meet (fhe.security; HEStd_NotSet:
    #: tests only).
    fhe_min_security: Literal[
        "HEStd_128_classic", "HEStd_192_classic", "HEStd_256_classic", "HEStd_NotSet"
    ] = "HEStd_128_classic"
    #: Contributions a host holds waiting for a fold, in bytes (past it: `overloaded`).
    fhe_host_queue_bytes: int = Field(default=256 << 20, ge=1)
    #: Contributions one user may have awaiting their ack on a gateway replica, by count
    #: and by bytes (past either: `rate_limited`).
    fhe_user_inflight: int = Field(default=64, ge=1)
    fhe_user_inflight_bytes: int = Field(default=64 << 20, ge=1)
    #: Uploaded key bundles are validated in separate processes (fhe/validator.py): how
    #: many per FHE worker, each one's address-space limit, and how long one may take.
    fhe_validators: int = Field(default=1, ge=1)
    fhe_validator_memory_mb: int = Field(default=2048, ge=128)
    fhe_validator_timeout_s: float = Field(default=60.0, gt=0)
    #: A stream's fold of at least two shards of this many contributions is split into
    #: concurrent partial sums across the workers (a tree of partial sums).
    fhe_shard_size: int = Field(default=16, ge=1)
    # --- end fhe helper additions ---
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: A file holding the HS256 secret (a mounted Kubernetes Secret); used when
    #: `jwt_secret` is unset, before the dev secret.
    jwt_secret_file: Path | None = None
    #: GPUs each FHE worker reserves (0.5: two workers share one). Placement is decided
    #: here (or in cluster/serve.yaml), never by looking for a GPU at import time.
    fhe_worker_gpus: float = Field(default=0.0, ge=0)
    #: Custom Ray resources each FHE worker asks for, e.g. `{"fhe": 1}` (JSON in the env).
    fhe_worker_resources: dict[str, float] = Field(default_factory=dict)

    # -- wire limits (issue 9; docs/operations.md, "Limits and budgets")
    #: REST request bodies (notifications, session config): 413 `too_large` beyond.
    max_rest_body_bytes: int = Field(default=256 * 1024, ge=1024)
    #: Seconds of clock skew allowed on a token's `exp`, `nbf` and `iat` (PyJWT `leeway`).
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=600)
    #: Open WebSockets per user across the cluster; the next one is closed 4429.
    max_connections_per_user: int = Field(default=32, ge=1)
    #: Accepted WebSockets of one gateway replica still waiting for a valid `hello`;
    #: beyond, new ones are closed 4503 (each pending one is closed 4408 after
    #: `CONFIDE_HELLO_TIMEOUT_S`).
    max_pending_handshakes: int = Field(default=256, ge=1)
    #: `POST /api/fhe/keys` bodies (base64 key bundles): 413 `too_large` beyond.
    max_key_bundle_bytes: int = Field(default=64 * 2**20, ge=1024)

    # --- audit trail (issue 9) ---
    #: Days audit events are kept (HIPAA asks for six years); 0 keeps them for good.
    audit_retention_days: float = Field(default=2190, ge=0)
    #: Seconds a host gathers audit events before writing them in one transaction.
    audit_flush_s: float = Field(default=1.0, gt=0)

    def store_url(self) -> str:
        return self.store or f"sqlite:///{(self.data_dir / 'confide.db').resolve()}"

    def signing_secret(self) -> str:
        """The HS256 secret.

        When none is configured, a development secret is generated once and kept in
        `<data_dir>/dev-jwt-secret` (mode 0600), so the server and `confide token` agree
        (the CLI only reads that file; it never creates it).
        """
        if self.jwt_secret:
            return self.jwt_secret
        if self.jwt_secret_file is not None:
            return self.jwt_secret_file.read_text().strip()
        path = self.data_dir / DEV_SECRET_FILE
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
            try:
                os.link(tmp, path)  # atomic: the first writer wins, everyone reads its secret
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip()


#: What replaces a password in a store URL handed to actors.
REDACTED = "__from_env__"


def _redact_store(url: str) -> str:
    """`url` with its password (if any) replaced by `REDACTED`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:{REDACTED}@{parts.netloc.rsplit('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc))


def actor_config(settings: Settings) -> dict[str, Any]:
    """The settings as actor/replica arguments, without secrets.

    Arguments of Ray actors and Serve deployments are stored in the GCS and shown by
    Ray's state API and dashboard, so secrets never travel there: the JWT secret and a
    store password are read by each actor from its own environment (`CONFIDE_JWT_SECRET`,
    `CONFIDE_STORE`, set on every Ray node) or secret file (`CONFIDE_JWT_SECRET_FILE`).
    """
    config = settings.model_dump(mode="json", exclude={"jwt_secret"})
    config["store"] = _redact_store(settings.store)
    return config


def settings_from_actor_config(config: dict[str, Any]) -> Settings:
    """Rebuild `actor_config`'s settings in an actor, the secrets from its environment."""
    store = str(config.get("store", ""))
    if REDACTED in store:
        env = os.environ.get("CONFIDE_STORE", "")
        if _redact_store(env) != store:
            raise RuntimeError("CONFIDE_STORE (with its password) must be set on every Ray node")
        config = config | {"store": env}
    # jwt_secret is absent: pydantic-settings reads CONFIDE_JWT_SECRET from the environment
    return Settings(**config)
