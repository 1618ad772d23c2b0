"""The conv encoder family, stacked conv autoencoders, SimMIM masking and
staged fine-tuning of conv encoders."""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from finetune import freezing
from finetune.cli import main as finetune_main
from finetune.run import build_model, classifier_loss_fn, default_config
from finetune.stages import schedule, stage_rules
from pretrain import config as config_lib
from pretrain.cli import main as pretrain_main
from pretrain.conv import (
    ConvEncoder,
    conv_spec,
    conv_stage,
    max_pool,
    stage_output_shape,
)
from pretrain.conv_autoencoder import (
    ConvAutoencoderStage,
    ConvDeepAutoencoder,
    MaskedConvModel,
    activity_penalty,
    check_patch_size,
    depth_to_space,
    draw_mask,
    masked_error,
    masked_prediction,
    masked_reconstruction,
    pretrain_conv_autoencoder,
    pretrain_simmim,
    simmim_loss_fn,
)
from pretrain.data import fit_scaler
from pretrain.encoders import SpecError, build_encoder, check_spec
from pretrain.export import load_encoder, save_encoder
from pretrain.methods import PretrainContext
from pretrain.run import default_config as pretrain_defaults
from pretrain.run import run as pretrain_run
from pretrain.train import PhaseTrainer, fit


@pytest.fixture(scope="module")
def conv_export(data_dir, tmp_path_factory):
    """A two-stage conv autoencoder with batch norm, pretrained on digits."""
    config = config_lib.build_config(
        lambda: pretrain_defaults("conv_ae"),
        overrides={
            "stages": (4, 8),
            "batch_norm": True,
            "epochs": 3,
            "data_dir": data_dir,
        },
    )
    workdir = str(tmp_path_factory.mktemp("conv_ae"))
    return pretrain_run("conv_ae", config, workdir)


def shape_of(fn, *args):
    # Shapes by abstract evaluation, so no convolution is compiled.
    return jax.eval_shape(fn, *args).shape


