"""Masked prediction: patches, masks, BERT selection, losses, the transformer
encoder and its export, layer-wise rates, MNIST-1D and text loading."""

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from finetune import layer_decay
from finetune.freezing import label_params
from finetune.run import default_config as finetune_defaults
from finetune.run import run as finetune_run
from finetune.stages import Stage, encoder_units, schedule, stage_rules
from pretrain import config as config_lib
from pretrain import masking
from pretrain.bert import masked_token_loss, run_text
from pretrain.data import DatasetError, fit_scaler, load_dataset
from pretrain.data.builders import generate_mnist1d
from pretrain.data.text import ByteTokenizer, load_texts
from pretrain.encoders import DenseEncoder, SpecError, check_spec, dense_spec
from pretrain.export import load_encoder, save_encoder
from pretrain.mae import (
    MaskedAutoencoder,
    choose_patch_size,
    mae_loss_fn,
    masked_mean_error,
    patch_targets,
)
from pretrain.masked_config import mae_config
from pretrain.masked_features import MaskedFeatureModel
from pretrain.optimizer import adamw_warmup_cosine, decay_mask, warmup_cosine
from pretrain.run import default_config as pretrain_defaults
from pretrain.run import run as pretrain_run
from pretrain.transformer import TransformerEncoder, transformer_spec

# Patches and masks


@pytest.mark.parametrize(
    "shape, patch", [((8, 8, 1), 2), ((8, 8, 1), 4), ((6, 4, 3), 2)]
)
def test_patchify_2d_round_trip(shape, patch):
    images = jax.random.normal(jax.random.key(0), (3, *shape))
    patches = masking.patchify(images, patch)
    rows, columns = shape[0] // patch, shape[1] // patch
    assert patches.shape == (3, rows * columns, patch * patch * shape[2])
    np.testing.assert_array_equal(masking.unpatchify(patches, shape, patch), images)


def test_patchify_2d_row_major():
    images = jnp.arange(16.0).reshape(1, 4, 4, 1)
    patches = masking.patchify_2d(images, 2)
    # Patch 1 is the top-right 2x2 block; its values run row by row.
    np.testing.assert_array_equal(patches[0, 1], [2.0, 3.0, 6.0, 7.0])
    np.testing.assert_array_equal(patches[0, 2], [8.0, 9.0, 12.0, 13.0])


