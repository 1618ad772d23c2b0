"""Staged fine-tuning: freezing masks, frozen batch norm and stage schedules."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from finetune import freezing
from finetune.augment import augment
from finetune.run import (
    build_model,
    classifier_loss_fn,
    default_config,
    prepare_data,
)
from finetune.stages import Stage, schedule, stage_rules
from pretrain.export import load_encoder
from pretrain.train import PhaseTrainer, fit


def test_adamw_leaves_frozen_param_exact():
    params = {"enc": jnp.array(1.0), "head": jnp.array(1.0)}
    labels = {"enc": "freeze", "head": "train"}
    tx = freezing.masked_optimizer(labels, learning_rate=0.1, weight_decay=0.1)
    opt_state = tx.init(params)
    for _ in range(5):
        grads = {"enc": jnp.array(0.0), "head": jnp.array(0.5)}
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    assert float(params["enc"]) == 1.0
    assert float(params["head"]) != 1.0


def test_unmatched_param_rejected():
    params = {"encoder": {"w": jnp.zeros(2)}, "extra": {"w": jnp.zeros(2)}}
    with pytest.raises(ValueError, match="extra.w"):
        freezing.label_params(params, [(r"^encoder\.", "train")])


def test_first_matching_rule_decides():
    params = {"encoder": {"bn": {"scale": jnp.ones(2)}, "w": jnp.zeros(2)}}
    rules = [(r"\.bn\.", "freeze"), (r"^encoder\.", "train")]
    labels = freezing.label_params(params, rules)
    assert labels["encoder"]["bn"]["scale"] == "freeze"
    assert labels["encoder"]["w"] == "train"


def finetune_config(**changes):
    config = default_config()
    config.update(changes)
    return config


def test_gradual_schedule_top_down():
    config = finetune_config()
    stages = schedule("gradual", 3, config)
    assert [s.trainable_layers for s in stages] == [(), (2,), (2, 1), (2, 1, 0)]
    assert stages[0].learning_rate == config.lr_head
    assert all(s.learning_rate == config.lr_finetune for s in stages[1:])


def test_presets_stage_names():
    config = finetune_config()
    assert [s.name for s in schedule("linear_probe", 2, config)] == ["head"]
    assert [s.name for s in schedule("full", 2, config)] == ["head", "full"]
    scratch = schedule("scratch", 2, config)
    assert len(scratch) == 1
    assert scratch[0].train_batch_norm
    assert scratch[0].epochs == config.epochs_head + 2 * config.epochs_finetune


def test_full_releases_batch_norm_by_option():
    stages = schedule("full", 2, finetune_config(release_batch_norm=True))
    assert stages[1].train_batch_norm
    assert not schedule("full", 2, finetune_config())[1].train_batch_norm


def make_classifier(export, preset="gradual"):
    config = finetune_config(encoder=export, preset=preset)
    loaded = load_encoder(export)
    return build_model(loaded, config, 10, jax.random.key(0)), config


def stage_trainer(model, config, stage, batch_size):
    params = nnx.state(model, nnx.Param)
    labels = freezing.label_params(params, stage_rules(stage))
    return PhaseTrainer(
        model,
        classifier_loss_fn(config),
        freezing.masked_optimizer(labels, stage.learning_rate, 0.1),
        rng=jax.random.key(0),
        batch_size=batch_size,
        frozen=freezing.frozen_mask(labels),
        name=stage.name,
    )


def leaves(model, variable_type):
    state = nnx.to_pure_dict(nnx.state(model, variable_type))
    return {
        ".".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_flatten_with_path(state)[0]
    }


def test_frozen_batch_norm_keeps_statistics(bn_export):
    model, config = make_classifier(bn_export)
    batch_norm = model.encoder.layers[0].batch_norm
    batch_norm.mean[...] = jnp.zeros_like(batch_norm.mean[...])
    batch_norm.momentum = 0.9
    stage = Stage("unfreeze_all", (1, 0), 1e-2, 10, train_batch_norm=False)
    trainer = stage_trainer(model, config, stage, batch_size=8)
    data = {
        "x": np.full((80, 8, 8, 1), 5.0, np.float32),
        "y": np.zeros(80, np.int32),
    }
    fit(trainer, data, epochs=1, progress=False)  # 10 batches of the constant 5
    trained = trainer.model()
    assert int(trainer.state.step) == 10
    assert np.all(trained.encoder.layers[0].batch_norm.mean[...] == 0.0)
    before, after = leaves(model, nnx.BatchStat), leaves(trained, nnx.BatchStat)
    for name in before:
        assert np.array_equal(before[name], after[name]), name
    for name in ("scale", "bias"):
        old = getattr(model.encoder.layers[1].batch_norm, name)[...]
        new = getattr(trained.encoder.layers[1].batch_norm, name)[...]
        assert np.array_equal(old, new), name


def test_scratch_trains_batch_norm(bn_export):
    model, config = make_classifier(bn_export, preset="scratch")
    stage = schedule("scratch", 2, config)[0]
    trainer = stage_trainer(model, config, stage, batch_size=8)
    data = {"x": np.full((16, 8, 8, 1), 5.0, np.float32), "y": np.zeros(16, np.int32)}
    fit(trainer, data, epochs=1, progress=False)
    mean = trainer.model().encoder.layers[0].batch_norm.mean[...]
    assert not np.all(mean == 0.0)


def test_unfrozen_layer_changes_on_first_step(ae_export, data_dir):
    model, config = make_classifier(ae_export)
    splits = prepare_data(
        finetune_config(labels="50", data_dir=data_dir),
        load_encoder(ae_export).scaler,
        (8, 8, 1),
    )
    stage = schedule("gradual", 2, config)[1]  # top layer unfrozen
    assert stage.trainable_layers == (1,)
    trainer = stage_trainer(model, config, stage, batch_size=64)
    fit(trainer, splits.train, epochs=1, progress=False)  # one step: 50 rows
    assert int(trainer.state.step) == 1
    before, after = leaves(model, nnx.Param), leaves(trainer.model(), nnx.Param)
    assert not np.array_equal(
        before["encoder.layers.1.linear.kernel"],
        after["encoder.layers.1.linear.kernel"],
    )
    for name in ("encoder.layers.0.linear.kernel", "encoder.layers.0.linear.bias"):
        assert np.array_equal(before[name], after[name]), name


def test_drop_top_removes_layers(ae_export):
    config = finetune_config(encoder=ae_export, drop_top=1)
    model = build_model(load_encoder(ae_export), config, 10, jax.random.key(0))
    assert len(model.encoder.layers) == 1
    assert model(jnp.ones((2, 8, 8, 1))).shape == (2, 10)


def test_mlp_head_layers(ae_export):
    config = finetune_config(encoder=ae_export, head_hidden=(12,))
    model = build_model(load_encoder(ae_export), config, 10, jax.random.key(0))
    assert len(model.head.layers) == 2
    assert model.head.layers[0].out_features == 12


def test_augment_identity_without_change():
    images = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1))
    out = augment(images, jax.random.key(1), shift=0, rotation=0.0, noise=0.0)
    np.testing.assert_allclose(out, images, atol=1e-6)


def test_augment_changes_images():
    images = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1))
    out = augment(images, jax.random.key(1), shift=2, rotation=15.0, noise=0.1)
    assert out.shape == images.shape
    assert not np.allclose(out, images)


def test_augment_not_used_at_evaluation(ae_export):
    config = finetune_config(encoder=ae_export, augment=True, augment_noise=1.0)
    model = build_model(load_encoder(ae_export), config, 10, jax.random.key(0))
    x = jnp.ones((2, 8, 8, 1))
    np.testing.assert_array_equal(model(x), model(x))
    loss_fn = classifier_loss_fn(ml_collections.ConfigDict(config))
    batch = {"x": x, "y": jnp.zeros(2, jnp.int32), "weight": jnp.ones(2)}
    first, _ = loss_fn(model, batch, jax.random.key(0))
    second, _ = loss_fn(model, batch, jax.random.key(1))
    assert float(first) != float(second)


def test_standardized_head_keeps_start_statistics(ae_export, data_dir, tmp_path):
    import json
    import os

    import orbax.checkpoint as ocp

    from finetune.run import run
    from pretrain.train import predict

    config = finetune_config(
        encoder=ae_export,
        labels="50",
        data_dir=data_dir,
        standardize_codes=True,
        epochs_head=2,
        epochs_finetune=1,
    )
    run(config, str(tmp_path))
    with ocp.StandardCheckpointer() as checkpointer:
        weights = checkpointer.restore(os.path.join(tmp_path, "model", "weights"))
    with open(os.path.join(tmp_path, "model", "model.json")) as f:
        assert json.load(f)["head"]["standardize"] is True

    # The statistics are those of the pretrained codes of the labelled
    # examples, unchanged by the stages that trained the encoder after.
    loaded = load_encoder(ae_export)
    splits = prepare_data(config, loaded.scaler, (8, 8, 1))
    codes = predict(loaded.module, lambda m, x: m(x), splits.train["x"])
    np.testing.assert_allclose(weights["head.code_mean"], codes.mean(0), atol=1e-6)
    expected_std = np.where(codes.std(0) > 1e-6, codes.std(0), 1.0)
    np.testing.assert_allclose(weights["head.code_std"], expected_std, rtol=1e-5)
    assert not np.array_equal(
        weights["encoder.layers.1.linear.kernel"],
        np.asarray(loaded.module.layers[1].linear.kernel[...]),
    )


def test_head_on_codes_matches_full_model(bn_export, data_dir, monkeypatch):
    from finetune import run as run_lib

    config = finetune_config(
        encoder=bn_export, labels="50", data_dir=data_dir, epochs_head=3
    )
    loaded = load_encoder(bn_export)
    splits = prepare_data(config, loaded.scaler, (8, 8, 1))
    stage = schedule("linear_probe", 2, config)[0]
    encoder_before = leaves(loaded.module, nnx.Param)

    def train_head(on_codes):
        monkeypatch.setattr(
            run_lib, "codes_fixed_in_training", lambda model, augment: on_codes
        )
        model = build_model(loaded, config, 10, jax.random.key(0))
        return run_lib.train_stage(
            model, stage, splits, config, jax.random.key(1), None, 1.0
        )

    cached, cached_result = train_head(True)
    full, full_result = train_head(False)
    assert cached_result["epochs_run"] == full_result["epochs_run"] == 3
    assert cached_result["val_accuracy"] == full_result["val_accuracy"]
    np.testing.assert_allclose(
        cached_result["val_loss"], full_result["val_loss"], rtol=1e-5
    )
    cached_params, full_params = leaves(cached, nnx.Param), leaves(full, nnx.Param)
    for name, value in full_params.items():
        if name.startswith("head."):
            np.testing.assert_allclose(cached_params[name], value, atol=1e-5)
        else:
            assert np.array_equal(cached_params[name], encoder_before[name[8:]])


def test_codes_fixed_only_when_deterministic(bn_export):
    from finetune.model import Classifier, Head, codes_fixed_in_training
    from pretrain.encoders import build_encoder, dense_spec
    from pretrain.transformer import transformer_spec

    model, _ = make_classifier(bn_export)
    assert codes_fixed_in_training(model, augment=False)
    assert not codes_fixed_in_training(model, augment=True)
    scratch, _ = make_classifier(bn_export, preset="scratch")
    assert not codes_fixed_in_training(scratch, augment=False)
    # Batch norm in training mode changes nothing in an encoder without it.
    without_bn = Classifier(
        build_encoder(dense_spec((8, 8, 1), [8]), rngs=nnx.Rngs(0)),
        Head(8, (), 10, rngs=nnx.Rngs(0)),
        encoder_batch_stats_train=True,
    )
    assert codes_fixed_in_training(without_bn, augment=False)

    for dropout, fixed in ((0.0, True), (0.1, False)):
        spec = transformer_spec(
            "image",
            (8, 8, 1),
            patch_size=4,
            width=8,
            depth=1,
            heads=2,
            dropout=dropout,
        )
        encoder = build_encoder(spec, rngs=nnx.Rngs(0))
        classifier = Classifier(encoder, model.head, encoder_batch_stats_train=False)
        assert codes_fixed_in_training(classifier, augment=False) is fixed


def test_saved_model_reloads_same_accuracy(bn_export, data_dir, tmp_path):
    import json
    import os

    from finetune.model import load_classifier
    from finetune.run import evaluate, run
    from pretrain.data import load_dataset
    from pretrain.export import ExportError

    config = finetune_config(
        encoder=bn_export,
        labels="50",
        data_dir=data_dir,
        drop_top=1,
        head_hidden=(8,),
        standardize_codes=True,
        epochs_head=2,
        epochs_finetune=1,
    )
    metrics = run(config, str(tmp_path))
    loaded = load_classifier(os.path.join(tmp_path, "model"))
    assert len(loaded.model.encoder.layers) == 1

    dataset = load_dataset("digits", data_dir=data_dir)
    test = {"x": loaded.scaler.apply(dataset.test_x), "y": dataset.test_y}
    accuracy, _ = evaluate(loaded.model, test)
    assert accuracy == metrics["test_accuracy"]
    with open(os.path.join(tmp_path, "metrics.json")) as f:
        assert json.load(f)["test_accuracy"] == accuracy

    with pytest.raises(ExportError, match="is a `finetune` workdir"):
        load_classifier(str(tmp_path))
    with open(os.path.join(tmp_path, "model", "model.json")) as f:
        metadata = json.load(f)
    with open(os.path.join(tmp_path, "model", "model.json"), "w") as f:
        json.dump({**metadata, "drop_top": 2}, f)
    with pytest.raises(ExportError, match="drop_top = 2 is invalid"):
        load_classifier(os.path.join(tmp_path, "model"))

    # A corrupted size is rejected before the model is built.
    huge = {**metadata["encoder"], "input_shape": [10**12]}
    with open(os.path.join(tmp_path, "model", "model.json"), "w") as f:
        json.dump({**metadata, "encoder": huge}, f)
    with pytest.raises(ExportError, match="do not match the model spec"):
        load_classifier(os.path.join(tmp_path, "model"))

    # The digest ties model.json to its weights.
    assert len(metadata["weights_sha256"]) == 64
    with open(os.path.join(tmp_path, "model", "model.json"), "w") as f:
        json.dump({**metadata, "weights_sha256": "0" * 64}, f)
    with pytest.raises(ExportError, match="do not match the weights_sha256"):
        load_classifier(os.path.join(tmp_path, "model"))


def test_model_without_metadata_rejected(tmp_path):
    from finetune.model import load_classifier
    from pretrain.export import ExportError

    with pytest.raises(ExportError, match="does not exist"):
        load_classifier(str(tmp_path / "missing"))
    with pytest.raises(ExportError, match="model.json.*missing"):
        load_classifier(str(tmp_path))
    (tmp_path / "model.json").write_text('{"format_version": 1}')
    with pytest.raises(ExportError, match="missing keys"):
        load_classifier(str(tmp_path))
    (tmp_path / "model.json").write_text('{"format_version": 99}')
    with pytest.raises(ExportError, match="format version 99.*upgrade"):
        load_classifier(str(tmp_path))


def test_model_loader_names_right_directory(bn_export, tmp_path):
    import json
    import os
    import shutil

    from finetune.model import load_classifier
    from pretrain.export import ExportError, load_encoder

    with pytest.raises(ExportError, match="is an encoder export.*load_encoder"):
        load_classifier(bn_export)
    with pytest.raises(ExportError, match="is a `pretrain` workdir"):
        load_encoder(os.path.dirname(bn_export))

    model = tmp_path / "model"
    model.mkdir()
    with open(model / "model.json", "w") as f:
        json.dump({"format_version": 1}, f)
    with pytest.raises(ExportError, match="is a fine-tuned model.*load_classifier"):
        load_encoder(str(model))
    shutil.rmtree(model)
