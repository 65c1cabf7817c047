"""FheWorkerCore without Serve: batches computed as one vectorized operation per key,
errors isolated per request, real OpenFHE keys (preset `test`) and a real SQLite store."""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"

from pathlib import Path

import numpy as np
import pytest

from actors.fhe_compute import FoldRequest, FoldResult, ScoreRequest
from actors.fhe_worker import FheWorkerCore
from confide.config import Settings
from confide.errors import ConfideError, InvalidMessage, NotFound
from fhe import native, ops
from fhe.client import KeySet, decrypt, encrypt, generate_keys


@pytest.fixture(scope="module")
def keys() -> KeySet:
    return generate_keys("test")


@pytest.fixture
def core(tmp_path: Path, keys: KeySet) -> FheWorkerCore:
    settings = Settings(data_dir=tmp_path, jwt_secret="x" * 32, hosts=1,
                        fhe_backend="numpy", fhe_min_security="HEStd_NotSet")
    core = FheWorkerCore(settings)
    core._register("dr", keys.bundle.to_json())
    return core


def ct(keys: KeySet, values: list[float]) -> bytes:
    return encrypt(keys, values).data


def test_fold_batch_vectorized_and_exact(core: FheWorkerCore, keys: KeySet,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = ops.aggregate_many

    def spy(groups: list[list[bytes]], **kw: object) -> list[bytes]:
        calls.append(len(groups))
        return real(groups, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ops, "aggregate_many", spy)
    total = ct(keys, [10.0])
    reqs = [FoldRequest(keys.key_id, None, (ct(keys, [1.0]), ct(keys, [2.0]))),
            FoldRequest(keys.key_id, total, (ct(keys, [3.0]),)),
            FoldRequest(keys.key_id, None, (ct(keys, [4.0]), b"junk", ct(keys, [5.0])))]
    results = core._fold_batch(reqs)
    assert calls == [3]  # one vectorized operation for the whole batch
    template = native.output_template(keys.bundle)
    expected = [[reqs[0].contributions[0], reqs[0].contributions[1]],
                [total, reqs[1].contributions[0]],
                [reqs[2].contributions[0], reqs[2].contributions[2]]]
    for r, parts in zip(results, expected, strict=True):
        assert isinstance(r, FoldResult)
        assert r.total == ops.aggregate(parts, backend="numpy", template=template)
    assert [x is None for x in results[2].refused] == [True, False, True]  # type: ignore[union-attr]
    assert decrypt(keys, results[1].total, 1)[0] == pytest.approx(13.0, abs=1e-6)  # type: ignore[union-attr,arg-type]


def test_one_bad_request_fails_only_itself(core: FheWorkerCore, keys: KeySet) -> None:
    good = FoldRequest(keys.key_id, None, (ct(keys, [1.0]), ct(keys, [2.0])))
    broken_total = FoldRequest(keys.key_id, b"\x01" + b"\x00" * 64, (ct(keys, [3.0]),))
    unknown = FoldRequest("no-such-key", None, (ct(keys, [1.0]),))
    results = core._fold_batch([good, broken_total, unknown, good])
    assert isinstance(results[0], FoldResult) and isinstance(results[3], FoldResult)
    assert results[0].total == results[3].total
    assert isinstance(results[1], InvalidMessage)
    assert isinstance(results[2], NotFound)


def test_score_batch_isolates_a_bad_model(core: FheWorkerCore, keys: KeySet) -> None:
    rng = np.random.default_rng(3)
    x = list(rng.uniform(-1, 1, 8))
    good = [ScoreRequest(keys.key_id, ct(keys, x), tuple(rng.uniform(-1, 1, 8)), 0.5)
            for _ in range(2)]
    too_many = ScoreRequest(keys.key_id, ct(keys, x), tuple([0.1] * 65), 0.0)
    nan = ScoreRequest(keys.key_id, ct(keys, x), (float("nan"),), 0.0)
    results = core._score_batch([good[0], too_many, nan, good[1]])
    for i, req in ((0, good[0]), (3, good[1])):
        r = results[i]
        assert isinstance(r, bytes)
        assert abs(decrypt(keys, r, 1)[0] - (np.dot(x, req.weights) + 0.5)) < 1e-4
    assert all(isinstance(results[i], ConfideError) for i in (1, 2))


async def test_fold_many_counts_one_batch(core: FheWorkerCore, keys: KeySet) -> None:
    reqs = [FoldRequest(keys.key_id, None, (ct(keys, [float(i)]),)) for i in range(4)]
    results = await core.fold_many(reqs)
    assert all(isinstance(r, FoldResult) for r in results)
    assert core.stats()["batches"] == 1 and core.stats()["batch_mean"] == 4




def test_deleted_key_reaches_a_replica_that_cached_it(
    core: FheWorkerCore, keys: KeySet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another replica deletes the key (in the store); this one's cache notices."""
    import actors.fhe_worker as fw

    req = FoldRequest(keys.key_id, None, (ct(keys, [1.0]),))
    assert isinstance(core._fold_batch([req])[0], FoldResult)  # cached now
    core.store.delete_fhe_key(keys.key_id)
    monkeypatch.setattr(fw, "KEY_RECHECK_S", 0.0)
    assert isinstance(core._fold_batch([req])[0], NotFound)
    assert keys.key_id not in core._keys
