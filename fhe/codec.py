"""OpenFHE BINARY CKKS ciphertexts as RNS limb views, and back (numpy only).

Layout (cereal portable binary, little-endian), worked out from real serializations:

    [0x01 endianness] [crypto context ...] [key tag: u64 length + ASCII]
    element block: u64 element count, then per element (a DCRTPoly):
        (u32 class version, first element only) u64 towers, then per tower:
            (u32 class version, first tower only) u32 0x40000000 (exact-type marker)
            u8 1 (pointer present) (u32 class version, first tower only)
            u64 N, N x u64 residues, u64 modulus q, u32 format (0 = EVALUATION)
            u32 0x40000000, u32 pointer id of the tower's ring parameters; a new id
            (bit 31 set) is followed by them inline: u32 2N, u32 N, u64 q, 3 x u64
        u32 format, u32 0x40000000, u32 pointer id of the element's parameters (inline
        when new, as after OpenFHE deserialized the key: skipped up to the next element)
    trailer: u32 slots, u32 level, u32 hop level, u32 noise scale degree,
             f64 scaling factor, u64 integer scaling factor, u32 encoding,
             u32 metadata-map pointer (+ u64 size 0 when new)

The block is found by its first-tower signature right after the key tag string, then
parsed field by field and validated: sizes, N a power of two, q = 1 mod 2N, residues < q,
the same N, towers and moduli in every element, and the trailer ending the buffer.
Within an element the towers sit at one stride, so each element is a zero-copy
(towers, N) view; `limbs` is one (elements, towers, N) view when the elements are evenly
spaced too (a fresh ciphertext), else a stacked copy.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fhe.errors import ForeignCiphertext, IncompatibleCiphertext, MalformedCiphertext
from fhe.kernels.base import MAX_MODULUS_BITS, U64
from fhe.keys import KeyMeta

EVALUATION = 0
COEFFICIENT = 1
CKKS_PACKED_ENCODING = 4

_EXACT_TYPE = 0x40000000
_NEW_POINTER = 0x80000000
_ANCHOR = struct.pack("<IB", _EXACT_TYPE, 1)
_MAX_VERSION = 0xFFFF
_MAX_TOWERS = 64
_MIN_RING_DIM = 1 << 10
_MAX_RING_DIM = 1 << 17
_MAX_TAG = 256
_HEADER_SCAN = 1 << 16
_TAG_CHARS = frozenset(b"0123456789abcdefABCDEF-_")


class _Reader:
    """Bounds-checked little-endian cursor over a buffer."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos

    def take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.buf):
            raise MalformedCiphertext("truncated serialization")
        self.pos = start + n
        return start

    def u8(self) -> int:
        return self.buf[self.take(1)]

    def u32(self) -> int:
        return int(struct.unpack_from("<I", self.buf, self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack_from("<Q", self.buf, self.take(8))[0])

    def f64(self) -> float:
        return float(struct.unpack_from("<d", self.buf, self.take(8))[0])

    def version(self) -> None:
        if self.u32() > _MAX_VERSION:
            raise MalformedCiphertext("bad class version field")

    def marker(self) -> None:
        if self.u32() != _EXACT_TYPE:
            raise MalformedCiphertext("unexpected pointer marker")

    def pointer(self) -> bool:
        """Read an exact-type pointer id; True when the object follows inline."""
        self.marker()
        return bool(self.u32() & _NEW_POINTER)

    def tower_params(self, n: int, q: int) -> None:
        """Inline ring parameters of one tower; they must describe that tower."""
        order, ring_dim, modulus, root = self.u32(), self.u32(), self.u64(), self.u64()
        self.take(16)
        if (order, ring_dim, modulus) != (2 * n, n, q) or root >= q:
            raise MalformedCiphertext("inline tower parameters do not match the tower")


@dataclass(frozen=True)
class PolyBlock:
    """The ring elements of a serialized object: shape, moduli and where residues sit."""

    key_tag: str
    n_elements: int
    towers: int
    ring_dim: int
    moduli: tuple[int, ...]
    fmt: int
    firsts: tuple[int, ...]
    tower_strides: tuple[int, ...]
    end: int

    def elements(self, buf: bytes | bytearray) -> list[U64]:
        """One (towers, N) uint64 view per element over `buf` (no copy)."""
        return [
            np.ndarray(
                (self.towers, self.ring_dim),
                dtype="<u8",
                buffer=buf,
                offset=first,
                strides=(stride, 8),
            )
            for first, stride in zip(self.firsts, self.tower_strides, strict=True)
        ]

    def limbs(self, buf: bytes) -> U64:
        """(elements, towers, N) residues: a view when evenly spaced, else a copy."""
        gaps = {b - a for a, b in itertools.pairwise(self.firsts)}
        if len(set(self.tower_strides)) == 1 and len(gaps) <= 1:
            return np.ndarray(
                (self.n_elements, self.towers, self.ring_dim),
                dtype="<u8",
                buffer=buf,
                offset=self.firsts[0],
                strides=(gaps.pop() if gaps else 0, self.tower_strides[0], 8),
            )
        return np.stack(self.elements(buf))

    def moduli_column(self) -> U64:
        """Moduli as a (towers, 1) uint64 array, to broadcast over limbs."""
        return np.array(self.moduli, dtype=np.uint64).reshape(-1, 1)


@dataclass(frozen=True)
class CiphertextView:
    """A parsed ciphertext: limb view over `data` plus its trailer metadata."""

    data: bytes
    block: PolyBlock
    elements: tuple[U64, ...]
    slots: int
    level: int
    hop_level: int
    noise_scale_degree: int
    scaling_factor: float
    scaling_factor_int: int
    encoding: int
    trailer: int

    @property
    def limbs(self) -> U64:
        """(elements, towers, N) residues: a view over `data` for evenly spaced elements
        (fresh ciphertexts), else a copy; `elements` are always views."""
        return self.block.limbs(self.data)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.block.n_elements, self.block.towers, self.block.ring_dim)

    @property
    def ring_dim(self) -> int:
        return self.block.ring_dim

    @property
    def towers(self) -> int:
        return self.block.towers

    @property
    def moduli(self) -> tuple[int, ...]:
        return self.block.moduli

    @property
    def key_tag(self) -> str:
        return self.block.key_tag

    @property
    def fmt(self) -> int:
        return self.block.fmt


