"""The model archive's members: deflated where that shrinks them, stored where it cannot."""

from __future__ import annotations

import io
import zipfile

import numpy as np

from models.codec import _npz_bytes, decode, encode


def test_noise_is_stored_and_tables_are_deflated_and_both_load_back() -> None:
    rng = np.random.default_rng(0)
    arrays = {"noise": rng.normal(50, 3, 4032),  # measured values in full precision
              "steps": np.arange(4032) * 300.0 + 1.79e9,  # timestamps: regular
              "table": np.repeat(rng.normal(size=40), 100),  # repeats
              "small": rng.normal(size=100)}  # too small to judge: deflated as before
    data = _npz_bytes(arrays)
    kinds = {info.filename: info.compress_type for info in zipfile.ZipFile(io.BytesIO(data)).infolist()}
    assert kinds == {"noise.npy": zipfile.ZIP_STORED, "steps.npy": zipfile.ZIP_DEFLATED,
                     "table.npy": zipfile.ZIP_DEFLATED, "small.npy": zipfile.ZIP_DEFLATED}
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        for name, value in arrays.items():
            assert loaded[name].tobytes() == value.tobytes()
    assert _npz_bytes(arrays) == data  # the choice follows the bytes: the same file again


def test_an_object_with_noisy_arrays_round_trips() -> None:
    rng = np.random.default_rng(1)
    value = {"curve": rng.normal(size=5000), "ints": np.arange(5000), "name": "x"}
    back = decode(encode(value))
    assert back["curve"].tobytes() == value["curve"].tobytes() and back["name"] == "x"
    assert (back["ints"] == value["ints"]).all()
