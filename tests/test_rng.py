"""The PRNG that training steps draw with (`--config.rng_impl`)."""

import jax
import numpy as np
import pytest

from pretrain.config import ConfigError
from pretrain.methods import PretrainContext
from pretrain.rng import draw_rng_impl, train_key
from pretrain.run import check_common, default_config
from pretrain.workdir import config_differences


@pytest.mark.parametrize("method", ["ae", "dae", "rbm", "mae"])
def test_unknown_rng_impl_rejected(method):
    config = default_config(method)
    config.rng_impl = "mersenne"
    with pytest.raises(ConfigError, match="rng_impl") as error:
        check_common(config)
    assert "philox4x32" in str(error.value)


@pytest.mark.parametrize("method", ["ae", "dae", "rbm", "mae", "conv_dae"])
def test_methods_default_to_philox(method):
    assert default_config(method).rng_impl == "philox4x32"


def context(impl: str) -> PretrainContext:
    config = default_config("dae")
    config.rng_impl = impl
    return PretrainContext(
        config=config,
        x=np.zeros((4, 3), np.float32),
        unit_range=True,
        rng=jax.random.key(0),
        writer=None,
        workdir="",
    )


def test_threefry_key_unchanged():
    # Runs saved before rng_impl existed drew with this key, so they keep
    # their results.
    run = context("threefry2x32")
    np.testing.assert_array_equal(
        jax.random.key_data(run.train_rng("layer0/train")),
        jax.random.key_data(run.rng_for("layer0/train")),
    )


def test_philox_keys_repeat_per_purpose():
    run = context("philox4x32")
    first = run.train_rng("layer0/train")
    assert str(jax.random.key_impl(first)) == "philox4x32"

    draws = [
        np.asarray(jax.random.uniform(key, (4,)))
        for key in (first, run.train_rng("layer0/train"), run.train_rng("layer1/train"))
    ]
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])


def test_train_key_other_impl():
    key = train_key(jax.random.key(3), "rbg")
    assert str(jax.random.key_impl(key)) == "rbg"


def test_one_device_keeps_philox():
    # The test process has one CPU device. The fallback to threefry2x32 on a
    # mesh is covered by tests/test_multiprocess_commands.py.
    assert jax.device_count() == 1
    assert draw_rng_impl("philox4x32") == "philox4x32"


def test_config_change_names_device_fallback(monkeypatch):
    saved, now = {"rng_impl": "philox4x32"}, {"rng_impl": "threefry2x32"}
    monkeypatch.setattr(jax, "device_count", lambda: 2)
    text = config_differences(saved, now)
    assert "rng_impl was 'philox4x32', now 'threefry2x32'" in text
    assert "resume on the device count the run started with" in text
    monkeypatch.setattr(jax, "device_count", lambda: 1)
    assert "device count" not in config_differences(saved, now)