@pytest.mark.parametrize("shape, patch", [((40, 1), 4), ((12, 2), 3)])
def test_patchify_1d_round_trip(shape, patch):
    signals = jax.random.normal(jax.random.key(0), (3, *shape))
    patches = masking.patchify(signals, patch)
    assert patches.shape == (3, shape[0] // patch, patch * shape[1])
    np.testing.assert_array_equal(masking.unpatchify(patches, shape, patch), signals)
    np.testing.assert_array_equal(
        patches[:, 1], signals[:, patch : 2 * patch].reshape(3, -1)
    )


def test_mask_count_exact():
    keep, masked, mask = masking.random_patch_masks(jax.random.key(0), 6, 16, 0.75)
    assert keep.shape == (6, 4)
    assert masked.shape == (6, 12)
    assert np.all(np.sum(mask, axis=1) == 12)
    for row in range(6):
        indices = np.concatenate([keep[row], masked[row]])
        assert sorted(indices.tolist()) == list(range(16))
        assert np.all(mask[row, masked[row]])
        assert not np.any(mask[row, keep[row]])


def test_mask_count_rounding():
    assert masking.num_masked(10, 0.75) == 8  # 7.5 rounds half to even
    assert masking.num_masked(4, 0.75) == 3
    assert masking.num_masked(49, 0.75) == 37  # 36.75
    _, _, mask = masking.random_patch_masks(jax.random.key(1), 2, 10, 0.75)
    assert np.all(np.sum(mask, axis=1) == 8)


def test_masks_differ_per_example_and_key():
    _, _, first = masking.random_patch_masks(jax.random.key(0), 4, 16, 0.5)
    _, _, again = masking.random_patch_masks(jax.random.key(0), 4, 16, 0.5)
    _, _, other = masking.random_patch_masks(jax.random.key(1), 4, 16, 0.5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first[0], first[1])


def test_auto_patch_size():
    assert choose_patch_size((8, 8, 1), 0) == 2
    assert choose_patch_size((28, 28, 1), 0) == 7
    assert choose_patch_size((40, 1), 0) == 4
    assert choose_patch_size((28, 28, 1), 4) == 4
    with pytest.raises(config_lib.ConfigError, match="patch_size"):
        choose_patch_size((28, 28, 1), 5)


# Losses over masked positions


def test_masked_error_ignores_visible():
    target = jnp.zeros((1, 4, 2))
    prediction = jnp.array([[[1.0, 1.0], [0.0, 0.0], [100.0, 100.0], [3.0, 3.0]]])
    mask = jnp.array([[True, True, False, False]])
    # Masked patches have errors 1 and 0; visible ones are ignored.
    assert float(masked_mean_error(prediction, target, mask)[0]) == 0.5


def test_masked_error_features():
    target = jnp.zeros((1, 4))
    prediction = jnp.array([[2.0, 50.0, 0.0, 50.0]])
    mask = jnp.array([[True, False, True, False]])
    assert float(masked_mean_error(prediction, target, mask)[0]) == 2.0


def test_masked_features_hide_inputs():
    spec = dense_spec((8, 8, 1), [16], activation="relu")
    encoder = DenseEncoder((8, 8, 1), spec["layers"], rngs=nnx.Rngs(0))
    model = MaskedFeatureModel(encoder, rngs=nnx.Rngs(1))
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
    every = jnp.ones((2, 64), bool)
    # With every feature hidden the inputs no longer matter.
    np.testing.assert_array_equal(
        model.reconstruct(x, every), model.reconstruct(x + 1.0, every)
    )
    none = jnp.zeros((2, 64), bool)
    assert not np.allclose(model.reconstruct(x, none), model.reconstruct(x + 1.0, none))


def test_norm_pix_targets_biased_variance():
    patches = jnp.array([[[1.0, 2.0, 3.0, 4.0]]])
    expected = (np.array([1.0, 2.0, 3.0, 4.0]) - 2.5) / np.sqrt(1.25 + 1e-6)
    np.testing.assert_allclose(patch_targets(patches, True)[0, 0], expected, rtol=1e-6)
    np.testing.assert_array_equal(patch_targets(patches, False), patches)


def image_spec(**changes):
    settings = {"width": 16, "depth": 1, "heads": 2, "pooling": "cls", **changes}
    return transformer_spec("image", (8, 8, 1), patch_size=2, **settings)


@pytest.fixture(scope="module")
def mae_model():
    rngs = nnx.Rngs(0)
    encoder = TransformerEncoder(image_spec(), rngs=rngs)
    return MaskedAutoencoder(
        encoder, patch_features=4, width=8, depth=1, heads=2, mlp_ratio=2.0, rngs=rngs
    )


def jitted_loss(model, loss_fn):
    """`loss_fn(model, batch, rng)` as one compiled call, faster than eager."""
    graphdef, state = nnx.split(model)
    call = jax.jit(
        lambda state, batch, rng: loss_fn(nnx.merge(graphdef, state), batch, rng)[0]
    )
    return lambda batch, rng: float(call(state, batch, rng))


@functools.partial(jax.jit, static_argnames=("graphdef", "train"))
def _encode(state, x, rng, *, graphdef, train):
    return nnx.merge(graphdef, state)(x, train=train, rng=rng)


def encode(encoder, x, *, train=False, rng=None):
    """The encoder's features of x, compiled."""
    graphdef, state = nnx.split(encoder)
    return np.asarray(_encode(state, x, rng, graphdef=graphdef, train=train))


def test_mae_loss_ignores_padded_rows(mae_model):
    loss = jitted_loss(mae_model, mae_loss_fn(mae_config()))
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
    weight = jnp.array([1.0, 1.0, 1.0, 0.0])
    rng = jax.random.key(5)
    normal = loss({"x": x, "weight": weight}, rng)
    huge = loss({"x": x.at[3].set(1e6), "weight": weight}, rng)
    assert normal > 0
    assert huge == pytest.approx(normal, rel=1e-6)


def test_mae_masks_change_per_step(mae_model):
    # The model has no dropout, so only the masks depend on the step's rng.
    loss = jitted_loss(mae_model, mae_loss_fn(mae_config()))
    batch = {
        "x": jax.random.uniform(jax.random.key(0), (4, 8, 8, 1)),
        "weight": jnp.ones(4),
    }
    step_rng = jax.random.key(3)
    first = loss(batch, jax.random.fold_in(step_rng, 0))
    second = loss(batch, jax.random.fold_in(step_rng, 1))
    again = loss(batch, jax.random.fold_in(step_rng, 0))
    assert first != second
    assert first == again


def test_encoder_eval_deterministic():
    encoder = TransformerEncoder(tokens_spec(dropout=0.5), rngs=nnx.Rngs(0))
    x = ByteTokenizer().encode(["some text", "more"], 12)
    plain = encode(encoder, x)
    np.testing.assert_array_equal(plain, encode(encoder, x))
    np.testing.assert_array_equal(plain, encode(encoder, x, rng=jax.random.key(1)))
    first = encode(encoder, x, train=True, rng=jax.random.key(1))
    second = encode(encoder, x, train=True, rng=jax.random.key(2))
    assert not np.allclose(first, second)
    assert not np.allclose(first, plain)


# BERT token selection and loss

SPECIAL = ByteTokenizer().special_ids


def token_rows(lengths, total=40):
    """Rows of [CLS] bytes [SEP] padding with `lengths` bytes each."""
    texts = ["a" * n for n in lengths]
    return jnp.asarray(ByteTokenizer().encode(texts, total))


def test_selection_count_rule():
    tokens = token_rows([20, 3, 10, 0, 1])
    eligible = ~jnp.isin(tokens, jnp.asarray(SPECIAL))
    selected = masking.select_tokens(jax.random.key(0), eligible, 0.15)
    counts = np.sum(selected, axis=1).tolist()
    # round(3.0) = 3, round(0.45) -> at least 1, round(1.5) = 2, none, 1.
    assert counts == [3, 1, 2, 0, 1]


def test_selection_never_special_or_padding():
    tokens = token_rows([5, 12, 30])
    eligible = ~jnp.isin(tokens, jnp.asarray(SPECIAL))
    for seed in range(20):
        selected = masking.select_tokens(jax.random.key(seed), eligible, 0.15)
        assert not np.any(selected & ~eligible)
        assert not np.any(selected[tokens == ByteTokenizer().pad_id])


def test_selection_varies_with_key():
    tokens = token_rows([30])
    eligible = ~jnp.isin(tokens, jnp.asarray(SPECIAL))
    picks = {
        tuple(np.flatnonzero(masking.select_tokens(jax.random.key(s), eligible)))
        for s in range(10)
    }
    assert len(picks) > 1


def test_corruption_shares():
    tokens = jnp.full((1, 20000), 100, jnp.int32)
    selected = jnp.ones_like(tokens, bool).at[0, :10000].set(False)
    out = masking.corrupt_tokens(
        jax.random.key(0), tokens, selected, mask_id=3, random_low=4, random_high=260
    )
    chosen = np.asarray(out[0, 10000:])
    np.testing.assert_array_equal(out[0, :10000], tokens[0, :10000])
    assert np.mean(chosen == 3) == pytest.approx(0.8, abs=0.02)
    random = chosen[chosen != 3]
    assert np.all((random >= 4) & (random < 260))
    # Random replacements equal to the original (1 in 256) count as unchanged.
    assert np.mean(chosen == 100) == pytest.approx(0.1 + 0.1 / 256, abs=0.015)


def copy_logits(targets, selected, vocab):
    """Logits that copy visible tokens with certainty and are uniform at
    selected positions."""
    logits = jax.nn.one_hot(targets, vocab) * 1000.0
    return jnp.where(selected[..., None], 0.0, logits)


def test_bert_loss_uniform_value():
    vocab = 30522
    targets = jnp.arange(10, dtype=jnp.int32)[None, :] + 5
    selected = jnp.zeros((1, 10), bool).at[0, jnp.array([2, 7])].set(True)
    loss, _ = masked_token_loss(
        copy_logits(targets, selected, vocab), targets, selected, jnp.ones(1)
    )
    assert float(loss) == pytest.approx(math.log(vocab), rel=1e-5)
    assert float(loss) == pytest.approx(10.326, abs=1e-3)
    assert float(loss) != pytest.approx(2 * math.log(vocab) / 10, abs=0.1)


def test_bert_loss_batch_denominator():
    vocab = 8
    targets = jnp.zeros((3, 4), jnp.int32)
    selected = jnp.array(
        [[True, False, False, False], [True, True, True, False], [True] * 4]
    )
    logits = copy_logits(targets, selected, vocab)
    # The third row is padding of the last batch and must not count.
    loss, _ = masked_token_loss(logits, targets, selected, jnp.array([1.0, 1.0, 0.0]))
    # Every counted position is uniform, so the sum over 4 positions / 4.
    assert float(loss) == pytest.approx(math.log(vocab), rel=1e-6)
    logits = logits.at[0, 0].set(jax.nn.one_hot(0, vocab) * 1000.0)
    loss, _ = masked_token_loss(logits, targets, selected, jnp.array([1.0, 1.0, 0.0]))
    assert float(loss) == pytest.approx(3 * math.log(vocab) / 4, rel=1e-6)


# Optimizer: warmup, cosine decay and the weight-decay mask


def test_warmup_then_cosine():
    schedule = warmup_cosine(1e-3, warmup_steps=10, total_steps=100)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(5e-4)
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(55)) == pytest.approx(5e-4, rel=1e-4)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
    warmup = [float(schedule(s)) for s in range(11)]
    assert warmup == sorted(warmup)


