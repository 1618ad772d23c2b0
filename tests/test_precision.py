"""Mixed precision of the transformer and conv encoders: the spec's `dtype`
sets the compute dtype, params stay float32, the pooled output is float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pretrain.conv import conv_spec
from pretrain.data import fit_scaler
from pretrain.encoders import SpecError, build_encoder
from pretrain.export import load_encoder, save_encoder
from pretrain.transformer import transformer_spec


def transformer(dtype: str) -> dict:
    return transformer_spec(
        "image", (8, 8, 1), patch_size=2, width=16, depth=1, heads=2, dtype=dtype
    )


def conv(dtype: str) -> dict:
    return conv_spec((8, 8, 1), [4, 8], batch_norm=True, dtype=dtype)


def inputs() -> jax.Array:
    return jnp.asarray(np.random.default_rng(0).uniform(size=(3, 8, 8, 1)), jnp.float32)


def param_dtypes(module: nnx.Module) -> set:
    return {leaf.dtype for leaf in jax.tree.leaves(nnx.state(module, nnx.Param))}


def hidden_activations(module: nnx.Module, x: jax.Array) -> jax.Array:
    if hasattr(module, "feature_maps"):
        return module.feature_maps(x)
    return module.encode(module.embed_inputs(x))


@pytest.mark.parametrize("make_spec", [transformer, conv])
def test_bfloat16_encoder_dtypes(make_spec):
    encoder = build_encoder(make_spec("bfloat16"), rngs=nnx.Rngs(0))
    x = inputs()
    assert hidden_activations(encoder, x).dtype == jnp.bfloat16
    assert encoder(x).dtype == jnp.float32
    assert encoder(x, train=True).dtype == jnp.float32
    assert param_dtypes(encoder) == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("make_spec", [transformer, conv])
def test_bfloat16_output_near_float32(make_spec):
    # The same params computed in bfloat16 stay close to the float32 output
    # (bfloat16 has 8 significant bits, about 2 to 3 decimal digits).
    wide = build_encoder(make_spec("float32"), rngs=nnx.Rngs(0))
    narrow = build_encoder(make_spec("bfloat16"), rngs=nnx.Rngs(0))
    x = inputs()
    expected = np.asarray(wide(x))
    actual = np.asarray(narrow(x))
    assert not np.array_equal(actual, expected)
    np.testing.assert_allclose(actual, expected, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("make_spec", [transformer, conv])
def test_spec_without_dtype_float32(make_spec):
    spec = make_spec("float32")
    del spec["dtype"]
    encoder = build_encoder(spec, rngs=nnx.Rngs(0))
    assert hidden_activations(encoder, inputs()).dtype == jnp.float32
    assert param_dtypes(encoder) == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("make_spec", [transformer, conv])
def test_spec_invalid_dtype(make_spec):
    spec = make_spec("float32")
    spec["dtype"] = "float16"
    with pytest.raises(SpecError, match="dtype"):
        build_encoder(spec, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("make_spec", [transformer, conv])
def test_export_keeps_dtype(make_spec, tmp_path):
    spec = make_spec("bfloat16")
    encoder = build_encoder(spec, rngs=nnx.Rngs(0))
    x = inputs()
    save_encoder(
        str(tmp_path / "encoder"),
        encoder,
        spec=spec,
        scaler=fit_scaler(np.asarray(x), "minmax"),
        method="test",
        config={},
        seed=0,
        provenance={},
    )
    loaded = load_encoder(str(tmp_path / "encoder"))
    assert loaded.spec["dtype"] == "bfloat16"
    assert hidden_activations(loaded.module, x).dtype == jnp.bfloat16
    assert param_dtypes(loaded.module) == {jnp.dtype(jnp.float32)}
    np.testing.assert_array_equal(np.asarray(loaded.module(x)), np.asarray(encoder(x)))


def test_mae_config_dtype_reaches_spec():
    from pretrain.mae import mae_spec
    from pretrain.run import default_config

    config = default_config("mae")
    config.dtype = "bfloat16"

    assert mae_spec(config, (8, 8, 1))["dtype"] == "bfloat16"


def test_mae_config_rejects_float16():
    from pretrain.config import ConfigError
    from pretrain.methods import get_method
    from pretrain.run import default_config

    config = default_config("mae")
    config.dtype = "float16"

    with pytest.raises(ConfigError, match="dtype"):
        get_method("mae").check_config(config)


def test_conv_config_dtype_reaches_spec():
    from pretrain.conv_autoencoder import encoder_spec
    from pretrain.run import default_config

    config = default_config("conv_ae")
    config.dtype = "bfloat16"

    assert encoder_spec((8, 8, 1), config)["dtype"] == "bfloat16"


def test_conv_config_rejects_float16():
    from pretrain.config import ConfigError
    from pretrain.methods import get_method
    from pretrain.run import default_config

    config = default_config("conv_ae")
    config.dtype = "float16"

    with pytest.raises(ConfigError, match="dtype"):
        get_method("conv_ae").check_config(config)
