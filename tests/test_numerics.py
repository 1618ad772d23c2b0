"""The softplus that the free energies and the cross-entropy use."""

import jax
import jax.numpy as jnp
import numpy as np

from pretrain.numerics import softplus

X = jnp.array([-1000.0, -30.0, -3.0, -1e-4, 0.0, 1e-4, 2.5, 30.0, 1000.0])


def test_softplus_matches_jax():
    np.testing.assert_allclose(softplus(X), jax.nn.softplus(X), rtol=1e-6, atol=1e-30)


def test_softplus_finite_at_extremes():
    assert float(softplus(jnp.float32(1000.0))) == 1000.0
    assert float(softplus(jnp.float32(-1000.0))) == 0.0


def test_softplus_gradient_is_sigmoid():
    grad = jax.vmap(jax.grad(softplus))(X)
    np.testing.assert_allclose(grad, jax.nn.sigmoid(X), rtol=1e-6)
    assert np.all(np.isfinite(grad))


def test_softplus_second_derivative():
    second = jax.vmap(jax.grad(jax.grad(softplus)))(X)
    sigmoid = jax.nn.sigmoid(X)
    np.testing.assert_allclose(second, sigmoid * (1 - sigmoid), rtol=1e-5, atol=1e-30)