def test_weight_decay_mask_paths(mae_model):
    mask = nnx.to_pure_dict(decay_mask(nnx.state(mae_model, nnx.Param)))
    encoder = mask["encoder"]
    assert encoder["embed"]["kernel"]
    assert encoder["layers"][0]["attention"]["qkv"]["kernel"]
    assert encoder["layers"][0]["mlp"]["out"]["kernel"]
    assert not encoder["embed"]["bias"]
    assert not encoder["cls_token"]
    assert not encoder["layers"][0]["norm1"]["scale"]
    assert not encoder["norm"]["bias"]
    assert not mask["mask_token"]


def test_weight_decay_skips_masked():
    params = {"dense": {"kernel": jnp.ones(3), "bias": jnp.ones(3)}}
    tx = adamw_warmup_cosine(
        0.1, warmup_steps=0, total_steps=10, weight_decay=0.5, clip_norm=1.0
    )
    state = tx.init(params)
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, state, params)
    assert np.all(np.asarray(updates["dense"]["kernel"]) < 0)
    np.testing.assert_array_equal(updates["dense"]["bias"], 0.0)


# The transformer encoder: specs and export


def tokens_spec(**changes):
    settings = {"width": 16, "depth": 2, "heads": 2, "pooling": "mean", **changes}
    tokenizer = ByteTokenizer().to_spec()
    return transformer_spec(
        "tokens", (12,), patch_size=1, tokenizer=tokenizer, **settings
    )


