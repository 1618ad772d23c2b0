"""RBM gradients, persistent chains, free energy, log Z, exports and the dbn method."""

import itertools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from pretrain import ais, dbn, rbm
from pretrain import config as config_lib
from pretrain.data import DatasetError
from pretrain.methods import PretrainContext
from pretrain.run import default_config
from pretrain.train import PhaseTrainer


def rbm_settings(**changes) -> ml_collections.ConfigDict:
    config = default_config("rbm")
    config.update(changes)
    return config


def random_rbm(visible, hidden, *, scale=0.5, seed=0, chains=0, **kwargs) -> rbm.RBM:
    model = rbm.RBM(visible, hidden, chains=chains, rngs=nnx.Rngs(seed), **kwargs)
    keys = jax.random.split(jax.random.key(seed + 1), 3)
    model.kernel[...] = scale * jax.random.normal(keys[0], (visible, hidden))
    model.visible_bias[...] = 0.5 * jax.random.normal(keys[1], (visible,))
    model.hidden_bias[...] = 0.5 * jax.random.normal(keys[2], (hidden,))
    return model


def binary_rows(n, visible, seed=0) -> jnp.ndarray:
    rows = np.random.default_rng(seed).random((n, visible)) < 0.5
    return jnp.asarray(rows.astype(np.float32))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_cd_gradient(weights, v_data, v_neg, data_weight, neg_weight):
    """-(<v h>_data - <v h>_model) and the bias terms, with h = p(h | v)."""
    kernel, b, c = (np.asarray(a, np.float64) for a in weights[:3])
    v_data, v_neg = np.asarray(v_data, np.float64), np.asarray(v_neg, np.float64)
    h_data, h_neg = sigmoid(v_data @ kernel + c), sigmoid(v_neg @ kernel + c)
    wd, wn = data_weight / data_weight.sum(), neg_weight / neg_weight.sum()
    return {
        "kernel": -(
            (v_data * wd[:, None]).T @ h_data - (v_neg * wn[:, None]).T @ h_neg
        ),
        "visible_bias": -(wd @ v_data - wn @ v_neg),
        "hidden_bias": -(wd @ h_data - wn @ h_neg),
    }


def loss_gradients(model, config, batch, rng):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss_fn = rbm.rbm_loss_fn(config)

    def loss_of(params):
        merged = nnx.merge(graphdef, params, rest, copy=True)
        return loss_fn(merged, batch, rng)[0]

    grads = jax.grad(loss_of)(params)
    return {
        key: np.asarray(grads[key][...])
        for key in ("kernel", "visible_bias", "hidden_bias")
    }


@pytest.mark.parametrize(
    "persistent, cd_k", [(False, 1), (False, 3), (True, 1), (True, 2)]
)
def test_loss_gradient_matches_numpy(persistent, cd_k):
    config = rbm_settings(persistent=persistent, cd_k=cd_k, sample_visible=True)
    model = random_rbm(5, 3, chains=4 if persistent else 0)
    if persistent:
        model.chains[...] = binary_rows(4, 3, seed=7)
    v_data = binary_rows(4, 5)
    weight = jnp.array([1.0, 1.0, 1.0, 0.0])  # the last row is padding
    rng = jax.random.key(3)

    grads = loss_gradients(model, config, {"x": v_data, "weight": weight}, rng)

    negative_key, _ = rbm.step_keys(rng)
    chains = model.chains[...] if persistent else None
    v_neg = rbm.negative_samples(model.weights(), v_data, chains, negative_key, config)
    neg_weight = np.ones(4) if persistent else np.asarray(weight)
    expected = numpy_cd_gradient(
        model.weights(), v_data, v_neg, np.asarray(weight), neg_weight
    )
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-4, atol=1e-6, err_msg=key)


def test_cd_reconstruction_from_binary_hidden():
    # Guide section 3.1: hidden units driven by data are sampled to binary
    # states, so every mean-field reconstruction is E[v | h] of a binary h.
    config = rbm_settings(cd_k=1, sample_visible=False)
    model = random_rbm(4, 2, scale=2.0)
    weights = model.weights()
    v_neg = rbm.negative_samples(
        weights, binary_rows(64, 4), None, jax.random.key(0), config
    )
    states = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=2)))
    means = np.asarray(rbm.visible_mean(weights, states))
    distances = np.abs(np.asarray(v_neg)[:, None, :] - means[None]).max(-1).min(-1)
    assert distances.max() < 1e-6


