"""Files: Model.save/load and shenjing.save/load round trip exactly; truncated, corrupted,
wrong-architecture, wrong-shape, missing-key and hostile files raise a clear ValueError,
run nothing from the file, and leave the model as it was."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import shenjing
from shenjing import nn

from helpers import FUZZ_SETTINGS, raises


def small_model():
    shenjing.manual_seed(3)
    return shenjing.Model(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))


def saved_arrays(tmp_path):
    path = tmp_path / "ok.npz"
    small_model().save(str(path))
    with np.load(path) as f:
        return dict(f)


def load_or_refuse(path):
    """Model.load(path), or None after a ValueError that names Model.load (anything else fails)."""
    try:
        return shenjing.Model.load(str(path))
    except ValueError as e:
        assert "Model.load" in str(e)
        return None


def write_npz(path, arrays):
    np.savez(path, **arrays)
    return str(path)


def test_state_dict_round_trip(tmp_path):
    net = small_model().module
    shenjing.save(net.state_dict(), tmp_path / "w.npz")
    other = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    other.load_state_dict(shenjing.load(tmp_path / "w.npz"))
    for (k, a), (_, b) in zip(net.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_not_a_zip_and_missing_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with raises(ValueError, "Model.load", "bad.npz", "not an .npz file"):
        shenjing.Model.load(str(bad))
    with raises(ValueError, "load", "not an .npz file"):
        shenjing.load(bad)
    with pytest.raises(FileNotFoundError):
        shenjing.Model.load(str(tmp_path / "missing.npz"))
    with pytest.raises(FileNotFoundError):
        shenjing.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_files(tmp_path, keep):
    path = tmp_path / "model.npz"
    small_model().save(str(path))
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with raises(ValueError, "Model.load"):
        shenjing.Model.load(str(path))
    with raises(ValueError, "load"):
        shenjing.load(path)


def test_corrupted_bytes_are_caught_by_the_checksums(tmp_path):
    path = tmp_path / "model.npz"
    small_model().save(str(path))
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for trial in range(20):
        corrupt = bytearray(data)
        for i in rng.integers(0, len(data), 4):
            corrupt[i] ^= 0xFF
        path.write_bytes(bytes(corrupt))
        model = load_or_refuse(path)
        if model is not None:  # a flip that leaves every checksum valid (in zip padding, say): the true weights
            np.testing.assert_array_equal(model.module[0].weight.data, small_model().module[0].weight.data)


class _Sentinel:
    """Unpickling this would create a file: the test proves nothing from the file runs."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickles_and_object_arrays_never_run(tmp_path):
    sentinel = str(tmp_path / "ran")
    payload = np.array([_Sentinel(sentinel)], dtype=object)
    arrays = saved_arrays(tmp_path)
    for key in ("__architecture__", "weight:0.weight"):
        hostile = dict(arrays)
        hostile[key] = payload
        path = write_npz(tmp_path / "hostile.npz", hostile)
        with raises(ValueError, "Model.load", "Python objects"):
            shenjing.Model.load(path)
        if key.startswith("weight:"):  # shenjing.load reads only the weights of a model file
            with raises(ValueError, "load", "Python objects"):
                shenjing.load(path)
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps(_Sentinel(sentinel)))
    with raises(ValueError, "Model.load"):
        shenjing.Model.load(str(raw))
    assert not os.path.exists(sentinel)


@pytest.mark.parametrize("architecture, fragment", [
    ({"class": "Sequential", "children": [{"class": "os.system", "config": {}}]}, "unknown layer"),
    ({"class": "Linear", "config": {"in_features": 4, "out_features": 3, "evil": 1}}, "evil"),
    ({"class": "Linear", "config": {"in_features": -4, "out_features": 3}}, "in_features"),
    ({"class": "Linear", "config": {"in_features": 10 ** 6, "out_features": 10 ** 6}}, "GiB"),
    ({"class": "Conv2d", "config": {"in_channels": 1, "out_channels": 1, "kernel_size": [1, 2, 3]}}, "kernel_size"),
    ({"class": "Sequential", "children": "abc"}, "children"),
    ({"class": 7}, "class name"),
    ([1, 2, 3], "malformed"),
    ("{" * 100000, "architecture"),
])
def test_wrong_or_hostile_architecture(tmp_path, architecture, fragment):
    arrays = saved_arrays(tmp_path)
    text = architecture if isinstance(architecture, str) else json.dumps(architecture)
    arrays["__architecture__"] = np.array(text)
    path = write_npz(tmp_path / "arch.npz", arrays)
    with raises(ValueError, "Model.load", fragment):
        shenjing.Model.load(path)