def read_records(export):
    with open(os.path.join(os.path.dirname(export), "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize(
    "input_shape, options, expected",
    [
        ((8, 8, 1), {"pool": "max"}, [(2, 4, 4, 4), (2, 2, 2, 6)]),
        ((7, 9, 3), {"pool": "avg"}, [(2, 4, 5, 4), (2, 2, 3, 6)]),
        ((8, 8, 1), {"pool": "none", "stride": 2}, [(2, 4, 4, 4), (2, 2, 2, 6)]),
        ((40, 1), {"pool": "max"}, [(2, 20, 4), (2, 10, 6)]),
        ((40, 2), {"pool": "none", "stride": 2}, [(2, 20, 4), (2, 10, 6)]),
    ],
)
def test_stage_output_shapes(input_shape, options, expected):
    spec = conv_spec(input_shape, [4, 6], batch_norm=True, **options)
    encoder = build_encoder(spec, rngs=nnx.Rngs(0))
    x = jnp.ones((2, *input_shape))
    positions = input_shape[:-1]
    for depth, shape in enumerate(expected, start=1):
        maps = functools.partial(encoder.feature_maps, depth=depth)
        assert shape_of(maps, x) == shape
        positions = stage_output_shape(positions, spec["stages"][depth - 1])
        assert positions == shape[1:-1]
    assert shape_of(encoder, x) == (2, 6)
    assert encoder.features == 6


def test_valid_padding_shrinks_maps():
    stage = {**conv_stage(4, pool="none"), "padding": "VALID"}
    spec = {"family": "conv", "input_shape": [8, 8, 1], "stages": [stage]}
    encoder = build_encoder(spec, rngs=nnx.Rngs(0))
    assert shape_of(encoder.feature_maps, jnp.ones((1, 8, 8, 1))) == (1, 6, 6, 4)


@pytest.mark.parametrize(
    "shape, size",
    [
        ((2, 7, 6, 3), 2),
        ((2, 5, 5, 1), 3),
        ((2, 4, 4, 2), 3),
        ((3, 9, 4), 2),
        ((2, 8, 3), 4),
    ],
)
def test_max_pool_matches_reduce_window(shape, size):
    # Odd sides and windows wider than the leftover check where SAME puts
    # its padding. Distinct values make the maxima unique, so the gradients
    # must agree too.
    values = jax.random.permutation(jax.random.key(0), math.prod(shape))
    h = values.reshape(shape).astype(jnp.float32) / math.prod(shape)
    window = (size,) * (len(shape) - 2)

    def reference(h):
        return nnx.max_pool(h, window, window, "SAME")

    expected = reference(h)
    np.testing.assert_array_equal(max_pool(h, size), expected)

    cotangent = jax.random.normal(jax.random.key(1), expected.shape)
    ours = jax.vjp(lambda h: max_pool(h, size), h)[1](cotangent)[0]
    theirs = jax.vjp(reference, h)[1](cotangent)[0]
    np.testing.assert_array_equal(ours, theirs)


def test_spec_round_trip_identical_outputs(tmp_path):
    spec = conv_spec((8, 8, 1), [4, 6], batch_norm=True, pool="avg")
    encoder = build_encoder(spec, rngs=nnx.Rngs(3))
    x = jax.random.uniform(jax.random.key(0), (5, 8, 8, 1))
    # Batch statistics away from their initial values, so a lost statistic shows.
    encoder.layers[0].batch_norm.mean[...] = jnp.full((4,), 0.3)
    encoder.layers[1].batch_norm.var[...] = jnp.full((6,), 2.0)
    save_encoder(
        str(tmp_path / "encoder"),
        encoder,
        spec=spec,
        scaler=fit_scaler(np.asarray(x), "minmax"),
        method="conv_ae",
        config={},
        seed=0,
        provenance={},
    )
    loaded = load_encoder(str(tmp_path / "encoder"))
    assert isinstance(loaded.module, ConvEncoder)
    assert loaded.spec == json.loads(json.dumps(spec))
    np.testing.assert_array_equal(loaded.module(x), encoder(x))
    np.testing.assert_array_equal(loaded.module(x, train=True), encoder(x, train=True))


def test_train_mode_uses_batch_statistics():
    spec = conv_spec((8, 8, 1), [4], batch_norm=True, pool="none")
    encoder = build_encoder(spec, rngs=nnx.Rngs(0))
    x = 3.0 + jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
    maps = encoder.feature_maps(x, train=True)
    running_mean = np.asarray(encoder.layers[0].batch_norm.mean[...])
    # Batch statistics normalize each channel to mean 0 before the relu.
    pre = encoder.layers[0].pre_activation(x, train=True)
    np.testing.assert_allclose(jnp.mean(pre, axis=(0, 1, 2)), 0.0, atol=1e-4)
    assert not np.allclose(maps, encoder.feature_maps(x, train=False))
    assert not np.array_equal(running_mean, np.zeros(4))


def good_spec():
    return conv_spec((8, 8, 1), [4])


def with_stage(**changes):
    spec = good_spec()
    spec["stages"][0].update(changes)
    return spec


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ({**good_spec(), "stage": []}, "'stage'"),
        (
            {
                **good_spec(),
                "stages": [
                    {
                        ("kernal_size" if k == "kernel_size" else k): v
                        for k, v in conv_stage(4).items()
                    }
                ],
            },
            "'kernal_size'",
        ),
        (with_stage(pool="maxx"), "pool"),
        (with_stage(padding="same"), "padding"),
        (with_stage(features=0), "features"),
        (with_stage(stride=True), "stride"),
        (with_stage(batch_norm=1), "batch_norm"),
        (with_stage(activation="swish"), "activation"),
        (with_stage(pool="none", pool_size=2), "pool_size"),
        (with_stage(padding="VALID", kernel_size=9, pool="none", pool_size=1), "9"),
        ({**good_spec(), "input_shape": [8, 8, 8, 1]}, "input_shape"),
        ({**good_spec(), "stages": []}, "stages"),
    ],
)
def test_bad_spec_rejected(spec, fragment):
    with pytest.raises(SpecError, match=fragment):
        check_spec(spec)


def test_stage_autoencoder_output_shape():
    stage = conv_stage(4, stride=2, pool="max")
    model = ConvAutoencoderStage(3, stage, (7, 9), rngs=nnx.Rngs(0))
    x = jnp.ones((2, 7, 9, 3))
    assert shape_of(model.encode, x) == (2, 2, 3, 4)
    assert shape_of(lambda x: model.decode(model.encode(x)), x) == x.shape


