"""Smoke tests of the benchmark code that the figures depend on; no timings."""

import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from experiments.benchmarks import __main__ as benchmarks_main
from experiments.benchmarks import pinned
from experiments.benchmarks.compilation import recording
from experiments.benchmarks.peers import NumpyDenoisingAE
from pretrain.autoencoder import AutoencoderLayer, autoencoder_config, layer_loss_fn
from pretrain.train import PhaseTrainer, fit


def test_numpy_gradients_match_jax():
    visible, hidden, batch = 12, 5, 7
    x = np.random.default_rng(1).uniform(size=(batch, visible)).astype(np.float32)
    numpy_model = NumpyDenoisingAE(visible, hidden)
    layer = AutoencoderLayer(
        visible, hidden, activation="sigmoid", batch_norm=False, tied=True,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    layer.encoder.linear.kernel[...] = jnp.asarray(numpy_model.params["kernel"])
    # Without noise the real loss is deterministic, so gradients compare.
    loss_fn = layer_loss_fn(autoencoder_config(), "cross_entropy")
    batch_dict = {"x": jnp.asarray(x), "weight": jnp.ones(batch)}
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss_of(params):
        model = nnx.merge(graphdef, params, rest)
        return loss_fn(model, batch_dict, jax.random.key(0))[0]

    expected_loss, grads = jax.value_and_grad(loss_of)(params)
    loss, numpy_grads = numpy_model.loss_and_grads(x, x)
    np.testing.assert_allclose(loss, float(expected_loss), rtol=1e-5)
    pairs = {
        "kernel": grads["encoder"]["linear"]["kernel"],
        "hidden_bias": grads["encoder"]["linear"]["bias"],
        "visible_bias": grads["decoder_bias"],
    }
    for name, expected in pairs.items():
        np.testing.assert_allclose(
            numpy_grads[name], np.asarray(expected[...]), rtol=1e-4, atol=1e-6
        )


def test_recording_counts_one_trace():
    layer = AutoencoderLayer(
        6, 3, activation="sigmoid", batch_norm=False, tied=True, rngs=nnx.Rngs(0)
    )
    x = np.random.default_rng(0).uniform(size=(10, 6)).astype(np.float32)
    with recording() as (trainers, rows, log):
        trainer = PhaseTrainer(
            layer,
            layer_loss_fn(autoencoder_config(), "cross_entropy"),
            optax.adam(1e-3),
            rng=jax.random.key(0),
            batch_size=4,
            name="tiny",
        )
        fit(trainer, {"x": x}, epochs=2, progress=False)
    assert len(trainers) == 1
    recorded, traces_before = trainers[0]
    assert recorded is trainer
    # 10 rows at batch 4 pad the last batch, and still one trace serves both epochs.
    assert trainer.trace_count - traces_before == 1
    assert rows[id(trainer)] == 10
    step_seconds, _, step_compiles, _ = log.split()
    assert step_compiles == 1
    assert step_seconds > 0


def test_main_rejects_unknown_section():
    with pytest.raises(SystemExit):
        benchmarks_main.main(["--only", "nonexistent"])


@pytest.mark.parametrize("case", ["conv", "dense"])
def test_pinned_worker_prints_rate(case, capsys, monkeypatch):
    # The worker pins itself to the cores it already has, and the "go" line
    # that the parent process would send comes from a fake stdin.
    monkeypatch.setattr("sys.stdin", io.StringIO("go\n"))
    pinned.worker(case, steps=2, seconds=0.0, cores=os.sched_getaffinity(0))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "ready"
    rate = json.loads(lines[-1])["steps_per_second"]
    assert np.isfinite(rate)
    assert rate > 0


def test_pinned_conv_matches_grid_encoder():
    trainer, data = pinned.build_trainer("conv", steps=1)
    encoder = trainer.model().encoder
    assert [layer.features for layer in encoder.layers] == [32, 64, 128]
    assert [layer.kernel_size for layer in encoder.layers] == [5, 5, 5]
    assert data["x"].shape == (pinned.BATCH, 28, 28, 1)
    assert not trainer.scan
