"""Arrays saved narrow and read back as they were: the lossless packing of run-folder arrays."""

from __future__ import annotations

import numpy as np

from rec_models.data.packed import load_packed, narrowest, save_packed


def test_integers_are_stored_in_the_narrowest_type_and_read_back_in_theirs(tmp_path):
    arrays = {"ids": np.array([13, 10_000_003], dtype=np.int64), "days": np.array([20761, 20789], dtype=np.int32),
              "small": np.array([0, 100], dtype=np.int64), "negative": np.array([-129, 5], dtype=np.int64),
              "wide": np.array([8_765_432_109_876], dtype=np.int64), "empty": np.zeros(0, dtype=np.int64),
              "flags": np.array([True, False]), "scores": np.array([0.5, 1.25], dtype=np.float32),
              "unsigned": np.array([7, 2**40], dtype=np.uint64)}
    save_packed(tmp_path / "a.npz", **arrays)
    with np.load(tmp_path / "a.npz") as stored:
        assert {name: stored[name].dtype for name in arrays} == {
            "ids": np.int32, "days": np.int16, "small": np.int8, "negative": np.int16, "wide": np.int64,
            "empty": np.int64, "flags": np.bool_, "scores": np.float32, "unsigned": np.uint64}
    loaded = load_packed(tmp_path / "a.npz")
    assert set(loaded) == set(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array), name


def test_a_plain_npz_reads_as_it_is(tmp_path):
    np.savez(tmp_path / "plain.npz", ids=np.arange(3, dtype=np.int64))
    assert load_packed(tmp_path / "plain.npz")["ids"].dtype == np.int64


def test_narrowest_never_widens():
    assert narrowest(np.array([1, 2], dtype=np.int8)).dtype == np.int8
    assert narrowest(np.array([1, 40_000], dtype=np.int32)).dtype == np.int32  # int16 cannot hold it
