"""Model.fit and friends, the data utilities, the shipped digits, and the
examples (run with their real settings: each takes seconds)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

import shenjing
from shenjing import nn
from shenjing.data import DataLoader, StandardScaler, TensorDataset, random_split, standardize

from helpers import raises

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def _example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_digits():
    X, y = shenjing.datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    assert y[:10].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # the original order


def test_digits_cnn_reaches_97_percent():
    assert _example("digits_cnn").main(epochs=20, verbose=0) >= 0.97


def test_digits_mlp_learns():
    assert _example("digits_mlp").main(epochs=30, verbose=0) >= 0.95


def test_l1_resists_outliers_where_mse_does_not():
    results = _example("regression_outliers").main()
    (_, b_mse), (w_l1, b_l1) = results["mse"], results["l1"]
    assert abs(w_l1 - 3) < 0.1 and abs(b_l1 + 2) < 0.1
    assert abs(b_mse + 2) > 1.0  # pulled towards the outliers


def test_binary_classification_with_bce():
    assert _example("binary_classification").main() >= 0.95


def test_fit_returns_history_with_validation(capsys):
    shenjing.manual_seed(0)
    X, y = shenjing.datasets.load_digits()
    model = shenjing.Model(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))
    model.compile(loss="cross_entropy", optimizer="sgd", lr=0.1, momentum=0.9)
    history = model.fit(X, y, epochs=3, batch_size=64, validation_split=0.2, verbose=1)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 3
    assert history.history["loss"][-1] < history.history["loss"][0]
    out = capsys.readouterr().out
    assert "Epoch 3/3" in out and "val_accuracy" in out
    model.fit(X, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""
    assert model.predict(X[:5]).shape == (5, 10)


def test_same_seed_gives_a_bit_identical_run():
    def run():
        shenjing.manual_seed(7)
        X, y = shenjing.datasets.load_digits()
        model = shenjing.Model(nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 10)))
        model.compile(loss="cross_entropy", optimizer="adam")
        model.fit(X, y, epochs=2, batch_size=50, verbose=0)
        return [p.data.copy() for p in model.parameters()]

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_save_and_load_round_trip(tmp_path):
    shenjing.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 10), nn.LogSoftmax(dim=1))
    model = shenjing.Model(net)
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    before = model.predict(x)
    path = str(tmp_path / "model.npz")
    model.save(path)
    loaded = shenjing.Model.load(path)
    np.testing.assert_array_equal(loaded.predict(x), before)
    assert repr(loaded.module) == repr(net)


def test_callbacks(tmp_path):
    shenjing.manual_seed(0)
    X, y = shenjing.datasets.load_digits()
    model = shenjing.Model(nn.Sequential(nn.Linear(64, 10)))
    model.compile(loss="cross_entropy", optimizer="sgd", lr=1e-9)  # learns nothing: val_loss stalls
    stop = shenjing.EarlyStopping(monitor="val_loss", patience=2, min_delta=1e-3)
    checkpoint = shenjing.ModelCheckpoint(str(tmp_path / "epoch{epoch}.npz"))
    history = model.fit(X, y, epochs=20, validation_split=0.2, callbacks=[stop, checkpoint], verbose=0)
    assert len(history.epoch) == 3
    assert (tmp_path / "epoch3.npz").exists()


def test_compile_and_fit_errors():
    model = shenjing.Model(nn.Linear(3, 2))
    with raises(RuntimeError, "fit", "compile"):
        model.fit(np.zeros((4, 3)), np.zeros(4))
    with raises(ValueError, "compile", "unknown loss", "'hinge'"):
        model.compile(loss="hinge")
    with raises(ValueError, "compile", "unknown optimizer", "'lbfgs'"):
        model.compile(loss="mse", optimizer="lbfgs")
    model.compile(loss="cross_entropy")
    with raises(ValueError, "fit", "4 samples", "3"):
        model.fit(np.zeros((4, 3)), np.zeros(3, np.int64))
    with raises(ValueError, "Linear(3 -> 2)", "5 features"):
        model.fit(np.zeros((4, 5)), np.zeros(4, np.int64), verbose=0)


def test_fit_stops_on_a_non_finite_loss():
    model = shenjing.Model(nn.Linear(2, 1))
    model.compile(loss="mse", optimizer="sgd", lr=1e30)
    x = np.ones((8, 2), np.float32)
    with raises(FloatingPointError, "fit", "loss became"):
        model.fit(x, np.full(8, 1e30, np.float32), epochs=5, verbose=0)


def test_data_loader_and_splits():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    batches = list(loader)
    assert [len(b[0]) for b in batches] == [4, 4, 2] and len(loader) == 3
    assert len(list(DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True))) == 2
    a = [b[1].tolist() for b in DataLoader(TensorDataset(x, y), batch_size=10, shuffle=True, seed=3)]
    b = [b[1].tolist() for b in DataLoader(TensorDataset(x, y), batch_size=10, shuffle=True, seed=3)]
    assert a == b and sorted(a[0]) == list(range(10)) and a[0] != list(range(10))
    train, val = random_split(TensorDataset(x, y), [0.8, 0.2], generator=np.random.default_rng(0))
    assert len(train) == 8 and len(val) == 2
    seen = sorted(int(v) for batch in DataLoader(train, batch_size=3) for v in batch[1]) + \
        sorted(int(val[i][1]) for i in range(len(val)))
    assert sorted(seen) == list(range(10))
    z, mean, std = standardize(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_allclose(z, [[-1, 0], [1, 0]])
    with raises(ValueError, "batch_size"):
        DataLoader(TensorDataset(x), batch_size=0)
    with raises(ValueError, "different lengths"):
        TensorDataset(x, y[:3])
    assert [len(s) for s in random_split(TensorDataset(x), [4.0, 6.0])] == [4, 6]  # float counts, as PyTorch
    for lengths, words in [([6, -1], ">= 0"), ([0.5, 0.6], "fractions that add up to 1"),
                           ([4.5, 5.5], "neither counts"), ([3, 3], "do not add up to the dataset's 10")]:
        with raises(ValueError, "random_split", str(lengths), words):  # [6, -1] was said not to add up to 5
            random_split(TensorDataset(x), lengths)
    scaler = StandardScaler()
    with raises(RuntimeError, "StandardScaler.transform", "fit"):
        scaler.transform(x)
    with raises(ValueError, "StandardScaler.transform", "(2, 3)", "(1,)"):
        scaler.fit(x).transform(np.ones((2, 3)))


def test_nan_guard_names_the_layer():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    net[2].weight.data[0, 0] = np.inf
    model = shenjing.Model(net)
    model.compile(loss="cross_entropy", optimizer="sgd")
    with raises(FloatingPointError, "nan_guard", "layer 2", "Linear(in_features=3"):
        model.fit(np.ones((4, 2), np.float32), np.zeros(4, np.int64), verbose=0, nan_guard=True)


def test_empty_data():
    """No samples: fit and evaluate say so (evaluate had answered a loss of 0, fit an
    UnboundLocalError); predict returns an empty array of the outputs' shape."""
    model = shenjing.Model(nn.Sequential(nn.Linear(2, 3))).compile(loss="cross_entropy", optimizer="adam")
    x, y = np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    with raises(ValueError, "fit", "no training samples", "(0, 2)"):
        model.fit(x, y, verbose=0)
    with raises(ValueError, "evaluate", "no samples", "(0, 2)"):
        model.evaluate(x, y)
    with raises(ValueError, "fit", "validation_split=0.1", "5 samples"):
        model.fit(np.ones((5, 2), np.float32), np.zeros(5, np.int64), validation_split=0.1, verbose=0)
    assert model.predict(x).shape == (0, 3)
    for call in (lambda: model.predict(x, batch_size=0), lambda: model.evaluate(x, y, batch_size=-1)):
        with raises(ValueError, "batch_size", "positive"):
            call()