def pcd_trainer(model, config, seed=0):
    return PhaseTrainer(
        model,
        rbm.rbm_loss_fn(config),
        optax.sgd(config.learning_rate),
        rng=jax.random.key(seed),
        batch_size=config.batch_size,
    )


def chains_of(trainer) -> np.ndarray:
    return np.asarray(trainer.state.rest["chains"][...])


def test_pcd_chain_continues_from_last_step():
    config = rbm_settings(persistent=True, batch_size=8, sample_visible=True)
    model = random_rbm(6, 5, chains=8)
    data = {"x": np.asarray(binary_rows(8, 6))}  # one step per epoch
    trainer = pcd_trainer(model, config)
    trainer.run_epoch(data)
    chains_1 = chains_of(trainer)
    weights_1 = jax.tree.map(jnp.copy, trainer.model().weights())
    rng_2 = jax.random.fold_in(trainer.state.rng, trainer.state.step)
    trainer.run_epoch(data)

    negative_key, chain_key = rbm.step_keys(rng_2)
    v_neg = rbm.negative_samples(
        weights_1, None, jnp.asarray(chains_1), negative_key, config
    )
    expected = rbm.sample_hidden(rbm.hidden_probabilities(weights_1, v_neg), chain_key)
    assert chains_1.any()
    np.testing.assert_array_equal(chains_of(trainer), np.asarray(expected))


def test_pcd_chains_survive_orbax_round_trip(tmp_path):
    config = rbm_settings(persistent=True, batch_size=8, sample_visible=True)
    data = {"x": np.asarray(binary_rows(16, 6))}
    trainer = pcd_trainer(random_rbm(6, 5, chains=8), config)
    trainer.run_epoch(data)

    path = str(tmp_path / "rest")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, nnx.to_pure_dict(trainer.state.rest))
    checkpointer.wait_until_finished()
    saved = jax.tree.map(np.asarray, nnx.to_pure_dict(trainer.state.rest))
    restored_dict = checkpointer.restore(path, saved)
    restored = jax.tree.map(jnp.copy, trainer.state.rest)
    nnx.replace_by_pure_dict(restored, restored_dict)

    resumed = pcd_trainer(random_rbm(6, 5, chains=8), config)
    resumed.state = jax.tree.map(jnp.copy, trainer.state).replace(rest=restored)
    resumed.epochs_done = trainer.epochs_done
    np.testing.assert_array_equal(chains_of(resumed), chains_of(trainer))
    trainer.run_epoch(data)
    resumed.run_epoch(data)
    np.testing.assert_array_equal(chains_of(resumed), chains_of(trainer))
    np.testing.assert_array_equal(
        np.asarray(resumed.state.params["kernel"][...]),
        np.asarray(trainer.state.params["kernel"][...]),
    )


@pytest.mark.parametrize("gaussian", [False, True])
def test_free_energy_finite_at_large_pre_activation(gaussian):
    model = rbm.RBM(3, 2, gaussian=gaussian, rngs=nnx.Rngs(0))
    model.kernel[...] = jnp.zeros((3, 2))
    model.visible_bias[...] = jnp.zeros(3)
    model.hidden_bias[...] = jnp.array([1000.0, 0.0])
    energy = rbm.free_energy(model.weights(), jnp.zeros((1, 3)))
    assert np.isfinite(energy).all()
    assert float(energy[0]) == pytest.approx(-1000.0 - np.log(2.0), rel=1e-6)


def brute_force_log_z(kernel, b, c):
    visible, hidden = kernel.shape
    terms = []
    for v in itertools.product([0, 1], repeat=visible):
        for h in itertools.product([0, 1], repeat=hidden):
            v_, h_ = np.array(v, float), np.array(h, float)
            terms.append(v_ @ b + h_ @ c + v_ @ kernel @ h_)
    return np.logaddexp.reduce(terms)


def test_exact_log_z_matches_brute_force():
    weights = random_rbm(4, 3, scale=1.0).weights()
    arrays = [np.asarray(a, np.float64) for a in weights[:3]]
    expected = brute_force_log_z(*arrays)
    assert ais.exact_log_partition(*arrays) == pytest.approx(expected, abs=1e-4)


