"""GPU check and benchmark: CuPy kernels against numpy, bit for bit, and their speed-up.

Self-contained for a GPU machine with numpy and CuPy but no OpenFHE and no network:
inputs come from benchmarks/prepare_gpu_inputs.py (a .npz of limbs, moduli, one serialized
ciphertext per ring and sha256 digests of OpenFHE's results). It checks
  - every backend's fhe.ops.aggregate against OpenFHE's EvalAdd chain (digest),
  - every backend's fhe.ops.multiply_plain against the numpy result made with OpenFHE at
    hand (digest), and every kernel (add, sub, neg, mul, mul_int, sum_batch) against numpy,
then times each kernel per batch size (device-resident data; numpy times above an element
budget are extrapolated linearly and marked so) and the end-to-end aggregate (parse,
transfer, sum, write back). Without CuPy or a CUDA device it says so and checks and times
the numpy paths only. Finishes in well under 5 minutes.

    python benchmarks/fhe_gpu.py [--quick] [--inputs PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhe import codec, ops  # noqa: E402
from fhe.encoding import plaintext_limbs  # noqa: E402
from fhe.kernels import Kernels, available_backends, get_backend  # noqa: E402
from fhe.kernels.base import U64  # noqa: E402

INPUTS = ROOT / "benchmarks" / "results" / "fhe_gpu_inputs.npz"
RESULTS = ROOT / "benchmarks" / "results" / "fhe_gpu.json"
NUMPY_ELEMENT_BUDGET = 1 << 22


def load(path: Path) -> dict[str, dict[str, Any]]:
    rings: dict[str, dict[str, Any]] = {}
    with np.load(path) as data:
        for key in data.files:
            ring, field = key.split("/", 1)
            value = data[key]
            rings.setdefault(ring, {})[field] = value.item() if value.ndim == 0 else value
    return rings


def ring_ciphertexts(ring: dict[str, Any]) -> list[bytes]:
    """The serialized ciphertexts: the template with each one's limbs written in."""
    template = codec.parse_ciphertext(ring["template"].tobytes())
    return [codec.write_ciphertext(template, limbs) for limbs in ring["limbs"]]


def sync(k: Kernels) -> None:
    if k.name == "cupy":
        import cupy

        cupy.cuda.Stream.null.synchronize()


def best_time(k: Kernels, run: Callable[[], object], repeats: int) -> float:
    run()
    sync(k)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync(k)
        best = min(best, time.perf_counter() - start)
    return best


