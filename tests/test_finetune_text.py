"""Fine-tuning token encoders on TFDS text datasets, and dropout while
fine-tuning."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from finetune.cli import main as finetune_main
from finetune.freezing import frozen_mask, label_params, masked_optimizer
from finetune.model import Classifier, Head
from finetune.run import classifier_loss_fn, default_config
from finetune.run import run as finetune_run
from finetune.stages import Stage, stage_rules
from pretrain import config as config_lib
from pretrain.bert import bert_spec, token_scaler
from pretrain.config import ConfigError
from pretrain.data import DatasetError, fit_scaler
from pretrain.data import text as text_data
from pretrain.data.text import ByteTokenizer, is_text_dataset, load_labelled_texts
from pretrain.encoders import build_encoder, dense_spec
from pretrain.export import ExportError, save_encoder
from pretrain.masked_config import bert_config
from pretrain.train import PhaseTrainer
from pretrain.transformer import TransformerEncoder, transformer_spec

LENGTH = 24  # byte tokens per sequence, [CLS] and [SEP] included
POSITIVE = ("great fun", "fine acting", "a good film")
NEGATIVE = ("bad plot", "dull and slow", "a weak film")


def labelled_reviews(builder, split, **kwargs):
    # tfds.testing.mock_data's own data source fails on __getitems__ in TFDS
    # 4.9.10, so the tests supply a plain list of records. Label 1 reviews
    # use positive phrases and label 0 ones negative phrases.
    del builder, kwargs
    records = []
    for i in range(250):
        label = i % 2
        phrase = (POSITIVE if label else NEGATIVE)[i % 3]
        records.append({"text": f"{split} {phrase} {i}".encode(), "label": label})
    return records


def mock_reviews():
    return tfds.testing.mock_data(as_data_source_fn=labelled_reviews)


def tokens_spec(dropout=0.0, depth=2):
    return transformer_spec(
        "tokens",
        (LENGTH,),
        patch_size=1,
        width=16,
        depth=depth,
        heads=2,
        dropout=dropout,
        pooling="cls",
        tokenizer=ByteTokenizer().to_spec(),
    )


def export(directory, module, spec, scaler, method):
    save_encoder(
        directory,
        module,
        spec=spec,
        scaler=scaler,
        method=method,
        config={},
        seed=0,
        provenance={},
    )
    return directory


@pytest.fixture(scope="module")
def token_export(tmp_path_factory):
    """A randomly initialised one-block token encoder, exported with the spec
    and scaling of `pretrain bert` (its training is tested in test_masked.py)."""
    config = bert_config(sequence_length=LENGTH, width=16, depth=1, heads=2)
    spec = bert_spec(config, ByteTokenizer())
    module = TransformerEncoder(spec, rngs=nnx.Rngs(0))
    directory = str(tmp_path_factory.mktemp("tokens") / "encoder")
    return export(directory, module, spec, token_scaler(LENGTH), "bert")


@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
    """A randomly initialised dense encoder for 8x8 digits."""
    spec = dense_spec((8, 8, 1), [8])
    module = build_encoder(spec, rngs=nnx.Rngs(0))
    scaler = fit_scaler(np.arange(128, dtype=np.float32).reshape(2, 8, 8, 1))
    directory = str(tmp_path_factory.mktemp("image") / "encoder")
    return export(directory, module, spec, scaler, "ae")


def text_config(encoder, tmp_path, **changes):
    return config_lib.build_config(
        default_config,
        overrides={
            "encoder": encoder,
            "dataset": "imdb_reviews",
            "data_dir": str(tmp_path / "tfds"),
            "labels": "100",
            "epochs_head": 2,
            "epochs_finetune": 1,
            **changes,
        },
    )


# Tokenizer and text datasets


def test_tokenizer_from_spec_round_trip():
    tokenizer = ByteTokenizer(pad_id=0, cls_id=2, sep_id=1, mask_id=3)
    rebuilt = ByteTokenizer.from_spec(tokenizer.to_spec())
    assert rebuilt == tokenizer


def test_tokenizer_from_spec_rejects_mismatch():
    spec = {**ByteTokenizer().to_spec(), "vocab_size": 300}
    with pytest.raises(ValueError, match="vocab_size"):
        ByteTokenizer.from_spec(spec)
    with pytest.raises(ValueError, match="kind"):
        ByteTokenizer.from_spec({**ByteTokenizer().to_spec(), "kind": "wordpiece"})


def test_text_dataset_detection(tmp_path):
    data_dir = str(tmp_path)
    assert is_text_dataset("imdb_reviews", data_dir) is True
    assert is_text_dataset("ag_news_subset", data_dir) is True
    assert is_text_dataset("digits", data_dir) is False
    assert is_text_dataset("mnist", data_dir) is False
    assert is_text_dataset("no_such_dataset", data_dir) is None
    assert is_text_dataset("bad name!", data_dir) is None


def test_labelled_texts_stratified_test(tmp_path):
    with mock_reviews():
        data = load_labelled_texts("imdb_reviews", data_dir=str(tmp_path))
    assert len(data.train_texts) == 200
    assert len(data.test_texts) == 50
    assert data.num_classes == 2
    assert data.train_y.dtype == np.int32
    assert set(data.train_texts).isdisjoint(data.test_texts)
    assert np.bincount(data.test_y).tolist() == [25, 25]
    assert (data.text_key, data.label_key) == ("text", "label")


def test_labelled_texts_test_split(tmp_path, monkeypatch):
    # Mocked builders have no split metadata; a prepared imdb_reviews lists
    # train, test and unsupervised.
    monkeypatch.setattr(
        text_data, "split_names", lambda builder: ["train", "test", "unsupervised"]
    )
    with mock_reviews():
        data = load_labelled_texts("imdb_reviews", data_dir=str(tmp_path))
    assert len(data.train_texts) == 250
    assert len(data.test_texts) == 250
    assert all(text.startswith(b"train ") for text in data.train_texts)
    assert all(text.startswith(b"test ") for text in data.test_texts)


def test_labelled_texts_label_range(tmp_path):
    def bad_labels(builder, split, **kwargs):
        return [{"text": b"some text", "label": 5}] * 10

    with tfds.testing.mock_data(as_data_source_fn=bad_labels):
        with pytest.raises(DatasetError, match="label 5 outside"):
            load_labelled_texts("imdb_reviews", data_dir=str(tmp_path))


# Fine-tuning runs and mismatched inputs


def test_image_encoder_text_dataset(image_export, tmp_path):
    config = text_config(image_export, tmp_path)
    with pytest.raises(ExportError) as error:
        finetune_run(config, str(tmp_path / "ft"))
    assert "'imdb_reviews'" in str(error.value)
    assert image_export in str(error.value)
    assert "text dataset" in str(error.value)
    assert not os.path.exists(tmp_path / "ft")


def test_token_encoder_image_dataset(token_export, tmp_path):
    config = text_config(token_export, tmp_path, dataset="digits")
    with pytest.raises(ExportError) as error:
        finetune_run(config, str(tmp_path / "ft"))
    assert "'digits'" in str(error.value)
    assert token_export in str(error.value)
    assert "byte tokens" in str(error.value)
    assert not os.path.exists(tmp_path / "ft")


def test_token_encoder_unknown_dataset(token_export, tmp_path):
    config = text_config(token_export, tmp_path, dataset="imdb_reviewz")
    with pytest.raises(DatasetError, match="unknown text dataset 'imdb_reviewz'"):
        finetune_run(config, str(tmp_path / "ft"))
    assert not os.path.exists(tmp_path / "ft")


@pytest.mark.parametrize(
    "changes, key",
    [({"augment": True}, "augment"), ({"scaling": "refit"}, "scaling")],
)
def test_text_image_options_rejected(changes, key, token_export, tmp_path):
    config = text_config(token_export, tmp_path, **changes)
    with pytest.raises(ConfigError, match=key):
        finetune_run(config, str(tmp_path / "ft"))
    assert not os.path.exists(tmp_path / "ft")


@pytest.mark.slow
def test_text_gradual_cli(token_export, tmp_path):
    argv = [
        "--encoder",
        token_export,
        "--dataset",
        "imdb_reviews",
        "--labels",
        "100",
        "--workdir",
        str(tmp_path / "ft"),
        f"--config.data_dir={tmp_path / 'tfds'}",
        "--config.epochs_head=2",
        "--config.epochs_finetune=1",
        "--config.layer_decay=0.75",
    ]
    with mock_reviews():
        assert finetune_main(argv) == 0
    with open(tmp_path / "ft" / "metrics.json") as f:
        metrics = json.load(f)
    with open(tmp_path / "ft" / "labels.json") as f:
        split = json.load(f)
    assert metrics["labels"] == 100
    assert metrics["method"] == "bert"
    assert metrics["dataset"] == "imdb_reviews"
    assert [s["stage"] for s in metrics["stages"]] == ["head", "unfreeze_1"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert len(split["train_idx"]) == 100
    assert len(split["val_idx"]) == 20


# Dropout in fine-tuning


def dropout_classifier(rate=0.5):
    encoder = TransformerEncoder(tokens_spec(dropout=rate, depth=1), rngs=nnx.Rngs(0))
    head = Head(encoder.features, (), 2, rngs=nnx.Rngs(1))
    return Classifier(encoder, head, encoder_batch_stats_train=False)


def token_batch():
    texts = ["great fun", "bad plot", "a good film", "dull and slow"]
    return {
        "x": jnp.asarray(ByteTokenizer().encode(texts, LENGTH)),
        "y": jnp.asarray([1, 0, 1, 0], jnp.int32),
        "weight": jnp.ones(4),
    }


@functools.partial(nnx.jit, static_argnames="train")
def forward(model, x, rng, *, train):
    return model(x, train=train, rng=rng)


def test_dropout_train_only():
    model = dropout_classifier()
    x = token_batch()["x"]
    first = forward(model, x, jax.random.key(1), train=True)
    again = forward(model, x, jax.random.key(1), train=True)
    second = forward(model, x, jax.random.key(2), train=True)
    evaluated = forward(model, x, None, train=False)
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(evaluated, forward(model, x, None, train=False))
    keyed = forward(model, x, jax.random.key(1), train=False)
    np.testing.assert_array_equal(evaluated, keyed)
    np.testing.assert_array_equal(evaluated, forward(model, x, None, train=True))


def test_loss_applies_dropout():
    loss_fn = classifier_loss_fn(default_config())
    model, batch = dropout_classifier(), token_batch()
    first = loss_fn(model, batch, jax.random.key(1))[0]
    second = loss_fn(model, batch, jax.random.key(2))[0]
    plain = loss_fn(dropout_classifier(rate=0.0), batch, jax.random.key(1))[0]
    assert float(first) != float(second)
    assert float(first) != float(plain)


def one_step_params(seed):
    model = dropout_classifier()
    stage = Stage("full", (0,), 1e-2, 1, False)
    params = nnx.state(model, nnx.Param)
    labels = label_params(params, stage_rules(stage, {"embed": 0, "norm": 0}))
    trainer = PhaseTrainer(
        model,
        classifier_loss_fn(default_config()),
        masked_optimizer(labels, 1e-2, 0.0),
        rng=jax.random.key(seed),
        batch_size=4,
        frozen=frozen_mask(labels),
        scan=False,
        cache_key="dropout step",  # the three trainers compile one step
    )
    batch = token_batch()
    trainer.run_epoch({"x": np.asarray(batch["x"]), "y": np.asarray(batch["y"])})
    leaves = jax.tree.leaves(nnx.state(trainer.model(), nnx.Param))
    return [np.asarray(leaf) for leaf in leaves]


def test_dropout_step_deterministic():
    first, again, other = one_step_params(0), one_step_params(0), one_step_params(1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))
