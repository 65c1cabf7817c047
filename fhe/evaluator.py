"""Server-side steps that need OpenFHE: rescaling and key switching (rotations).

`score` = limb-path ct x pt (fhe.ops.multiply_plain) + `finish_score` (Rescale, rotate-and-
add over the slots with the uploaded rotation keys, + bias): the key owner decrypts slot 0
(every slot, in fact) to w.x + b. `mean` multiplies an aggregate by 1/count and rescales.
OpenFHE only ever reads limbs framed in the key's own template (native.output_template):
no header, parameter or trailer byte made by a contributor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhe import native
from fhe.codec import check_frame, parse_ciphertext, write_ciphertext
from fhe.errors import ForeignCiphertext, IncompatibleCiphertext, UnsupportedKey
from fhe.kernels import Kernels
from fhe.keys import KeyMeta, PublicBundle
from fhe.ops import check_submission, multiply_plain


def _sum_steps(meta: KeyMeta) -> list[int]:
    steps = [1 << i for i in range(meta.slots.bit_length() - 1)]
    if meta.slots & (meta.slots - 1) or not set(steps) <= set(meta.rotation_steps):
        raise UnsupportedKey("the key has no rotation keys for summing its slots")
    return steps


def _load(data: bytes, bundle: PublicBundle, meta: KeyMeta, noise_scale_degree: int) -> Any:
    """The ciphertext's limbs and scale, framed in the key's template, as OpenFHE's object."""
    view = parse_ciphertext(data)
    if view.key_tag != meta.key_tag:
        raise ForeignCiphertext("ciphertext was encrypted under another key")
    if view.noise_scale_degree != noise_scale_degree:
        raise IncompatibleCiphertext(f"expected noise scale degree {noise_scale_degree}")
    frame = parse_ciphertext(native.output_template(bundle))
    check_frame(frame, view)
    framed = write_ciphertext(
        frame,
        view.elements,
        noise_scale_degree=view.noise_scale_degree,
        scaling_factor=view.scaling_factor,
    )
    return native.ciphertext(framed)


def _rescale(cc: Any, ct: Any, meta: KeyMeta) -> Any:
    if meta.depth < 1:
        raise UnsupportedKey("the key's context has no level to rescale into")
    try:
        return cc.Rescale(ct)
    except RuntimeError:
        raise IncompatibleCiphertext("ciphertext does not fit the key's context") from None


def _openfhe(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except RuntimeError:
        raise IncompatibleCiphertext("ciphertext does not fit the key's context") from None


def add(ciphertexts: Sequence[bytes], bundle: PublicBundle, meta: KeyMeta) -> bytes:
    """Slot-wise sum by OpenFHE's own EvalAdd chain (keys whose limb sum is not proven
    byte-identical, KeyMeta.limb_add False): each input framed in the key's template."""
    if not ciphertexts:
        raise ValueError("add needs at least one ciphertext")
    cc = native.context(bundle.context)
    total = _load(ciphertexts[0], bundle, meta, meta.noise_scale_degree)
    for data in ciphertexts[1:]:
        total = _openfhe(cc.EvalAdd, total, _load(data, bundle, meta, meta.noise_scale_degree))
    return native.serialize(total)


def _sum_slots(cc: Any, ct: Any, bias: float, bundle: PublicBundle, meta: KeyMeta) -> bytes:
    steps = _sum_steps(meta)
    native.ensure_eval_keys(bundle, meta.key_tag)
    for step in steps:
        ct = _openfhe(cc.EvalAdd, ct, _openfhe(cc.EvalRotate, ct, step))
    return native.serialize(_openfhe(cc.EvalAdd, ct, float(bias)))


def score_openfhe(
    ciphertext: bytes, weights: Sequence[float], bias: float, bundle: PublicBundle,
    meta: KeyMeta,
) -> bytes:
    """w.x + b with OpenFHE's EvalMult by a plaintext (any scaling technique; OpenFHE
    rescales where its technique says so), then the same rotate-and-add and bias."""
    check_submission(ciphertext, meta)
    _sum_steps(meta)
    if len(weights) > meta.slots:
        raise IncompatibleCiphertext(f"{len(weights)} weights for {meta.slots} slots")
    cc = native.context(bundle.context)
    ct = _load(ciphertext, bundle, meta, meta.noise_scale_degree)
    plain = cc.MakeCKKSPackedPlaintext([float(w) for w in weights])
    product = _openfhe(cc.EvalMult, ct, plain)
    if meta.scaling_technique == "FIXEDMANUAL":
        product = _rescale(cc, product, meta)
    return _sum_slots(cc, product, bias, bundle, meta)


def finish_score(product: bytes, bias: float, bundle: PublicBundle, meta: KeyMeta) -> bytes:
    """Finish a ct x pt product (fhe.ops.multiply_plain output): Rescale, sum all slots
    by rotations, add `bias`."""
    _sum_steps(meta)
    cc = native.context(bundle.context)
    ct = _rescale(cc, _load(product, bundle, meta, 2), meta)
    return _sum_slots(cc, ct, bias, bundle, meta)


def score(
    ciphertext: bytes,
    weights: Sequence[float],
    bias: float,
    bundle: PublicBundle,
    meta: KeyMeta,
    *,
    backend: Kernels | str | None = None,
) -> bytes:
    """Encrypted linear score w.x + b of a fresh ciphertext under the registered key: the
    limb ct x pt path where it applies (KeyMeta.limb_mult), else OpenFHE's EvalMult."""
    if not meta.limb_mult:
        return score_openfhe(ciphertext, weights, bias, bundle, meta)
    check_submission(ciphertext, meta)
    template = native.output_template(bundle)
    product = multiply_plain(ciphertext, weights, backend=backend, template=template)
    return finish_score(product, bias, bundle, meta)


def mean(total: bytes, count: int, bundle: PublicBundle, meta: KeyMeta) -> bytes:
    """An aggregate times 1/count, rescaled: decrypts to the slot-wise mean."""
    if count < 1:
        raise ValueError("mean needs a positive count")
    cc = native.context(bundle.context)
    ct = _load(total, bundle, meta, meta.noise_scale_degree)
    try:
        product = cc.EvalMult(ct, 1.0 / count)
    except RuntimeError:
        raise IncompatibleCiphertext("ciphertext does not fit the key's context") from None
    return native.serialize(_rescale(cc, product, meta))