def test_exact_log_z_either_layer():
    kernel, b, c = (np.asarray(a) for a in random_rbm(12, 10).weights()[:3])
    by_hidden = ais.exact_log_partition(kernel, b, c)
    by_visible = ais.exact_log_partition(kernel.T, c, b)  # 10 visible < 12 hidden
    assert by_hidden == pytest.approx(by_visible, abs=1e-3)


def test_gaussian_exact_log_z_matches_quadrature():
    kernel = np.array([[0.8, -0.5]])
    b, c, variance = np.array([0.3]), np.array([0.2, -0.1]), np.array([0.5])
    grid = np.linspace(-12, 12, 200_001)
    terms = 0.0
    for h in itertools.product([0, 1], repeat=2):
        h = np.array(h, float)
        energy = (grid - b[0]) ** 2 / (2 * variance[0]) - c @ h
        energy -= grid / variance[0] * (kernel[0] @ h)
        terms = terms + np.exp(-energy)
    expected = np.log(np.sum(terms) * (grid[1] - grid[0]))
    assert ais.exact_log_partition(kernel, b, c, variance) == pytest.approx(
        expected, abs=1e-4
    )


def test_ais_matches_exact_log_likelihood():
    model = random_rbm(12, 10, scale=1.0)
    kernel, b, c = (np.asarray(a) for a in model.weights()[:3])
    data = np.asarray(binary_rows(200, 12, seed=5))
    exact = ais.exact_log_partition(kernel, b, c)
    estimate, log_weights = ais.ais_log_partition(
        kernel,
        b,
        c,
        ais.base_rate_bias(data),
        jax.random.key(0),
        chains=100,
        temperatures=1000,
    )
    energy = float(jnp.mean(rbm.free_energy(model.weights(), jnp.asarray(data))))
    exact_likelihood, estimated_likelihood = -energy - exact, -energy - estimate
    assert log_weights.shape == (100,)
    # log Z is biased low on average, so only a small excess is allowed.
    assert estimate <= exact + 0.05
    assert abs(estimate - exact) < 0.1
    assert abs(estimated_likelihood - exact_likelihood) < 0.1


def test_export_folds_learned_variance():
    model = random_rbm(5, 4, gaussian=True, learn_variance=True)
    model.raw_variance[...] = jnp.linspace(-2.0, 2.0, 5)
    encoder, spec = dbn.export_encoder([model], (5,))
    x = jax.random.normal(jax.random.key(0), (3, 5))
    expected = rbm.hidden_probabilities(model.weights(), x)
    assert spec["layers"][0]["activation"] == "sigmoid"
    assert float(jnp.min(model.weights().variance)) > model.min_variance
    np.testing.assert_allclose(encoder(x), expected, rtol=1e-5)


def test_momentum_switches_at_epoch():
    config = rbm_settings(
        momentum_initial=0.5, momentum_final=0.9, momentum_switch_epoch=2
    )
    tx = rbm.rbm_optimizer(config, steps_per_epoch=3)
    params = {"kernel": jnp.ones(2), "hidden_bias": jnp.ones(2)}
    state = tx.init(params)
    momenta = []
    for _ in range(8):
        _, state = tx.update(params, state, params)
        momenta.append(float(state[1].hyperparams["momentum"]))
    # Two epochs of three steps at 0.5, then 0.9.
    assert momenta == pytest.approx([0.5] * 6 + [0.9] * 2)


def test_weight_decay_spares_biases():
    config = rbm_settings(weight_decay=0.1, momentum_initial=0.0, learning_rate=1.0)
    tx = rbm.rbm_optimizer(config, steps_per_epoch=1)
    params = {"kernel": jnp.ones(2), "hidden_bias": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.1)
    np.testing.assert_array_equal(updates["hidden_bias"], 0.0)


def test_plain_sgd_when_momentum_and_decay_are_off():
    config = rbm_settings(
        weight_decay=0.0, momentum_initial=0.0, momentum_final=0.0, learning_rate=0.5
    )
    tx = rbm.rbm_optimizer(config, steps_per_epoch=1)
    params = {"kernel": jnp.ones(2), "hidden_bias": jnp.ones(2)}
    grads = {"kernel": jnp.array([1.0, -2.0]), "hidden_bias": jnp.array([4.0, 0.0])}
    state = tx.init(params)
    for _ in range(2):  # no velocity carries over from the first step
        updates, state = tx.update(grads, state, params)
        np.testing.assert_allclose(updates["kernel"], [-0.5, 1.0])
        np.testing.assert_allclose(updates["hidden_bias"], [-2.0, 0.0])


