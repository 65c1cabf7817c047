"""Key-bundle validation in separate processes: a crash or a memory blow-up costs only
the request that caused it (issue 9, isolated deserialization).

`ValidatorPool.validate(bundle, min_security)` sends the bundle's blobs to one of a few
long-lived child processes (`python -m fhe.validator MEMORY_MB`) and returns its
`KeyMeta`, or raises `MalformedKeyBundle`. Each child sets its own address-space limit
(RLIMIT_AS) before it loads OpenFHE, validates with `fhe.bundle.validate_bundle`, and
answers in JSON (never pickle: the parent trusts nothing a child says beyond a dict of
plain values). A child that dies, runs out of memory or takes longer than the timeout is
killed and replaced; its request is refused with 400, every other request goes on.

Wire (pipes): request = u32 header length, JSON header {"min_security", "fields":
[[name, length], ...]}, then the blobs back to back; answer = u32 length, JSON
{"meta": {...}} or {"refused": "message"}.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any

from fhe.errors import MalformedKeyBundle
from fhe.keys import KeyMeta, PublicBundle

_U32 = struct.Struct("<I")
#: Most bytes a child's answer may have (a KeyMeta is well under 64 KiB).
MAX_ANSWER = 1 << 20
CRASHED = "key bundle: could not be read (its validation failed hard; refused)"
TOO_BIG = "key bundle: too large to read within the validator's memory limit"
TOO_SLOW = "key bundle: took too long to read; refused"


class _Child:
    """One validator process."""

    def __init__(self, memory_mb: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fhe.validator", str(memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, close_fds=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def ask(self, blobs: dict[str, bytes], min_security: str, timeout: float) -> dict[str, Any]:
        """The child's answer; OSError/EOFError/TimeoutError when it failed."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        header = json.dumps({"min_security": min_security,
                             "fields": [[k, len(v)] for k, v in blobs.items()]}).encode()
        self.proc.stdin.write(_U32.pack(len(header)) + header)
        for data in blobs.values():
            self.proc.stdin.write(data)
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        (length,) = _U32.unpack(_read(self.proc.stdout, 4, deadline))
        if length > MAX_ANSWER:
            raise EOFError("answer too long")
        answer = json.loads(_read(self.proc.stdout, length, deadline))
        if not isinstance(answer, dict):
            raise EOFError("answer is not an object")
        return answer


def _read(pipe: IO[bytes], n: int, deadline: float) -> bytes:
    out = bytearray()
    fd = pipe.fileno()
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("the validator did not answer in time")
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise EOFError("the validator went away")
        out += chunk
    return bytes(out)


class ValidatorPool:
    """A few validator processes, started on first use, replaced when one fails."""

    def __init__(self, processes: int = 1, memory_mb: int = 4096, timeout_s: float = 60.0):
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self._idle: list[_Child] = []
        self._slots = threading.BoundedSemaphore(processes)
        self._lock = threading.Lock()
        self.crashes = 0

    def validate(self, bundle: PublicBundle, min_security: str) -> KeyMeta:
        """`fhe.bundle.validate_bundle` in a child process (blocking; call from a thread)."""
        blobs = bundle.blobs()
        with self._slots:
            answer = self._ask(blobs, min_security)
        if "meta" in answer and isinstance(answer["meta"], dict):
            meta = KeyMeta.from_dict(answer["meta"])
            if meta.key_id != bundle.key_id:
                raise MalformedKeyBundle(CRASHED)
            return meta
        raise MalformedKeyBundle(str(answer.get("refused", CRASHED))[:300])

    def _ask(self, blobs: dict[str, bytes], min_security: str) -> dict[str, Any]:
        """One child's answer. A reused child that fails is retried once on a fresh one
        (it may have died while idle); a fresh child that fails refuses the request."""
        with self._lock:
            child = self._idle.pop() if self._idle else None
        fresh = child is None
        while True:
            if child is None:
                child, fresh = _Child(self.memory_mb), True
            try:
                answer = child.ask(blobs, min_security, self.timeout_s)
            except (OSError, EOFError, TimeoutError, ValueError) as e:
                child.kill()
                child = None
                if not fresh and not isinstance(e, TimeoutError):
                    continue
                self.crashes += 1
                raise MalformedKeyBundle(TOO_SLOW if isinstance(e, TimeoutError)
                                         else CRASHED) from None
            with self._lock:
                self._idle.append(child)
            return answer

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.kill()


# ------------------------------------------------------------------ the child side


def _serve(memory_mb: int) -> None:  # pragma: no cover - runs in the child process
    import resource

    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from fhe import native
    from fhe.bundle import validate_bundle
    from fhe.errors import FheError

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        raw = stdin.read(4)
        if len(raw) < 4:
            return
        header = json.loads(stdin.read(_U32.unpack(raw)[0]))
        blobs = {str(name): stdin.read(int(n)) for name, n in header["fields"]}
        try:
            bundle = _bundle(blobs)
            answer: dict[str, Any] = {
                "meta": validate_bundle(bundle, min_security=str(header["min_security"]))
                .to_dict()}
        except FheError as e:
            answer = {"refused": str(e)}
        except MemoryError:
            answer = {"refused": TOO_BIG}
        except Exception:  # noqa: BLE001 - anything else: refused, the child goes on
            answer = {"refused": CRASHED}
        finally:
            native.forget_eval_keys()
        data = json.dumps(answer).encode()
        stdout.write(_U32.pack(len(data)) + data)
        stdout.flush()


def _bundle(blobs: dict[str, bytes]) -> PublicBundle:
    from fhe.keys import CryptoContextBlob, EvalMultKeyBlob, PublicKeyBlob, RotationKeysBlob

    rotation = blobs.get("rotation_keys")
    return PublicBundle(CryptoContextBlob(blobs["context"]), PublicKeyBlob(blobs["public_key"]),
                        EvalMultKeyBlob(blobs["eval_mult_key"]),
                        RotationKeysBlob(rotation) if rotation else None)


if __name__ == "__main__":  # pragma: no cover
    _serve(int(sys.argv[1]))