@pytest.mark.parametrize("input_shape", [(7, 7, 1), (40, 2)])
def test_deep_autoencoder_output_shape(input_shape):
    spec = conv_spec(input_shape, [4, 6], stride=2, pool="avg")
    encoder = build_encoder(spec, rngs=nnx.Rngs(0))
    model = ConvDeepAutoencoder(encoder, rngs=nnx.Rngs(1))
    x = jnp.ones((2, *input_shape))
    assert shape_of(lambda x: model.decode(model.encode(x)), x) == x.shape


def test_stage_reduces_reconstruction(conv_export):
    records = [r for r in read_records(conv_export) if r["phase"] == "stage0"]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["reconstruction"] < records[0]["reconstruction"]


def test_run_writes_kernel_filters(conv_export):
    workdir = os.path.dirname(conv_export)
    assert os.path.isfile(os.path.join(workdir, "filters.png"))
    assert os.path.isfile(os.path.join(workdir, "reconstructions.png"))
    assert isinstance(load_encoder(conv_export).module, ConvEncoder)


def test_l1_penalty_for_relu_codes():
    code = jnp.array([[[1.0, -2.0]], [[3.0, 0.0]], [[9.0, 9.0]]])
    weight = jnp.array([1.0, 1.0, 0.0])
    name, value = activity_penalty(code, weight, "relu", 0.05)
    assert name == "activity_l1"
    assert float(value) == pytest.approx(3.0)


def test_kl_penalty_for_sigmoid_codes():
    code = jnp.full((2, 3, 3, 2), 0.05)
    name, value = activity_penalty(code, jnp.ones(2), "sigmoid", 0.05)
    assert name == "sparsity_kl"
    assert float(value) == pytest.approx(0.0, abs=1e-6)
    _, above = activity_penalty(code + 0.2, jnp.ones(2), "sigmoid", 0.05)
    assert float(above) > 0.0


def signal_context(method, tmp_path, **overrides):
    config = config_lib.build_config(
        lambda: pretrain_defaults(method),
        overrides={"stages": (4, 6), "epochs": 1, "batch_size": 16, **overrides},
    )
    x = np.asarray(jax.random.uniform(jax.random.key(0), (32, 40, 1)))
    return PretrainContext(
        config=config,
        x=x,
        unit_range=True,
        rng=jax.random.key(1),
        writer=None,
        workdir=str(tmp_path),
    )


@pytest.mark.parametrize(
    "overrides",
    [{}, {"end_to_end": True, "sparsity_weight": 0.01}],
    ids=["layerwise", "end_to_end_sparse"],
)
def test_conv_ae_on_signals(overrides, tmp_path):
    context = signal_context("conv_ae", tmp_path, **overrides)
    trained = pretrain_conv_autoencoder(context)
    assert trained.spec["input_shape"] == [40, 1]
    assert trained.module(jnp.ones((2, 40, 1))).shape == (2, 6)
    assert trained.first_kernel.shape == (3, 4)
    assert trained.pictures["filter_shape"] == (3, 1)
    inputs, outputs = trained.pictures["reconstructions"]
    assert outputs.shape == inputs.shape


def test_simmim_on_signals(tmp_path):
    context = signal_context("conv_simmim", tmp_path, batch_norm=True)
    trained = pretrain_simmim(context)
    assert trained.module(jnp.ones((2, 40, 1))).shape == (2, 6)
    inputs, filled = trained.pictures["reconstructions"]
    assert filled.shape == inputs.shape
    assert np.sum(filled != inputs) > 0  # masked spans hold predictions


def finetune_config(export, **changes):
    config = default_config()
    config.update({"encoder": export, **changes})
    return config


def classifier(export, preset="gradual"):
    config = finetune_config(export, preset=preset)
    return build_model(load_encoder(export), config, 10, jax.random.key(0)), config


def stage_trainer(model, config, stage):
    labels = freezing.label_params(nnx.state(model, nnx.Param), stage_rules(stage))
    return PhaseTrainer(
        model,
        classifier_loss_fn(config),
        freezing.masked_optimizer(labels, 1e-2, 0.1),
        rng=jax.random.key(0),
        batch_size=8,
        frozen=freezing.frozen_mask(labels),
        scan=False,
        name=stage.name,
    )


def leaves(model, variable_type):
    state = nnx.to_pure_dict(nnx.state(model, variable_type))
    return {
        ".".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_flatten_with_path(state)[0]
    }


