"""The shared training loop: fixed-shape batches, one compile, determinism."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from pretrain.autoencoder import AutoencoderLayer, autoencoder_config, layer_loss_fn
from pretrain.train import (
    NonFiniteLossError,
    PhaseTrainer,
    epoch_batches,
    fit,
    weighted_mean,
)


def make_trainer(features=8, *, seed=0, scan=True, batch_size=256, lr=1e-3):
    layer = AutoencoderLayer(
        16,
        features,
        activation="sigmoid",
        batch_norm=False,
        tied=True,
        rngs=nnx.Rngs(seed),
    )
    config = autoencoder_config(noise="mask", noise_level=0.2)
    return PhaseTrainer(
        layer,
        layer_loss_fn(config, "cross_entropy"),
        optax.adam(lr),
        rng=jax.random.key(seed),
        batch_size=batch_size,
        scan=scan,
    )


def unit_data(n, seed=0):
    return {"x": np.random.default_rng(seed).uniform(size=(n, 16)).astype(np.float32)}


@pytest.mark.parametrize("scan", [True, False])
def test_step_compiles_once(scan):
    trainer = make_trainer(scan=scan)
    fit(trainer, unit_data(10_000), epochs=2, progress=False)
    assert trainer.trace_count == 1
    assert int(trainer.state.step) == 2 * 40  # ceil(10000 / 256) per epoch


def test_epoch_batches_pad_last_batch():
    indices, weight = epoch_batches(256 * 3 + 16, 256, jax.random.key(0), False)
    assert indices.shape == (4, 256)
    assert weight[:3].sum() == 3 * 256
    assert weight[3].sum() == 16
    assert sorted(indices[weight > 0].tolist()) == list(range(256 * 3 + 16))


def test_epoch_batches_drop_remainder():
    indices, weight = epoch_batches(256 * 3 + 16, 256, jax.random.key(0), True)
    assert indices.shape == (3, 256)
    assert weight.min() == 1.0


def test_padded_batch_loss_ignores_padding():
    config = autoencoder_config()
    loss_fn = layer_loss_fn(config, "squared_error")
    layer = AutoencoderLayer(
        16, 8, activation="sigmoid", batch_norm=False, tied=True, rngs=nnx.Rngs(0)
    )
    real = unit_data(16)["x"]
    rng = jax.random.key(1)
    expected, _ = loss_fn(layer, {"x": real, "weight": np.ones(16, np.float32)}, rng)

    for filler in (0.0, 1e4, np.inf):
        padded = np.full((256, 16), filler, np.float32)
        padded[:16] = real
        weight = np.zeros(256, np.float32)
        weight[:16] = 1.0
        loss, _ = loss_fn(layer, {"x": padded, "weight": weight}, rng)
        np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_weighted_mean_of_real_rows():
    values = jnp.array([1.0, 3.0, 1e9, jnp.inf])
    weight = jnp.array([1.0, 1.0, 0.0, 0.0])
    assert float(weighted_mean(values, weight)) == 2.0


def test_same_seed_same_bits():
    first, second = make_trainer(seed=3), make_trainer(seed=3)
    data = unit_data(1000)
    fit(first, data, epochs=2, progress=False)
    fit(second, data, epochs=2, progress=False)
    for a, b in zip(
        jax.tree.leaves(first.state.params),
        jax.tree.leaves(second.state.params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_different_seed_differs():
    first, second = make_trainer(seed=3), make_trainer(seed=4)
    data = unit_data(1000)
    fit(first, data, epochs=1, progress=False)
    fit(second, data, epochs=1, progress=False)
    kernel_a = first.state.params["encoder"]["linear"]["kernel"][...]
    kernel_b = second.state.params["encoder"]["linear"]["kernel"][...]
    assert not np.array_equal(kernel_a, kernel_b)


def test_scan_matches_step_loop():
    scanned, looped = make_trainer(scan=True), make_trainer(scan=False)
    data = unit_data(600)
    fit(scanned, data, epochs=2, progress=False)
    fit(looped, data, epochs=2, progress=False)
    for a, b in zip(
        jax.tree.leaves(scanned.state.params),
        jax.tree.leaves(looped.state.params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_loss_decreases():
    trainer = make_trainer(batch_size=32, lr=1e-2)
    history = fit(trainer, unit_data(512), epochs=5, progress=False)
    assert history[-1]["reconstruction"] < history[0]["reconstruction"]


def test_nonfinite_loss_names_phase():
    trainer = make_trainer(batch_size=64)
    data = unit_data(128)
    data["x"][0, 0] = np.nan
    with pytest.raises(NonFiniteLossError) as error:
        fit(trainer, data, epochs=1, progress=False)
    assert "train, epoch 1, step 2" in str(error.value)
    assert "last good checkpoint: none" in str(error.value)


def test_caller_model_survives_donation():
    layer = AutoencoderLayer(
        16, 8, activation="sigmoid", batch_norm=False, tied=True, rngs=nnx.Rngs(0)
    )
    before = np.asarray(layer.encoder.linear.kernel[...]).copy()
    trainer = PhaseTrainer(
        layer,
        layer_loss_fn(ml_collections.ConfigDict(autoencoder_config()), "squared_error"),
        optax.sgd(0.1),
        rng=jax.random.key(0),
        batch_size=32,
    )
    fit(trainer, unit_data(64), epochs=1, progress=False)
    np.testing.assert_array_equal(layer.encoder.linear.kernel[...], before)


@pytest.mark.parametrize("impl", ["threefry2x32", "philox4x32"])
def test_step_keys_keep_the_prng_implementation(impl):
    seen = []

    def loss_fn(model, batch, rng):
        seen.append(str(jax.random.key_impl(rng)))
        x = batch["x"]
        error = jnp.square(model.decode(model.encoder(x)) - x)
        loss = weighted_mean(jnp.mean(error, -1), batch["weight"])
        return loss, {"draw": jax.random.uniform(rng)}

    layer = AutoencoderLayer(
        16, 8, activation="sigmoid", batch_norm=False, tied=True, rngs=nnx.Rngs(0)
    )
    trainer = PhaseTrainer(
        layer, loss_fn, optax.sgd(0.1), rng=jax.random.key(0, impl=impl), batch_size=8
    )
    trainer.run_epoch(unit_data(16))
    trainer.run_epoch(unit_data(16))

    assert seen == [impl]  # traced once, with a key of the given kind
