"""Ray's token authentication is on: a driver without the cluster's token is refused."""

from __future__ import annotations

import os
import subprocess
import sys

import ray

CONNECT = "import ray, sys; ray.init(address=sys.argv[1]); print('CONNECTED')"


def _driver(address: str, auth: dict[str, str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(auth)
    return subprocess.Popen([sys.executable, "-c", CONNECT, address], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_driver_without_the_token_is_refused(serve_port: int) -> None:
    assert os.environ["RAY_AUTH_MODE"] == "token"
    address = ray.get_runtime_context().gcs_address
    drivers = {
        "right token": _driver(address, {"RAY_AUTH_MODE": "token",
                                         "RAY_AUTH_TOKEN": os.environ["RAY_AUTH_TOKEN"]}),
        "wrong token": _driver(address, {"RAY_AUTH_MODE": "token",
                                         "RAY_AUTH_TOKEN": "f" * 64}),
        "no token": _driver(address, {"RAY_AUTH_MODE": "disabled"}),
    }
    results = {name: p.communicate(timeout=180) for name, p in drivers.items()}
    codes = {name: p.returncode for name, p in drivers.items()}
    assert codes["right token"] == 0 and "CONNECTED" in results["right token"][0]
    for name in ("wrong token", "no token"):
        out, err = results[name]
        assert codes[name] != 0 and "CONNECTED" not in out, name
        assert "token" in err.lower() and "ConnectionError" in err, name


def test_actors_run_with_token_mode(serve_port: int) -> None:
    """The Ray processes (and so every actor) run with token auth on."""

    @ray.remote(num_cpus=0)
    def auth_mode() -> str | None:
        return os.environ.get("RAY_AUTH_MODE")

    assert ray.get(auth_mode.remote(), timeout=60) == "token"
