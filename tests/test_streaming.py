"""Streamed pools: the same rows, scaler and training as a pool in memory."""

import os

import jax
import numpy as np
import pytest
from flax import nnx

from pretrain import config as config_lib
from pretrain.data import DatasetError, fit_scaler, load_dataset
from pretrain.data.loading import load_streamed_dataset
from pretrain.data.scaling import fit_scaler_chunks
from pretrain.data.streaming import StreamedArray
from pretrain.export import load_encoder
from pretrain.run import default_config, run


@pytest.fixture(scope="module")
def both(data_dir):
    in_memory = load_dataset("digits", data_dir=data_dir, split_seed=3)
    streamed = load_streamed_dataset("digits", data_dir=data_dir, split_seed=3)
    return in_memory, streamed


def test_streamed_rows_match_loaded(both):
    in_memory, streamed = both
    assert isinstance(streamed.train_x, StreamedArray)
    assert streamed.train_x.shape == in_memory.train_x.shape
    assert len(streamed.test_x) == len(in_memory.test_x)
    np.testing.assert_array_equal(streamed.train_y, in_memory.train_y)
    np.testing.assert_array_equal(streamed.test_y, in_memory.test_y)

    rows = np.array([5, 0, 1000, 5])
    np.testing.assert_array_equal(streamed.train_x[rows], in_memory.train_x[rows])
    np.testing.assert_array_equal(streamed.test_x[3], in_memory.test_x[3])
    np.testing.assert_array_equal(streamed.test_x[:10], in_memory.test_x[:10])


def test_map_and_reshape_per_read(both):
    in_memory, streamed = both
    flat = streamed.train_x.map(lambda x: 2 * x).reshape(len(streamed.train_x), -1)
    assert flat.shape == (len(in_memory.train_x), 64)
    expected = 2 * in_memory.train_x[[7, 9]].reshape(2, -1)
    np.testing.assert_array_equal(flat[np.array([7, 9])], expected)
    with pytest.raises(ValueError, match="reshape"):
        streamed.train_x.reshape(8, 8)


def test_whole_array_conversion_rejected(both):
    with pytest.raises(TypeError, match="batch by batch"):
        np.asarray(both[1].train_x)


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_chunked_scaler_matches_fit_scaler(both, kind):
    in_memory, streamed = both
    expected = fit_scaler(in_memory.train_x, kind)
    got = fit_scaler_chunks(streamed.train_x.chunks(100), kind)
    for key, value in expected.params.items():
        np.testing.assert_allclose(got.params[key], value, rtol=1e-10, atol=1e-12)


def test_chunked_scaler_rejects_bad_chunks():
    with pytest.raises(DatasetError, match="no chunks"):
        fit_scaler_chunks([], "minmax")
    bad = np.ones((4, 3), np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        fit_scaler_chunks([np.zeros((4, 3), np.float32), bad], "standard")


def _dae_config(data_dir, **changes):
    overrides = {
        "hidden": (16, 8),
        "epochs": 2,
        "data_dir": data_dir,
        "scan": False,
        **changes,
    }
    return config_lib.build_config(lambda: default_config("dae"), overrides=overrides)


def test_streamed_pretraining_matches_memory(data_dir, tmp_path):
    # Same rows, scaler, data order and per-step keys; only where the batches
    # come from differs.
    exports = [
        run("dae", _dae_config(data_dir, stream=stream), str(tmp_path / str(stream)))
        for stream in (False, True)
    ]
    loaded = [load_encoder(path) for path in exports]
    params = [jax.tree.leaves(nnx.state(e.module, nnx.Param)) for e in loaded]
    for a, b in zip(*params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert loaded[0].scaler.to_dict() == loaded[1].scaler.to_dict()
    assert os.path.exists(os.path.join(exports[1], "code_stats.json"))


def test_stream_rejected_for_rbm(data_dir, tmp_path):
    config = config_lib.build_config(
        lambda: default_config("rbm"),
        overrides={"data_dir": data_dir, "stream": True, "epochs": 1},
    )
    workdir = tmp_path / "rbm"
    with pytest.raises(config_lib.ConfigError, match="stream.*dae"):
        run("rbm", config, str(workdir))
    assert not workdir.exists()
