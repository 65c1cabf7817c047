"""Ciphertexts aggregated per second: numpy limb path versus OpenFHE, in one run.

Limb path: fhe.ops.aggregate (parse + validate + modular sum + write back).
OpenFHE path: DeserializeCiphertextString each input, EvalAdd chain, Serialize.
Both start from the same serialized ciphertexts and end with serialized bytes, which
are checked to be identical. Best of `--repeats` runs per batch size.

    python benchmarks/fhe_aggregate.py [--quick] [--threads 1]

Writes benchmarks/results/fhe_aggregate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fhe_aggregate.json"


def best_of(repeats: int, run: Callable[[], bytes]) -> tuple[float, bytes]:
    best, out = float("inf"), b""
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_ring(preset_name: str, batches: list[int], repeats: int) -> list[dict[str, Any]]:
    import numpy as np

    from fhe import client, native, ops
    from fhe.presets import get_preset

    preset = get_preset(preset_name)
    keys = client.generate_keys(preset)
    rng = np.random.default_rng(7)
    cts = [client.encrypt(keys, list(rng.uniform(-1, 1, 16))).data for _ in range(max(batches))]
    cc = native.context(keys.bundle.context)

    def openfhe_sum(batch: list[bytes]) -> bytes:
        total = native.ciphertext(batch[0])
        for data in batch[1:]:
            total = cc.EvalAdd(total, native.ciphertext(data))
        return native.serialize(total)

    rows = []
    for b in batches:
        batch = cts[:b]
        t_limb, limb = best_of(repeats, partial(ops.aggregate, batch, backend="numpy"))
        t_ofhe, ofhe = best_of(repeats, partial(openfhe_sum, batch))
        rows.append(
            {
                "preset": preset.name,
                "ring_dim": preset.ring_dim,
                "towers": preset.depth + 1,
                "ciphertext_bytes": len(cts[0]),
                "batch": b,
                "limb_seconds": t_limb,
                "openfhe_seconds": t_ofhe,
                "limb_ct_per_s": b / t_limb,
                "openfhe_ct_per_s": b / t_ofhe,
                "speedup": t_ofhe / t_limb,
                "byte_identical": limb == ofhe,
            }
        )
        print_row(rows[-1])
    return rows


def print_row(r: dict[str, Any]) -> None:
    print(
        f"{r['ring_dim']:>6} {r['batch']:>5} {r['limb_ct_per_s']:>12.1f} "
        f"{r['openfhe_ct_per_s']:>12.1f} {r['speedup']:>8.1f}x {r['byte_identical']!s:>9}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="batches 1..64, one repeat")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for OpenFHE")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before OpenFHE is imported
    sys.path.insert(0, str(ROOT))
    import numpy
    import openfhe

    batches = [1, 4, 16, 64] if args.quick else [1, 4, 16, 64, 256]
    repeats = 1 if args.quick else args.repeats
    head = ("N", "batch", "limb ct/s", "openfhe ct/s", "ratio", "identical")
    print("{:>6} {:>5} {:>12} {:>12} {:>9} {:>9}".format(*head))
    rows = []
    for preset in ("aggregation", "scoring"):
        rows += bench_ring(preset, batches, repeats)
    report = {
        "benchmark": "fhe_aggregate",
        "quick": args.quick,
        "repeats": repeats,
        "omp_num_threads": args.threads,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "openfhe": getattr(openfhe, "__version__", "unknown"),
        },
        "unix_time": time.time(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0 if all(r["byte_identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
