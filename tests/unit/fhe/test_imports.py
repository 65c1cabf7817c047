"""The numpy-side modules run where OpenFHE is missing (a GPU machine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_numpy_modules_never_import_openfhe() -> None:
    code = (
        "import sys; sys.modules['openfhe'] = None\n"  # any `import openfhe` now fails
        "import fhe.codec, fhe.encoding, fhe.errors, fhe.kernels, fhe.keys, fhe.ops, "
        "fhe.presets, fhe.security, fhe.validator\n"
        "assert 'openfhe' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