def _key_tag_before(buf: bytes, end: int) -> str | None:
    """The cereal string (u64 length + token chars) that ends at `end`, if any."""
    run = 0
    while run < min(_MAX_TAG, end - 8) and buf[end - run - 1] in _TAG_CHARS:
        run += 1
    for length in range(run, 0, -1):
        at = end - length - 8
        if int.from_bytes(buf[at : at + 8], "little") == length:
            return buf[end - length : end].decode("ascii")
    return None


def _block_start(buf: bytes, anchor: int, counted: bool) -> int | None:
    """Where a block whose first tower marker is at `anchor` would start, if plausible."""
    start = anchor - 4 - 8 - 4 - (8 if counted else 0)
    if start < 1 or anchor + 5 + 12 > len(buf):
        return None
    r = _Reader(buf, start)
    if counted and not 1 <= r.u64() <= 3:
        return None
    first_version, towers, poly_version = r.u32(), r.u64(), r.u32()
    r.take(5)
    vec_version, n = r.u32(), r.u64()
    if max(first_version, poly_version, vec_version) > _MAX_VERSION:
        return None
    if not (1 <= towers <= _MAX_TOWERS and _MIN_RING_DIM <= n <= _MAX_RING_DIM):
        return None
    return start


def _check_modulus(q: int, n: int) -> None:
    if not (2 * n < q < (1 << MAX_MODULUS_BITS)) or q % (2 * n) != 1:
        raise MalformedCiphertext("tower modulus is not an NTT prime for the ring")


def _next_element(r: _Reader, towers: int, n: int) -> None:
    """Skip inline element parameters: move to the next element's first tower."""
    signature = struct.pack("<QIBQ", towers, _EXACT_TYPE, 1, n)
    at = r.buf.find(signature, r.pos, r.pos + _HEADER_SCAN)
    if at == -1:
        raise MalformedCiphertext("no ring element after inline element parameters")
    r.pos = at


