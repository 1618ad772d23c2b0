"""Autoencoder layers, penalties and layer-wise pretraining on digits."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from pretrain.autoencoder import (
    AutoencoderLayer,
    DeepAutoencoder,
    contractive_penalty,
    corrupt,
    reconstruction_error,
    sparsity_penalty,
)
from pretrain.encoders import DenseEncoder, dense_spec


def count_params(module):
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def make_layer(tied=True, activation="sigmoid", in_features=784, features=128):
    return AutoencoderLayer(
        in_features,
        features,
        activation=activation,
        batch_norm=False,
        tied=tied,
        rngs=nnx.Rngs(0),
    )


def test_tied_layer_param_count():
    assert count_params(make_layer(tied=True)) == 101_264


def test_untied_layer_param_count():
    assert count_params(make_layer(tied=False)) == 201_616


def test_tied_decoder_uses_encoder_kernel():
    layer = make_layer(in_features=6, features=3)
    code = jnp.ones((1, 3))
    kernel = layer.encoder.linear.kernel[...]
    np.testing.assert_allclose(layer.decode(code), code @ kernel.T, rtol=1e-6)


def test_masking_noise_rate():
    x = jnp.ones((200, 100))
    noisy = corrupt(x, jax.random.key(0), "mask", 0.3)
    assert abs(float(jnp.mean(noisy == 0.0)) - 0.3) < 0.02


def test_gaussian_noise_std():
    x = jnp.zeros((200, 100))
    noisy = corrupt(x, jax.random.key(0), "gaussian", 0.5)
    assert abs(float(jnp.std(noisy)) - 0.5) < 0.02


def test_corruption_fresh_per_key():
    x = jnp.ones((10, 50))
    first = corrupt(x, jax.random.key(0), "mask", 0.5)
    second = corrupt(x, jax.random.key(1), "mask", 0.5)
    assert not np.array_equal(first, second)


def test_no_noise_is_identity():
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(corrupt(x, jax.random.key(0), "none", 0.5), x)


def test_sparsity_penalty_zero_at_target():
    code = jnp.full((4, 5), 0.05)
    assert float(sparsity_penalty(code, jnp.ones(4), 0.05)) == pytest.approx(
        0, abs=1e-6
    )


def test_sparsity_penalty_ignores_padding():
    code = jnp.concatenate([jnp.full((4, 5), 0.05), jnp.full((4, 5), 0.9)])
    weight = jnp.array([1.0] * 4 + [0.0] * 4)
    assert float(sparsity_penalty(code, weight, 0.05)) == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_contractive_penalty_matches_jacobian(activation):
    layer = make_layer(activation=activation, in_features=7, features=5)
    x = jax.random.uniform(jax.random.key(1), (3, 7))
    pre = layer.encoder.pre_activation(x)
    code = layer.encoder(x)
    penalty = contractive_penalty(layer.encoder, pre, code)

    def encode(row):
        return layer.encoder(row[None])[0]

    jacobians = jax.vmap(jax.jacfwd(encode))(x)
    expected = jnp.sum(jnp.square(jacobians), axis=(1, 2))
    np.testing.assert_allclose(penalty, expected, rtol=1e-5)


def test_deep_autoencoder_reconstruction_shape():
    spec = dense_spec((4, 4, 1), [8, 3])
    encoder = DenseEncoder((4, 4, 1), spec["layers"], rngs=nnx.Rngs(0))
    model = DeepAutoencoder(encoder, tied=True, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 4, 4, 1))
    assert model.decode(model.encoder(x)).shape == (2, 16)


def test_cross_entropy_matches_optax():
    logits = jnp.array([[-1000.0, -3.0, 0.0, 2.5, 1000.0]])
    target = jnp.array([[0.0, 0.2, 0.5, 1.0, 0.7]])
    expected = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, target), -1)
    got = reconstruction_error(logits, target, "cross_entropy")
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