def test_spec_rejects_bad_fields():
    spec = transformer_spec("signal", (40, 1), patch_size=4, width=16, depth=1, heads=2)
    check_spec(spec)
    for key, value, fragment in [
        ("sequence_length", 9, "sequence_length"),
        ("patch_size", 3, "divide"),
        ("width", 18, "width"),
        ("pooling", "max", "pooling"),
        ("tokenizer", ByteTokenizer().to_spec(), "tokenizer"),
    ]:
        with pytest.raises(SpecError, match=fragment):
            check_spec({**spec, key: value})
    with pytest.raises(SpecError, match="keys"):
        check_spec({**spec, "extra": 1})


@pytest.mark.parametrize("kind", ["image", "tokens"])
def test_export_round_trip(kind, tmp_path):
    if kind == "image":
        spec = image_spec(depth=2)
        x = np.random.default_rng(0).uniform(size=(3, 8, 8, 1)).astype(np.float32)
    else:
        spec = tokens_spec()
        x = ByteTokenizer().encode(["hello", "a longer text here", ""], 12)
    encoder = TransformerEncoder(spec, rngs=nnx.Rngs(3))
    scaler = fit_scaler(np.stack([np.zeros_like(x[0]), np.ones_like(x[0])]))
    save_encoder(
        str(tmp_path / "encoder"),
        encoder,
        spec=spec,
        scaler=scaler,
        method="mae",
        config={},
        seed=0,
        provenance={},
    )
    loaded = load_encoder(str(tmp_path / "encoder"))
    assert loaded.spec == spec
    features = encode(loaded.module, loaded.scaler.apply(x))
    np.testing.assert_array_equal(features, encode(encoder, x))
    assert features.shape == (3, 16)


def test_token_padding_ignored():
    encoder = TransformerEncoder(tokens_spec(), rngs=nnx.Rngs(0))
    tokens = ByteTokenizer().encode(["abc"], 12)
    before = encode(encoder, tokens)
    # A different embedding of the padding token must not change the
    # features, because padding is masked out of attention and of pooling.
    table = encoder.embed.embedding
    table[...] = table[...].at[ByteTokenizer().pad_id].set(5.0)
    np.testing.assert_allclose(encode(encoder, tokens), before, rtol=1e-5, atol=1e-6)
    table[...] = table[...].at[ByteTokenizer().byte_offset + ord("a")].set(5.0)
    assert not np.allclose(encode(encoder, tokens), before)


