"""Encrypted computation for Confide: OpenFHE CKKS keys, ciphertexts as RNS limbs.

numpy-only (run anywhere, CuPy when a GPU is present): `fhe.keys`, `fhe.presets`,
`fhe.codec`, `fhe.encoding`, `fhe.kernels`, `fhe.ops`, `fhe.errors`.
OpenFHE-using (import only where OpenFHE is installed): `fhe.native`, `fhe.client`,
`fhe.bundle`, `fhe.evaluator`. See docs/fhe.md.
"""
