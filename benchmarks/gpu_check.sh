#!/usr/bin/env bash
# The GPU check, one short script for a machine with an NVIDIA GPU (docs/fhe.md, "GPU").
#
# Checks the CuPy kernels bit for bit against the numpy twin (add, sub, neg, mul, mul_int,
# sum_batch, the batched aggregate_many) and the limb sum and product against OpenFHE's
# digests recorded in benchmarks/results/fhe_gpu_inputs.npz, then times them; writes the
# JSON to $OUT/fhe_gpu.json (or benchmarks/results/fhe_gpu.json) and exits non-zero when a
# check fails or no GPU is usable.
#
# Needs python3 with numpy and cupy (cupy-cuda12x) on the GPU machine; OpenFHE is not
# needed there. Make the inputs here first (they need OpenFHE):
#   .venv/bin/python benchmarks/prepare_gpu_inputs.py
# and carry benchmarks/results/fhe_gpu_inputs.npz (11 MB, git-ignored) to the machine.
#   usage: benchmarks/gpu_check.sh [--full]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
INPUTS=benchmarks/results/fhe_gpu_inputs.npz
OUTFILE=${OUT:-benchmarks/results}/fhe_gpu.json
QUICK=--quick
[ "${1:-}" = "--full" ] && QUICK=

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || {
  echo "gpu_check: no NVIDIA GPU visible (nvidia-smi failed)"; exit 2; }
if [ ! -f "$INPUTS" ]; then
  echo "gpu_check: $INPUTS missing; make it with benchmarks/prepare_gpu_inputs.py (OpenFHE)"
  exit 2
fi
"$PY" - <<'PY' || { echo "gpu_check: CuPy cannot use the GPU"; exit 2; }
import cupy
print("cupy", cupy.__version__, "devices:", cupy.cuda.runtime.getDeviceCount())
PY
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" benchmarks/fhe_gpu.py $QUICK --inputs "$INPUTS" --out "$OUTFILE"
"$PY" - "$OUTFILE" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
cupy_checks = [c for c in report["checks"] if c["backend"] == "cupy"]
failed = [c for c in report["checks"] if not c["ok"]]
print(f"device {report['device']}: {len(cupy_checks)} cupy checks, {len(failed)} failed")
sys.exit(1 if failed or not cupy_checks else 0)
PY