# Fine-tuning units and layer-wise learning-rate decay


def classifier_params():
    encoder = TransformerEncoder(image_spec(depth=3), rngs=nnx.Rngs(0))
    head = nnx.Linear(16, 10, rngs=nnx.Rngs(1))

    class Pair(nnx.Module):
        def __init__(self):
            self.encoder = encoder
            self.head = head

    return Pair(), encoder


def first_update(tx, params):
    """The update of a gradient of ones at the first step, as a pure dict."""
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = jax.jit(tx.update)(grads, jax.jit(tx.init)(params), params)
    return nnx.to_pure_dict(updates)


def test_units_follow_layers():
    model, encoder = classifier_params()
    units = encoder_units(encoder)
    assert units == {"embed": 0, "cls_token": 0, "norm": 2}
    params = nnx.state(model, nnx.Param)
    stages = schedule("gradual", 3, finetune_defaults())
    top = nnx.to_pure_dict(label_params(params, stage_rules(stages[1], units)))
    assert top["encoder"]["norm"]["scale"] == "train"
    assert top["encoder"]["layers"][2]["mlp"]["out"]["kernel"] == "train"
    assert top["encoder"]["layers"][1]["mlp"]["out"]["kernel"] == "freeze"
    assert top["encoder"]["embed"]["kernel"] == "freeze"
    assert top["encoder"]["cls_token"] == "freeze"
    every = nnx.to_pure_dict(label_params(params, stage_rules(stages[3], units)))
    assert every["encoder"]["embed"]["kernel"] == "train"
    assert every["encoder"]["cls_token"] == "train"


def test_layer_decay_rates():
    model, encoder = classifier_params()
    units = encoder_units(encoder)
    params = nnx.state(model, nnx.Param)
    stage = Stage("all", (2, 1, 0), 1e-2, 1, False)
    labels = label_params(params, stage_rules(stage, units))
    tx = layer_decay.decayed_optimizer(
        labels, 1e-2, 0.0, units=units, num_layers=3, decay=0.5
    )
    updates = first_update(tx, params)

    def size(leaf):
        return float(np.max(np.abs(np.asarray(leaf))))

    # Adam's first step moves each param by its learning rate.
    assert size(updates["head"]["kernel"]) == pytest.approx(1e-2, rel=1e-4)
    layers = updates["encoder"]["layers"]
    for i, expected in enumerate([1.25e-3, 2.5e-3, 5e-3]):
        assert size(layers[i]["mlp"]["out"]["kernel"]) == pytest.approx(
            expected, rel=1e-4
        )
    assert size(updates["encoder"]["embed"]["kernel"]) == pytest.approx(
        1.25e-3, rel=1e-4
    )
    assert size(updates["encoder"]["norm"]["scale"]) == pytest.approx(5e-3, rel=1e-4)


def test_layer_decay_keeps_frozen():
    model, encoder = classifier_params()
    units = encoder_units(encoder)
    params = nnx.state(model, nnx.Param)
    stage = Stage("top", (2,), 1e-2, 1, False)
    labels = label_params(params, stage_rules(stage, units))
    tx = layer_decay.decayed_optimizer(
        labels, 1e-2, 0.1, units=units, num_layers=3, decay=0.5
    )
    updates = first_update(tx, params)
    np.testing.assert_array_equal(
        updates["encoder"]["layers"][0]["mlp"]["out"]["kernel"], 0.0
    )
    np.testing.assert_array_equal(updates["encoder"]["embed"]["kernel"], 0.0)


# Datasets: MNIST-1D and text


def test_mnist1d_loads(data_dir):
    dataset = load_dataset("mnist1d", data_dir=data_dir)
    assert dataset.train_x.shape == (4000, 40, 1)
    assert dataset.test_x.shape == (1000, 40, 1)
    assert dataset.input_shape == (40, 1)
    assert dataset.num_classes == 10
    generated = generate_mnist1d()
    np.testing.assert_array_equal(dataset.test_x, generated["x_test"])
    np.testing.assert_array_equal(dataset.train_y, generated["y"])
    other = load_dataset("mnist1d", data_dir=data_dir, split_seed=3)
    np.testing.assert_array_equal(other.test_x, dataset.test_x)
    scaled = fit_scaler(dataset.train_x).apply(dataset.train_x)
    assert float(scaled.min()) == 0.0
    assert float(scaled.max()) == 1.0