def _parse_block(buf: bytes, start: int, *, counted: bool) -> PolyBlock:
    tag = _key_tag_before(buf, start)
    if tag is None:
        raise MalformedCiphertext("no key tag before the ring elements")
    r = _Reader(buf, start)
    n_elements = r.u64() if counted else 1
    firsts: list[int] = []
    strides: list[int] = []
    moduli: list[int] = []
    towers = ring_dim = fmt = -1
    for e in range(n_elements):
        if e == 0:
            r.version()
        t_count = r.u64()
        if towers not in (-1, t_count) or not 1 <= t_count <= _MAX_TOWERS:
            raise MalformedCiphertext("inconsistent tower count")
        towers = t_count
        offsets: list[int] = []
        for t in range(towers):
            if e == 0 and t == 0:
                r.version()
            r.marker()
            if r.u8() != 1:
                raise MalformedCiphertext("missing residue vector")
            if e == 0 and t == 0:
                r.version()
            n = r.u64()
            if ring_dim not in (-1, n) or n & (n - 1) or not _MIN_RING_DIM <= n <= _MAX_RING_DIM:
                raise MalformedCiphertext("bad or inconsistent ring dimension")
            ring_dim = n
            offsets.append(r.take(8 * n))
            q = r.u64()
            if e == 0:
                _check_modulus(q, n)
                moduli.append(q)
            elif q != moduli[t]:
                raise MalformedCiphertext("moduli differ between elements")
            f = r.u32()
            if fmt not in (-1, f) or f not in (EVALUATION, COEFFICIENT):
                raise MalformedCiphertext("bad or inconsistent format flag")
            fmt = f
            if r.pointer():
                r.tower_params(n, q)
        stride = offsets[1] - offsets[0] if towers > 1 else 8 * ring_dim
        if any(b - a != stride for a, b in itertools.pairwise(offsets)):
            raise MalformedCiphertext("irregular residue layout")
        firsts.append(offsets[0])
        strides.append(stride)
        if r.u32() != fmt:
            raise MalformedCiphertext("element format differs from its towers")
        if r.pointer():
            if e == n_elements - 1:
                raise MalformedCiphertext("unsupported inline parameters after the last element")
            _next_element(r, towers, ring_dim)
    if len(set(moduli)) != len(moduli):
        raise MalformedCiphertext("repeated tower modulus")
    return PolyBlock(
        key_tag=tag,
        n_elements=n_elements,
        towers=towers,
        ring_dim=ring_dim,
        moduli=tuple(moduli),
        fmt=fmt,
        firsts=tuple(firsts),
        tower_strides=tuple(strides),
        end=r.pos,
    )


def _find_block(buf: bytes, *, counted: bool) -> PolyBlock:
    if len(buf) < 64 or buf[0] != 1:
        raise MalformedCiphertext("not an OpenFHE BINARY serialization")
    anchor = buf.find(_ANCHOR, 0, _HEADER_SCAN)
    while anchor != -1:
        start = _block_start(buf, anchor, counted)
        if start is not None and _key_tag_before(buf, start) is not None:
            return _parse_block(buf, start, counted=counted)
        anchor = buf.find(_ANCHOR, anchor + 1, _HEADER_SCAN)
    raise MalformedCiphertext("no ring elements found")


def _check_residues(limbs: U64 | Sequence[U64], block: PolyBlock) -> None:
    q = block.moduli_column()
    if any(bool(np.any(x >= q)) for x in limbs):
        raise MalformedCiphertext("residue not reduced modulo its tower modulus")