def test_architecture_that_does_not_fit_the_weights(tmp_path):
    arrays = saved_arrays(tmp_path)
    arrays["__architecture__"] = np.array(json.dumps({"class": "Sequential", "children": [
        {"class": "Linear", "config": {"in_features": 4, "out_features": 3, "bias": True}}]}))
    path = write_npz(tmp_path / "arch.npz", arrays)
    with raises(ValueError, "Model.load", "unexpected", "2.weight"):
        shenjing.Model.load(path)


def test_wrong_shape_missing_and_unexpected_weights(tmp_path):
    arrays = saved_arrays(tmp_path)
    wrong = dict(arrays, **{"weight:0.weight": np.zeros((3, 3), np.float32)})
    with raises(ValueError, "Model.load", "0.weight", "(3, 3)", "(3, 4)"):
        shenjing.Model.load(write_npz(tmp_path / "a.npz", wrong))
    missing = {k: v for k, v in arrays.items() if k != "weight:2.bias"}
    with raises(ValueError, "Model.load", "missing", "2.bias"):
        shenjing.Model.load(write_npz(tmp_path / "b.npz", missing))
    text = dict(arrays, **{"weight:0.bias": np.array(["a", "b", "c"])})
    with raises(ValueError, "Model.load", "0.bias", "dtype"):
        shenjing.Model.load(write_npz(tmp_path / "c.npz", text))


def _npz_with_header(path, name, shape, payload=b"\0" * 16):
    """A zip whose one .npy member declares ``shape`` but holds only ``payload``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(name + ".npy", buf.getvalue() + payload)
    return str(path)


def test_huge_declared_sizes_are_refused_before_reading(tmp_path):
    path = _npz_with_header(tmp_path / "huge.npz", "w", (2 ** 40,))
    with raises(ValueError, "load", "GiB"):
        shenjing.load(path)
    short = _npz_with_header(tmp_path / "short.npz", "w", (1000,))
    with raises(ValueError, "load", "truncated"):
        shenjing.load(short)


def test_failed_load_state_dict_leaves_the_model_as_it_was():
    net = small_model().module
    before = {k: v.copy() for k, v in net.state_dict().items()}
    state = net.state_dict()
    state["0.weight"] = state["0.weight"] + 1  # a good, changed array...
    state["2.weight"] = np.zeros((5, 5), np.float32)  # ...and a bad one: nothing may change
    with raises(ValueError, "load_state_dict", "2.weight", "(5, 5)"):
        net.load_state_dict(state)
    state["2.weight"] = np.full((2, 3), "x")
    with raises(TypeError, "load_state_dict", "2.weight"):
        net.load_state_dict(state)
    with raises(KeyError, "load_state_dict", "missing"):
        net.load_state_dict({"0.weight": before["0.weight"]})
    with raises(TypeError, "load_state_dict", "mapping"):
        net.load_state_dict("weights.npz")
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@FUZZ_SETTINGS
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_any_damaged_model_file_loads_or_raises_value_error(tmp_path, edits, cut):
    """Random bytes overwritten and a random cut: Model.load gives the saved model or a ValueError."""
    path = tmp_path / "fuzz.npz"
    model = small_model()
    model.save(str(path))
    data = bytearray(path.read_bytes())
    for where, byte in edits:
        data[int(where * len(data))] = byte
    if cut is not None:
        data = data[:int(cut * len(data))]
    path.write_bytes(bytes(data))
    loaded = load_or_refuse(path)
    if loaded is not None:
        x = np.ones((2, 4), np.float32)
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
