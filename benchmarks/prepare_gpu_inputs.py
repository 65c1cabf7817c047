"""Prepare inputs for benchmarks/fhe_gpu.py on a machine that has OpenFHE.

Per ring (presets `aggregation`, N=2^14, and `scoring`, N=2^15): COUNT ciphertexts as
limbs (count, 2, towers, N), their moduli, one serialized ciphertext as the template
(the others are the template with their limbs written in), weights for ct x pt, and
sha256 digests of OpenFHE's own EvalAdd chain and of the numpy ct x pt result, so the GPU
machine (no OpenFHE) can check its results against OpenFHE bit for bit.

    python benchmarks/prepare_gpu_inputs.py   # writes benchmarks/results/fhe_gpu_inputs.npz
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "fhe_gpu_inputs.npz"
COUNT = 4


def ring_inputs(preset_name: str) -> dict[str, Any]:
    import numpy as np

    from fhe import client, codec, native, ops

    keys = client.generate_keys(preset_name)
    rng = np.random.default_rng(11)
    cts = [client.encrypt(keys, list(rng.uniform(-1, 1, 32))).data for _ in range(COUNT)]
    views = [codec.parse_ciphertext(c) for c in cts]
    cc = native.context(keys.bundle.context)
    total = native.ciphertext(cts[0])
    for data in cts[1:]:
        total = cc.EvalAdd(total, native.ciphertext(data))
    weights = rng.uniform(-1, 1, 32)
    product = ops.multiply_plain(cts[0], list(weights), backend="numpy")
    return {
        "limbs": np.stack([v.limbs for v in views]),
        "moduli": np.array(views[0].moduli, dtype=np.uint64),
        "template": np.frombuffer(cts[0], dtype=np.uint8),
        "weights": weights,
        "sum_sha256": hashlib.sha256(native.serialize(total)).hexdigest(),
        "product_sha256": hashlib.sha256(product).hexdigest(),
    }


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    import numpy as np

    arrays: dict[str, Any] = {}
    for preset in ("aggregation", "scoring"):
        for key, value in ring_inputs(preset).items():
            arrays[f"{preset}/{key}"] = value
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez(OUT, **arrays)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