def check_ring(name: str, ring: dict[str, Any], backends: list[Kernels]) -> list[dict[str, Any]]:
    cts = ring_ciphertexts(ring)
    limbs, q = ring["limbs"], ring["moduli"]
    view = codec.parse_ciphertext(cts[0])
    plain = plaintext_limbs(
        tuple(float(w) for w in ring["weights"]),
        view.ring_dim,
        view.slots,
        view.scaling_factor,
        view.moduli,
    )
    ref = get_backend("numpy")
    expected = {
        "add": ref.add(limbs[0], limbs[1], q),
        "sub": ref.sub(limbs[0], limbs[1], q),
        "neg": ref.neg(limbs[0], q),
        "mul": ref.mul(limbs, plain, q),
        "mul_int": ref.mul_int(limbs, -12345678901, q),
        "sum_batch": ref.sum_batch(limbs, q),
    }
    results = []
    for k in backends:
        dl, dp = k.to_device(limbs), k.to_device(plain)
        got = {
            "add": k.add(dl[0], dl[1], q),
            "sub": k.sub(dl[0], dl[1], q),
            "neg": k.neg(dl[0], q),
            "mul": k.mul(dl, dp, q),
            "mul_int": k.mul_int(dl, -12345678901, q),
            "sum_batch": k.sum_batch(dl, q),
        }
        for op, value in got.items():
            same = np.array_equal(k.to_host(value), expected[op])
            results.append({"ring": name, "backend": k.name, "check": op, "ok": same})
        agg = hashlib.sha256(ops.aggregate(cts, backend=k)).hexdigest()
        prod = ops.multiply_plain(cts[0], list(ring["weights"]), backend=k)
        results.append(
            {
                "ring": name,
                "backend": k.name,
                "check": "aggregate == OpenFHE EvalAdd",
                "ok": agg == ring["sum_sha256"],
            }
        )
        first, second = cts, cts[: max(1, len(cts) // 2)]
        batched = ops.aggregate_many([first, second], backend=k)
        results.append(
            {
                "ring": name,
                "backend": k.name,
                "check": "aggregate_many == numpy",
                "ok": batched == [ops.aggregate(first, backend=ref),
                                  ops.aggregate(second, backend=ref)],
            }
        )
        results.append(
            {
                "ring": name,
                "backend": k.name,
                "check": "multiply_plain == reference",
                "ok": hashlib.sha256(prod).hexdigest() == ring["product_sha256"],
            }
        )
    return results


def tiled(limbs: U64, batch: int) -> U64:
    reps = -(-batch // limbs.shape[0])
    return np.ascontiguousarray(np.concatenate([limbs] * reps)[:batch])


def time_ring(
    name: str, ring: dict[str, Any], backends: list[Kernels], batches: list[int], repeats: int
) -> list[dict[str, Any]]:
    limbs, q = ring["limbs"], ring["moduli"]
    towers, n = limbs.shape[2], limbs.shape[3]
    plain = np.ascontiguousarray(limbs[0, 0])  # any reduced (towers, N) array times the same
    cts = ring_ciphertexts(ring)
    rows = []
    for b in batches:
        host = tiled(limbs, b)
        batch_cts = [cts[i % len(cts)] for i in range(b)]
        elements = host.size
        for k in backends:
            measure = k.name != "numpy" or elements <= NUMPY_ELEMENT_BUDGET
            dev, dp = k.to_device(host), k.to_device(plain)
            kernels: dict[str, Callable[[], object]] = {
                "sum_batch": partial(k.sum_batch, dev, q),
                "mul": partial(k.mul, dev, dp, q),
                "add": partial(k.add, dev, dev, q),
                "aggregate_e2e": partial(ops.aggregate, batch_cts, backend=k),
            }
            for op, run in kernels.items():
                row = {
                    "ring": name,
                    "ring_dim": n,
                    "towers": towers,
                    "batch": b,
                    "backend": k.name,
                    "op": op,
                }
                if measure or op == "aggregate_e2e":
                    row.update(seconds=best_time(k, run, repeats), extrapolated=False)
                else:
                    row.update(seconds=None, extrapolated=True)
                rows.append(row)
            del dev, dp
    fill_extrapolated(rows)
    return rows


def fill_extrapolated(rows: list[dict[str, Any]]) -> None:
    """Numpy is linear in the batch: scale its largest measured time."""
    for row in rows:
        if row["seconds"] is None:
            measured = [
                r
                for r in rows
                if r["backend"] == row["backend"]
                and r["op"] == row["op"]
                and r["ring"] == row["ring"]
                and not r["extrapolated"]
            ]
            base = max(measured, key=lambda r: r["batch"])
            row["seconds"] = base["seconds"] * row["batch"] / base["batch"]


def speedups(rows: list[dict[str, Any]]) -> None:
    by_key = {(r["ring"], r["batch"], r["op"], r["backend"]): r for r in rows}
    for r in rows:
        base = by_key[(r["ring"], r["batch"], r["op"], "numpy")]
        r["speedup_vs_numpy"] = base["seconds"] / r["seconds"]
        r["ct_per_s"] = r["batch"] / r["seconds"]


def device_name() -> str:
    if "cupy" not in available_backends():
        return "none"
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="batches 1, 16, 64; 2 repeats")
    parser.add_argument("--inputs", type=Path, default=INPUTS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    names = available_backends()
    if "cupy" not in names:
        print("no CUDA device (CuPy missing or no GPU): checking and timing numpy paths only")
    backends = [get_backend(name) for name in names]
    rings = load(args.inputs)
    batches = [1, 16, 64] if args.quick else [1, 4, 16, 64, 256]
    repeats = 2 if args.quick else 5

    checks = [c for name, ring in rings.items() for c in check_ring(name, ring, backends)]
    for c in checks:
        verdict = "ok" if c["ok"] else "FAIL"
        print(f"check {c['ring']:<12} {c['backend']:<6} {c['check']:<30} {verdict}")
    rows = [
        r for name, ring in rings.items() for r in time_ring(name, ring, backends, batches, repeats)
    ]
    speedups(rows)
    head = ("ring", "batch", "op", "backend", "ms", "ct/s", "x numpy")
    print("\n{:>6} {:>5} {:<14} {:<7} {:>10} {:>10} {:>8}".format(*head))
    for r in rows:
        mark = "*" if r["extrapolated"] else " "
        print(
            f"{r['ring_dim']:>6} {r['batch']:>5} {r['op']:<14} {r['backend']:<7} "
            f"{r['seconds'] * 1e3:>9.2f}{mark} {r['ct_per_s']:>10.1f} "
            f"{r['speedup_vs_numpy']:>8.1f}"
        )
    print("* numpy time extrapolated linearly from a smaller batch")
    report = {
        "benchmark": "fhe_gpu",
        "device": device_name(),
        "backends": names,
        "machine": {"python": platform.python_version(), "numpy": np.__version__},
        "quick": args.quick,
        "checks": checks,
        "rows": rows,
        "wall_seconds": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} in {report['wall_seconds']:.1f} s")
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