def test_bernoulli_input_out_of_range(tmp_path):
    config = rbm_settings(epochs=1)
    context = PretrainContext(
        config=config,
        x=np.linspace(0.0, 2.0, 20 * 4, dtype=np.float32).reshape(20, 2, 2, 1),
        unit_range=False,
        rng=jax.random.key(0),
        writer=None,
        workdir=str(tmp_path),
    )
    with pytest.raises(DatasetError) as error:
        dbn.pretrain_rbm_stack(context)
    assert "[0, 2]" in str(error.value)
    assert "--config.scaling=minmax" in str(error.value)
    assert "--config.visible=gaussian" in str(error.value)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"scaling": "standard"}, "scaling"),
        ({"visible": "gaussian"}, "scaling"),
        ({"learn_variance": True}, "learn_variance"),
        ({"hidden": (8, 4)}, "hidden"),
        ({"cd_k": 0}, "cd_k"),
        ({"momentum_final": 1.0}, "momentum_final"),
        ({"dbn_propagate": "means"}, "dbn_propagate"),
        ({"ais_temperatures": 1}, "ais_temperatures"),
    ],
)
def test_rbm_config_rejected(changes, key):
    config = rbm_settings(**changes)
    with pytest.raises(config_lib.ConfigError, match=key):
        dbn.check_rbm_config(config)


def test_gaussian_rbm_monitors():
    config = rbm_settings(
        visible="gaussian",
        learn_variance=True,
        scaling="standard",
        epochs=2,
        batch_size=16,
        learning_rate=0.005,
        ais_every=1,
    )
    x = np.random.default_rng(0).standard_normal((80, 6)).astype(np.float32)
    history = []

    class Writer:
        def write(self, phase, step, metrics):
            history.append(dict(metrics))

    model = dbn.train_rbm(
        x[:64], x[64:], 5, config, jax.random.key(0), gaussian=True, writer=Writer()
    )
    last = history[-1]
    # 5 hidden units: the monitors enumerate them for the exact log Z, and
    # AIS and the pseudo-likelihood are for Bernoulli units only.
    assert np.isfinite(last["exact_heldout_log_likelihood"])
    assert np.isfinite(last["free_energy_gap"])
    assert "ais_log_z" not in last
    assert "pseudo_likelihood" not in last
    assert float(jnp.min(model.weights().variance)) > config.min_variance


@pytest.mark.slow
def test_dbn_pretrain_and_finetune(data_dir, tmp_path):
    import finetune.run
    from pretrain.export import load_encoder
    from pretrain.run import run

    overrides = {
        "hidden": (32, 16),
        "epochs": 2,
        "ais_every": 1,
        "ais_temperatures": 100,
        "data_dir": data_dir,
    }
    config = config_lib.build_config(lambda: default_config("dbn"), overrides=overrides)
    workdir = tmp_path / "dbn"
    export = run("dbn", config, str(workdir))
    for name in ("filters.png", "samples.png", "reconstructions.png"):
        assert os.path.isfile(workdir / name), name
    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [r["phase"] for r in records] == ["layer0", "layer0", "layer1", "layer1"]
    for key in (
        "reconstruction_mse",
        "pseudo_likelihood",
        "free_energy_gap",
        "ais_log_z",
    ):
        assert np.isfinite(records[-1][key]), key
    assert "exact_log_z" in records[-1]  # 16 hidden units are enumerable
    loaded = load_encoder(export)
    assert [layer.linear.out_features for layer in loaded.module.layers] == [32, 16]

    finetune_config = config_lib.build_config(
        finetune.run.default_config,
        overrides={
            "encoder": export,
            "labels": "50",
            "epochs_head": 3,
            "epochs_finetune": 2,
            "data_dir": data_dir,
        },
    )
    metrics = finetune.run.run(finetune_config, str(tmp_path / "finetune"))
    assert [s["stage"] for s in metrics["stages"]] == [
        "head",
        "unfreeze_1",
        "unfreeze_2",
    ]
    assert metrics["method"] == "dbn"
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
