"""Encrypted scores per second: the limb ct x pt path (plus OpenFHE Rescale and rotations)
against OpenFHE's own EvalMult path, for ciphertexts made with a live key and with a
deserialized key (the SDK's usual path: inline ring parameters in each ciphertext).
Also the limb aggregate for both kinds of ciphertext. Same inputs, same run.

    python benchmarks/fhe_scoring.py [--quick] [--preset scoring|test]

Writes benchmarks/results/fhe_scoring.json. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "fhe_scoring.json"


def best_of(repeats: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import openfhe

    from fhe import client, evaluator, native, ops
    from fhe.bundle import validate_bundle
    from fhe.presets import get_preset
    from fhe.security import NOT_SET

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--preset", default="scoring")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    repeats, count = (2, 4) if args.quick else (5, 16)
    preset = get_preset(args.preset)
    started = time.perf_counter()

    cc = native.new_context(preset)
    pair = cc.KeyGen()  # kept live: its ciphertexts carry back-references only
    keys = client.keys_from_context(cc, preset.rotation_steps, name=preset.name, pair=pair)
    meta = validate_bundle(keys.bundle, min_security=NOT_SET)
    rng = np.random.default_rng(5)
    n = min(preset.slots, 256)
    weights = list(rng.uniform(-1, 1, n))
    kinds: dict[str, list[bytes]] = {
        "deserialized key": [client.encrypt(keys, list(rng.uniform(-1, 1, n))).data
                             for _ in range(count)],
    }
    kinds["live key"] = [
        native.serialize(cc.Encrypt(pair.publicKey, cc.MakeCKKSPackedPlaintext(
            list(rng.uniform(-1, 1, n))))) for _ in range(count)]
    del openfhe
    rows: list[dict[str, Any]] = []
    for kind, cts in kinds.items():
        limb = best_of(repeats, lambda cts=cts: [
            evaluator.score(c, weights, 0.5, keys.bundle, meta, backend="numpy") for c in cts])
        batched = best_of(repeats, lambda cts=cts: [
            evaluator.finish_score(p, 0.5, keys.bundle, meta) for p in ops.multiply_plain_many(
                cts, [weights] * len(cts), backend="numpy",
                template=native.output_template(keys.bundle))])
        ofhe = best_of(repeats, lambda cts=cts: [
            evaluator.score_openfhe(c, weights, 0.5, keys.bundle, meta) for c in cts])
        agg = best_of(repeats, lambda cts=cts: ops.aggregate(
            cts, backend="numpy", template=native.output_template(keys.bundle)))
        agg_ofhe = best_of(repeats, lambda cts=cts: evaluator.add(cts, keys.bundle, meta))
        for op, seconds, base in (("score: limb ct x pt + OpenFHE rotations", limb, ofhe),
                                  ("score: batched limb ct x pt + rotations", batched, ofhe),
                                  ("score: OpenFHE EvalMult + rotations", ofhe, ofhe),
                                  ("aggregate: limb", agg, agg_ofhe),
                                  ("aggregate: OpenFHE EvalAdd", agg_ofhe, agg_ofhe)):
            rows.append({"preset": preset.name, "ring_dim": preset.ring_dim, "inputs": kind,
                         "op": op, "count": count, "seconds": seconds,
                         "per_s": count / seconds, "x_openfhe": base / seconds})
            print(f"{preset.ring_dim:>6} {kind:<17} {op:<42} {count / seconds:>9.1f}/s "
                  f"{base / seconds:>6.2f}x")
    report = {"benchmark": "fhe_scoring", "machine": {
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "omp_threads": os.environ.get("OMP_NUM_THREADS")}, "quick": args.quick, "rows": rows,
        "wall_seconds": time.perf_counter() - started}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