def digits_batch(rows):
    x = jax.random.uniform(jax.random.key(1), (rows, 8, 8, 1))
    return {"x": np.asarray(x), "y": np.arange(rows, dtype=np.int32) % 10}


def test_frozen_stage_bit_identical(conv_export):
    model, config = classifier(conv_export)
    stage = schedule("gradual", 2, config)[1]
    assert stage.trainable_layers == (1,)
    trainer = stage_trainer(model, config, stage)
    fit(trainer, digits_batch(40), epochs=1, progress=False)  # 5 steps
    trained = trainer.model()
    assert int(trainer.state.step) == 5

    before, after = leaves(model, nnx.BatchStat), leaves(trained, nnx.BatchStat)
    assert len(before) == 4  # mean and var of two stages
    for name in before:
        assert np.array_equal(before[name], after[name]), name
    before, after = leaves(model, nnx.Param), leaves(trained, nnx.Param)
    for name in before:
        if ".batch_norm." in name or name.startswith("encoder.layers.0."):
            assert np.array_equal(before[name], after[name]), name
    assert not np.array_equal(
        before["encoder.layers.1.conv.kernel"], after["encoder.layers.1.conv.kernel"]
    )


def test_later_stage_changes_first_step(conv_export):
    model, config = classifier(conv_export)
    stage = schedule("gradual", 2, config)[2]
    assert stage.trainable_layers == (1, 0)
    trainer = stage_trainer(model, config, stage)
    fit(trainer, digits_batch(8), epochs=1, progress=False)
    assert int(trainer.state.step) == 1
    before, after = leaves(model, nnx.Param), leaves(trainer.model(), nnx.Param)
    assert not np.array_equal(
        before["encoder.layers.0.conv.kernel"], after["encoder.layers.0.conv.kernel"]
    )
    assert np.array_equal(
        before["encoder.layers.0.batch_norm.scale"],
        after["encoder.layers.0.batch_norm.scale"],
    )


def test_scratch_trains_batch_norm(conv_export):
    model, config = classifier(conv_export, preset="scratch")
    stage = schedule("scratch", 2, config)[0]
    trainer = stage_trainer(model, config, stage)
    before = leaves(model, nnx.BatchStat)
    fit(trainer, digits_batch(16), epochs=1, progress=False)
    after = leaves(trainer.model(), nnx.BatchStat)
    for name in before:
        assert not np.array_equal(before[name], after[name]), name
    labels = freezing.label_params(nnx.state(model, nnx.Param), stage_rules(stage))
    assert labels["encoder"]["layers"][0]["batch_norm"]["scale"] == "train"


def test_full_releases_batch_norm_by_option(conv_export):
    released = schedule(
        "full", 2, finetune_config(conv_export, release_batch_norm=True)
    )
    model = build_model(
        load_encoder(conv_export),
        finetune_config(conv_export, preset="full", release_batch_norm=True),
        10,
        jax.random.key(0),
    )
    assert released[1].train_batch_norm
    assert model.encoder_batch_stats_train
    frozen, _ = classifier(conv_export, preset="full")
    assert not frozen.encoder_batch_stats_train


def test_drop_top_stage(conv_export):
    config = finetune_config(conv_export, drop_top=1)
    model = build_model(load_encoder(conv_export), config, 10, jax.random.key(0))
    assert model.encoder.features == 4
    assert model(jnp.ones((2, 8, 8, 1))).shape == (2, 10)


@pytest.fixture(scope="module")
def masked_model():
    """A SimMIM model over one batch-norm stage on 8x8x1 inputs."""
    spec = conv_spec((8, 8, 1), [4], batch_norm=True)
    return MaskedConvModel(
        build_encoder(spec, rngs=nnx.Rngs(0)), spec, rngs=nnx.Rngs(1)
    )


def test_masks_differ_between_steps():
    rng = jax.random.key(0)
    first = draw_mask(jax.random.fold_in(rng, 0), 4, (8, 8), 2, 0.5)
    second = draw_mask(jax.random.fold_in(rng, 1), 4, (8, 8), 2, 0.5)
    assert not np.array_equal(first, second)
    assert not np.array_equal(first[0], first[1])