def test_byte_tokenizer_round_trip():
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(["héllo", "x" * 50], 16)
    assert ids.shape == (2, 16)
    assert ids[0, 0] == tokenizer.cls_id
    assert tokenizer.decode(ids[0]) == "héllo"
    assert ids[0, 7] == tokenizer.sep_id  # 6 UTF-8 bytes after [CLS]
    assert np.all(ids[0, 8:] == tokenizer.pad_id)
    assert ids[1, -1] == tokenizer.sep_id
    assert tokenizer.vocab_size == 260


def fake_reviews(builder, split, **kwargs):
    # tfds.testing.mock_data's own data source fails on __getitems__ in TFDS
    # 4.9.10, so the tests supply a plain list of records.
    del builder, kwargs
    words = ["good film", "bad plot, fine acting", "long and slow", "great fun"]
    return [
        {"text": f"{split} {words[i % 4]} {i}".encode(), "label": i % 2}
        for i in range(24)
    ]


def test_text_loading_mocked(tmp_path):
    with tfds.testing.mock_data(num_examples=24, as_data_source_fn=fake_reviews):
        texts = load_texts("imdb_reviews", data_dir=str(tmp_path), max_examples=10)
    assert len(texts) == 10
    assert texts[1] == b"train bad plot, fine acting 1"


def test_text_not_prepared(tmp_path):
    with pytest.raises(DatasetError, match="'imdb_reviews' is not prepared in") as e:
        load_texts("imdb_reviews", data_dir=str(tmp_path))
    # TFDS's own text about an "already prepared" folder is left out.
    assert "already prepared" not in str(e.value)


@pytest.mark.slow
def test_bert_tiny_mock_run(tmp_path):
    config = config_lib.build_config(
        lambda: pretrain_defaults("bert"),
        overrides={
            "sequence_length": 24,
            "width": 16,
            "depth": 1,
            "heads": 2,
            "epochs": 2,
            "warmup_epochs": 1,
            "batch_size": 8,
        },
    )
    with tfds.testing.mock_data(num_examples=24, as_data_source_fn=fake_reviews):
        export = run_text(config, str(tmp_path / "bert"))
    loaded = load_encoder(export)
    tokens = ByteTokenizer().encode(["good"], 24)
    assert loaded.module(loaded.scaler.apply(tokens)).shape == (1, 16)
    assert loaded.spec["tokenizer"]["vocab_size"] == 260
    with open(os.path.join(tmp_path, "bert", "metrics.jsonl")) as f:
        assert len(f.readlines()) == 2


@pytest.mark.slow
def test_bert_command_line(tmp_path):
    from pretrain.cli import main as pretrain_main

    argv = [
        "bert",
        "--dataset",
        "imdb_reviews",
        "--workdir",
        str(tmp_path / "bert_cli"),
        f"--config.data_dir={tmp_path}",
        "--config.sequence_length=24",
        "--config.width=16",
        "--config.depth=1",
        "--config.heads=2",
        "--config.epochs=2",
        "--config.warmup_epochs=1",
        "--config.batch_size=8",
    ]
    with tfds.testing.mock_data(num_examples=24, as_data_source_fn=fake_reviews):
        assert pretrain_main(argv) == 0
    loaded = load_encoder(str(tmp_path / "bert_cli" / "encoder"))
    assert loaded.spec["tokenizer"]["vocab_size"] == 260


@pytest.mark.slow
def test_mae_digits_then_finetune(data_dir, tmp_path):
    config = config_lib.build_config(
        lambda: pretrain_defaults("mae"),
        overrides={
            "data_dir": data_dir,
            "patch_size": 4,
            "width": 16,
            "depth": 1,
            "heads": 2,
            "decoder_width": 8,
            "decoder_depth": 1,
            "decoder_heads": 2,
            "epochs": 2,
            "warmup_epochs": 1,
        },
    )
    export = pretrain_run("mae", config, str(tmp_path / "mae"))
    assert os.path.isfile(tmp_path / "mae" / "masks.png")
    finetune = config_lib.build_config(
        finetune_defaults,
        overrides={
            "encoder": export,
            "data_dir": data_dir,
            "labels": "50",
            "epochs_head": 1,
            "epochs_finetune": 1,
            "preset": "full",
            "layer_decay": 0.75,
        },
    )
    metrics = finetune_run(finetune, str(tmp_path / "ft"))
    assert [s["stage"] for s in metrics["stages"]] == ["head", "full"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