def parse_ciphertext(data: bytes) -> CiphertextView:
    """Parse and validate a serialized CKKS ciphertext; limbs are a view over `data`."""
    if not isinstance(data, bytes):
        raise TypeError("parse_ciphertext takes bytes")
    block = _find_block(data, counted=True)
    r = _Reader(data, block.end)
    slots, level, hop_level, nsd = r.u32(), r.u32(), r.u32(), r.u32()
    trailer = block.end
    scaling_factor, scaling_factor_int, encoding = r.f64(), r.u64(), r.u32()
    if r.u32() & _NEW_POINTER and r.u64() != 0:
        raise MalformedCiphertext("ciphertext metadata maps are not supported")
    if r.pos != len(data):
        raise MalformedCiphertext("trailing bytes after the ciphertext")
    if encoding != CKKS_PACKED_ENCODING:
        raise MalformedCiphertext("not a CKKS packed ciphertext")
    if not (1 <= slots <= block.ring_dim // 2 and nsd >= 1 and scaling_factor > 0):
        raise MalformedCiphertext("bad ciphertext metadata")
    elements = tuple(block.elements(data))
    _check_residues(elements, block)
    return CiphertextView(
        data=data,
        block=block,
        elements=elements,
        slots=slots,
        level=level,
        hop_level=hop_level,
        noise_scale_degree=nsd,
        scaling_factor=scaling_factor,
        scaling_factor_int=scaling_factor_int,
        encoding=encoding,
        trailer=trailer,
    )


def parse_public_key(data: bytes) -> PolyBlock:
    """Parse a serialized PublicKey: exactly two ring elements, nothing after them."""
    block = _find_block(data, counted=True)
    if block.n_elements != 2 or block.end != len(data):
        raise MalformedCiphertext("not a serialized public key")
    _check_residues(block.elements(data), block)
    return block


def holds_secret_key(data: bytes) -> bool:
    """True when a serialized PrivateKey (a key tag followed by one bare ring element,
    with no element count) appears anywhere in `data`."""
    if data[:1] != b"\x01":
        return False
    anchor = data.find(_ANCHOR)
    while anchor != -1:
        start = _block_start(data, anchor, counted=False)
        if start is not None and _key_tag_before(data, start) is not None:
            try:
                _parse_block(data, start, counted=False)
            except MalformedCiphertext:
                pass
            else:
                return True
        anchor = data.find(_ANCHOR, anchor + 1)
    return False


def write_ciphertext(
    template: CiphertextView,
    limbs: U64 | Sequence[U64],
    *,
    noise_scale_degree: int | None = None,
    scaling_factor: float | None = None,
) -> bytes:
    """A new serialization: `template` with `limbs` (and changed metadata) written in.

    `limbs`: an (elements, towers, N) uint64 array, or one (towers, N) array per element.
    """
    block = template.block
    if len(limbs) != block.n_elements or any(
        x.shape != template.shape[1:] or x.dtype != np.uint64 for x in limbs
    ):
        raise ValueError("limbs must match the template's (elements, towers, N) uint64 shape")
    _check_residues(limbs, block)
    out = bytearray(template.data)
    for view, element in zip(block.elements(out), limbs, strict=True):
        view[...] = element
    if noise_scale_degree is not None:
        struct.pack_into("<I", out, template.trailer + 12, noise_scale_degree)
    if scaling_factor is not None:
        struct.pack_into("<d", out, template.trailer + 16, scaling_factor)
    return bytes(out)


def check_frame(frame: CiphertextView, view: CiphertextView) -> None:
    """`frame` can carry `view`'s limbs: same key tag, shape, moduli, format, slots, level."""
    if frame.key_tag != view.key_tag:
        raise ForeignCiphertext("ciphertexts were encrypted under different keys")
    if (frame.shape, frame.moduli, frame.fmt, frame.slots, frame.level) != (
        view.shape,
        view.moduli,
        view.fmt,
        view.slots,
        view.level,
    ):
        raise IncompatibleCiphertext("ciphertexts differ in shape, moduli, slots or level")


def check_compatible(view: CiphertextView, meta: KeyMeta) -> None:
    """Refuse a ciphertext that is not a fresh encryption under the registered key."""
    if view.key_tag != meta.key_tag:
        raise ForeignCiphertext("ciphertext was encrypted under another key")
    if view.ring_dim != meta.ring_dim:
        raise IncompatibleCiphertext(
            f"ring dimension {view.ring_dim} does not match the key's {meta.ring_dim}"
        )
    if view.moduli != meta.moduli:
        raise IncompatibleCiphertext("tower moduli do not match the key's context")
    if view.block.n_elements != 2 or view.fmt != EVALUATION:
        raise IncompatibleCiphertext("expected a two-element ciphertext in evaluation form")
    if (view.slots, view.level, view.noise_scale_degree, view.scaling_factor) != (
        meta.slots,
        meta.level,
        meta.noise_scale_degree,
        meta.scaling_factor,
    ):
        raise IncompatibleCiphertext("slots, level or scale differ from a fresh ciphertext")