def test_loss_draws_mask_from_step_rng(masked_model):
    model = masked_model
    config = config_lib.build_config(
        lambda: pretrain_defaults("conv_simmim"), overrides={"mask_loss": "l2"}
    )
    loss_fn = simmim_loss_fn(config, 2)
    x = jax.random.uniform(jax.random.key(2), (4, 8, 8, 1))
    batch = {"x": x, "weight": jnp.ones(4)}
    graphdef, state = nnx.split(model)

    @jax.jit
    def loss_of(rng):
        # A copy of the model, because a training step updates batch statistics.
        return loss_fn(nnx.merge(graphdef, state, copy=True), batch, rng)[0]

    first = loss_of(jax.random.key(0))
    again = loss_of(jax.random.key(0))
    other = loss_of(jax.random.key(1))
    assert float(first) == float(again)
    assert float(first) != float(other)


@pytest.mark.parametrize(
    "positions, patch_size, ratio, masked_patches",
    [
        ((8, 8), 2, 0.5, 8),
        ((8, 8), 2, 0.3, 5),  # ceil(0.3 * 16)
        ((28, 28), 4, 0.5, 25),  # ceil(0.5 * 49)
        ((40,), 4, 0.5, 5),
        ((10,), 4, 0.5, 2),  # 3 patches, the last one 2 positions long
    ],
)
def test_mask_ratio_and_count(positions, patch_size, ratio, masked_patches):
    mask = np.asarray(draw_mask(jax.random.key(0), 3, positions, patch_size, ratio))
    assert mask.shape == (3, *positions)
    grid = tuple(-(-n // patch_size) for n in positions)
    assert masked_patches == math.ceil(ratio * math.prod(grid))
    counts = np.zeros(3, int)
    for index in np.ndindex(*grid):
        window = tuple(slice(i * patch_size, (i + 1) * patch_size) for i in index)
        patch = mask[(slice(None), *window)].reshape(3, -1)
        assert np.array_equal(patch.all(-1), patch.any(-1)), index  # whole patch
        counts += patch[:, 0]
    assert np.all(counts == masked_patches)


def test_loss_only_over_masked_pixels(masked_model):
    model = masked_model
    x = jax.random.uniform(jax.random.key(2), (2, 8, 8, 1))
    mask = draw_mask(jax.random.key(3), 2, (8, 8), 2, 0.5)
    prediction = jax.jit(model)(x, mask)
    unmasked = tuple(int(i) for i in np.argwhere(~np.asarray(mask))[0])
    masked = tuple(int(i) for i in np.argwhere(np.asarray(mask))[0])
    for kind in ("l1", "l2"):
        base = masked_error(prediction, x, mask, kind)
        changed = masked_error(prediction, x.at[(*unmasked, 0)].add(5.0), mask, kind)
        moved = masked_error(prediction, x.at[(*masked, 0)].add(5.0), mask, kind)
        np.testing.assert_array_equal(changed, base)
        assert float(moved[masked[0]]) != float(base[masked[0]])


def test_masked_token_replaces_input(masked_model):
    model = masked_model
    x = jax.random.uniform(jax.random.key(2), (2, 8, 8, 1))
    mask = draw_mask(jax.random.key(3), 2, (8, 8), 2, 0.5)
    changed = jnp.where(mask[..., None], x + 1.0, x)
    predict = jax.jit(model)
    np.testing.assert_array_equal(predict(changed, mask), predict(x, mask))


def test_masked_reconstruction_deterministic(masked_model):
    model = masked_model
    x = np.asarray(jax.random.uniform(jax.random.key(2), (3, 8, 8, 1)))
    first = masked_reconstruction(model, x, 2, 0.5)
    np.testing.assert_array_equal(first, masked_reconstruction(model, x, 2, 0.5))


def test_depth_to_space_blocks():
    maps = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(1, 2, 1, 12)
    image = depth_to_space(maps, 2, 3)
    assert image.shape == (1, 4, 2, 3)
    np.testing.assert_array_equal(image[0, 0:2, 0:2].reshape(-1), maps[0, 0, 0])
    signal = depth_to_space(jnp.arange(8.0).reshape(1, 2, 4), 2, 2)
    np.testing.assert_array_equal(signal[0], jnp.arange(8.0).reshape(4, 2))


def test_simmim_run_exports_encoder(data_dir, tmp_path):
    config = config_lib.build_config(
        lambda: pretrain_defaults("conv_simmim"),
        overrides={"stages": (4,), "epochs": 2, "data_dir": data_dir},
    )
    export = pretrain_run("conv_simmim", config, str(tmp_path / "mim"))
    records = read_records(export)
    assert [r["phase"] for r in records] == ["simmim", "simmim"]
    assert records[-1]["masked_error"] < records[0]["masked_error"]
    loaded = load_encoder(export)
    assert loaded.module(jnp.ones((2, 8, 8, 1))).shape == (2, 4)
    assert os.path.isfile(tmp_path / "mim" / "filters.png")
    assert os.path.isfile(tmp_path / "mim" / "masks.png")


@pytest.mark.slow
def test_conv_ae_then_gradual_cli(data_dir, tmp_path):
    pretrain_dir = str(tmp_path / "pretrain")
    status = pretrain_main(
        [
            "conv_ae",
            "--dataset",
            "digits",
            "--workdir",
            pretrain_dir,
            "--config.stages=(4, 8)",
            "--config.epochs=1",
        ]
    )
    assert status == 0
    finetune_dir = str(tmp_path / "finetune")
    status = finetune_main(
        [
            "--encoder",
            os.path.join(pretrain_dir, "encoder"),
            "--dataset",
            "digits",
            "--labels",
            "50",
            "--preset",
            "gradual",
            "--workdir",
            finetune_dir,
            "--config.epochs_head=3",
            "--config.epochs_finetune=1",
        ]
    )
    assert status == 0
    with open(os.path.join(finetune_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["labels"] == 50
    assert metrics["method"] == "conv_ae"
    assert [s["stage"] for s in metrics["stages"]] == [
        "head",
        "unfreeze_1",
        "unfreeze_2",
    ]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


# SimMIM patch sizes and masks.png


def image_context(tmp_path, **overrides):
    config = config_lib.build_config(
        lambda: pretrain_defaults("conv_simmim"),
        overrides={"stages": (4,), "epochs": 1, "batch_size": 16, **overrides},
    )
    x = np.asarray(jax.random.uniform(jax.random.key(0), (32, 8, 8, 1)))
    return PretrainContext(
        config=config,
        x=x,
        unit_range=True,
        rng=jax.random.key(1),
        writer=None,
        workdir=str(tmp_path),
    )


@pytest.mark.parametrize(
    "positions, patch_size, fragment",
    [
        ((8, 8), 3, "[8, 8]"),
        ((8, 6), 4, "[8, 6]"),
        ((10,), 4, "[10]"),
        ((30, 30), 0, "patch_size 0 chose 4"),
    ],
)
def test_patch_size_must_divide(positions, patch_size, fragment):
    config = config_lib.build_config(
        lambda: pretrain_defaults("conv_simmim"), overrides={"patch_size": patch_size}
    )
    with pytest.raises(config_lib.ConfigError, match="patch_size") as error:
        check_patch_size(config, positions)
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    "positions, patch_size, expected",
    [((8, 8), 0, 2), ((8, 8), 4, 4), ((28, 28), 0, 4), ((40,), 0, 4), ((8, 6), 2, 2)],
)
def test_patch_size_accepted(positions, patch_size, expected):
    config = config_lib.build_config(
        lambda: pretrain_defaults("conv_simmim"), overrides={"patch_size": patch_size}
    )
    assert check_patch_size(config, positions) == expected


def test_simmim_rejects_before_training(tmp_path):
    context = image_context(tmp_path, patch_size=3)
    with pytest.raises(config_lib.ConfigError, match="patch_size"):
        pretrain_simmim(context)
    assert os.listdir(tmp_path) == []


def test_masked_prediction_masks(masked_model):
    x = np.asarray(jax.random.uniform(jax.random.key(2), (3, 8, 8, 1)))
    masks, prediction = masked_prediction(masked_model, x, 2, 0.5)
    assert masks.shape == x.shape
    assert masks.dtype == bool
    assert prediction.shape == x.shape
    assert np.all(masks.reshape(3, -1).sum(-1) == 8 * 4)  # 8 of 16 2x2 patches
    filled = masked_reconstruction(masked_model, x, 2, 0.5)
    np.testing.assert_array_equal(filled[~masks], x[~masks])
    np.testing.assert_array_equal(filled[masks], prediction[masks])