def test_manual_seed_takes_pytorchs_range():
    """Negative seeds are taken as PyTorch maps them (NumPy refused them with a bare
    message); outside [-2**63, 2**64) is refused by name."""
    draws = {}
    for seed in (-1, 2**64 - 2, 2**64 - 1, -(2**63)):
        shenjing.manual_seed(seed)
        draws[seed] = shenjing.random.default_generator().integers(0, 1 << 30, 4).tolist()
    assert draws[-1] == draws[2**64 - 2] and draws[-1] != draws[2**64 - 1]
    for seed in (2**64, -(2**63) - 1):
        with raises(ValueError, "manual_seed", str(seed)):
            shenjing.manual_seed(seed)


def test_callbacks_never_take_a_nan_for_the_best(tmp_path):
    """A NaN metric is never an improvement: it had become the best on the first epoch, and
    then no value could beat it (EarlyStopping stopped a run that was improving, ModelCheckpoint
    kept the NaN epoch's weights). A mode that is not 'auto', 'min' or 'max' is refused."""
    model = shenjing.Model(nn.Sequential(nn.Linear(2, 2)))
    stop = shenjing.EarlyStopping(monitor="val_loss", patience=2)
    checkpoint = shenjing.ModelCheckpoint(str(tmp_path / "best{epoch}.npz"), monitor="val_loss", save_best_only=True)
    model.stop_training = False
    for cb in (stop, checkpoint):
        cb.model = model
    for epoch, value in enumerate([float("nan"), 1.0, 0.9, float("nan"), 0.8]):
        for cb in (stop, checkpoint):
            cb.on_epoch_end(epoch, {"val_loss": value})
        assert not model.stop_training, epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best2.npz", "best3.npz", "best5.npz"]
    for make in (lambda: shenjing.EarlyStopping(mode="minimum"), lambda: shenjing.ModelCheckpoint("x", mode="low")):
        with raises(ValueError, "mode", "'auto', 'min' or 'max'"):
            make()
    with raises(ValueError, "EarlyStopping", "patience"):
        shenjing.EarlyStopping(patience=-1)
