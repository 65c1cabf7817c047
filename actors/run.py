"""`make run`: a local Ray, the Serve app on CONFIDE_HOST:CONFIDE_PORT, SQLite on disk.

Runs in the foreground; Ctrl-C stops Serve and the local Ray with every process it
started (the detached host actors too). Data stays under CONFIDE_DATA_DIR.
"""

from __future__ import annotations

import os
import signal
import threading


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from confide.config import Settings
    from serve_app import build_app

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret_note = (
        "CONFIDE_JWT_SECRET" if settings.jwt_secret
        else f"the dev secret in {settings.data_dir / 'dev-jwt-secret'}"
    )
    settings.signing_secret()  # create the dev secret before the replicas read it
    ray.init(include_dashboard=False, namespace=settings.ray_namespace,
             runtime_env={"env_vars": {"CONFIDE_DATA_DIR": str(settings.data_dir.resolve())}})
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        http: dict[str, object] = {"host": settings.host, "port": settings.port}
        if settings.tls_cert and settings.tls_key:
            http |= {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
        serve.start(http_options=http)
        serve.run(build_app(settings), name="confide", route_prefix="/")
        scheme = "https" if settings.tls_cert else "http"
        ws = "wss" if settings.tls_cert else "ws"
        print(
            f"\nConfide is up: {scheme}://{settings.host}:{settings.port}/healthz\n"
            f"  chat:          {ws}://{settings.host}:{settings.port}/ws/chat/<session>\n"
            f"  notifications: {ws}://{settings.host}:{settings.port}/ws/notifications\n"
            f"  analytics:     {ws}://{settings.host}:{settings.port}/ws/analytics\n"
            f"  store:         {settings.store_url()}\n"
            f"Tokens are signed with {secret_note}. Mint one with:\n"
            f"  .venv/bin/confide token --sub alice --sessions s1\n"
            f"then: .venv/bin/confide chat {ws}://{settings.host}:{settings.port}/ws/chat/s1"
            " --token <token>\nCtrl-C stops everything.\n",
            flush=True,
        )
        stop.wait()
    finally:
        # Ctrl-C reaches Ray's own processes too (same process group): no graceful Serve
        # drain is possible then. Everything acknowledged is already in the store.
        print("stopping Ray and every process it started...", flush=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
