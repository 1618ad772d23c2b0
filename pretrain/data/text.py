"""Text datasets through TFDS, tokenised as UTF-8 bytes for masked-token training.

`load_texts` reads the text feature of a prepared TFDS text dataset, such as
`imdb_reviews` (feature `text`) or `ag_news_subset` (feature `description`),
with `builder.as_data_source()`. It never prepares or downloads: a dataset
that is not prepared as array_record in `data_dir` raises DatasetError.

`load_labelled_texts` reads the text and label features of both splits of
such a dataset for fine-tuning, and `is_text_dataset` separates text datasets
from image ones by their feature definitions alone.

`ByteTokenizer` maps each UTF-8 byte b to the id `byte_offset + b` after four
special ids, so the vocabulary has 260 entries and needs no file.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from pretrain.data.loading import (
    EMBEDDED_DATASETS,
    DatasetError,
    _stratified_test_split,
    default_data_dir,
)

_READ_BATCH = 1024  # records fetched per `__getitems__` call


@dataclasses.dataclass(frozen=True)
class ByteTokenizer:
    """Byte-level tokenizer: [CLS] bytes [SEP], then padding to a fixed length."""

    pad_id: int = 0
    cls_id: int = 1
    sep_id: int = 2
    mask_id: int = 3
    byte_offset: int = 4

    @property
    def vocab_size(self) -> int:
        return self.byte_offset + 256

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.cls_id, self.sep_id, self.mask_id)

    def encode(self, texts: list[str | bytes], length: int) -> np.ndarray:
        """Token ids int32 [len(texts), length]; longer texts are cut so that
        [CLS] and [SEP] always fit."""
        if length < 3:
            raise ValueError(f"a sequence length of {length} leaves no room for text")
        ids = np.full((len(texts), length), self.pad_id, np.int32)
        for row, text in enumerate(texts):
            data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
            body = np.frombuffer(data[: length - 2], np.uint8).astype(np.int32)
            ids[row, 0] = self.cls_id
            ids[row, 1 : 1 + len(body)] = body + self.byte_offset
            ids[row, 1 + len(body)] = self.sep_id
        return ids

    def decode(self, ids: np.ndarray) -> str:
        """Text of one row of ids; special tokens are dropped, invalid UTF-8
        is replaced."""
        ids = np.asarray(ids)
        data = bytes((ids[ids >= self.byte_offset] - self.byte_offset).tolist())
        return data.decode("utf-8", errors="replace")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "ByteTokenizer":
        """Rebuild the tokenizer from the `tokenizer` part of an encoder spec."""
        if spec.get("kind") != "byte":
            raise ValueError(
                f"tokenizer kind {spec.get('kind')!r} is not 'byte', the only "
                "tokenizer this code reads"
            )
        tokenizer = cls(
            **{field.name: spec[field.name] for field in dataclasses.fields(cls)}
        )
        if tokenizer.to_spec() != dict(spec):
            raise ValueError(
                f"tokenizer spec {dict(spec)} differs from the byte tokenizer it "
                f"describes, {tokenizer.to_spec()}"
            )
        return tokenizer

    def to_spec(self) -> dict:
        """Return the tokenizer part of a transformer encoder spec."""
        return {
            "kind": "byte",
            "vocab_size": self.vocab_size,
            "pad_id": self.pad_id,
            "cls_id": self.cls_id,
            "sep_id": self.sep_id,
            "mask_id": self.mask_id,
            "byte_offset": self.byte_offset,
        }


def text_key(name: str, info: tfds.core.DatasetInfo, requested: str = "") -> str:
    """Return the text feature to read: `requested`, else the first
    supervised key."""
    key = requested
    if not key:
        keys = info.supervised_keys
        key = keys[0] if isinstance(keys, tuple) and keys else ""
    if key not in info.features or not isinstance(
        info.features[key], tfds.features.Text
    ):
        texts = [
            k for k, f in info.features.items() if isinstance(f, tfds.features.Text)
        ]
        raise DatasetError(
            f"dataset {name!r} has no text feature {key!r}; its text features are "
            f"{texts}. Set text_key to one of them."
        )
    return key


def load_texts(
    name: str,
    *,
    data_dir: str | None = None,
    split: str = "train",
    key: str = "",
    max_examples: int = 0,
) -> list[bytes]:
    """Read the text feature of `split` (the first `max_examples`, 0 for all)."""
    data_dir = default_data_dir() if data_dir is None else data_dir
    builder = _text_builder(name, data_dir)
    feature = text_key(name, builder.info, key)
    records = _read_records(builder, name, split, data_dir, max_examples)
    texts = [_as_bytes(record[feature]) for record in records]
    if not texts:
        raise DatasetError(f"text dataset {name!r} (split {split!r}) is empty")
    return texts


@dataclasses.dataclass(frozen=True, eq=False)
class LabelledTexts:
    """Texts (UTF-8 bytes) and int32 class labels of a training pool and a
    test set that shares no example with it."""

    name: str
    train_texts: list[bytes]
    train_y: np.ndarray
    test_texts: list[bytes]
    test_y: np.ndarray
    num_classes: int
    text_key: str
    label_key: str


def is_text_dataset(name: str, data_dir: str | None = None) -> bool | None:
    """Return whether `name` is a TFDS dataset whose supervised input is a
    text feature, or None when neither the embedded datasets nor TFDS know
    the name.

    Only the builder's feature definitions are read, so nothing is prepared or
    downloaded.
    """
    if name in EMBEDDED_DATASETS:
        return False
    data_dir = default_data_dir() if data_dir is None else data_dir
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except (tfds.core.DatasetNotFoundError, ValueError):
        # ValueError: a malformed name or an unknown builder config.
        return None
    keys = builder.info.supervised_keys
    if not (isinstance(keys, tuple) and keys and isinstance(keys[0], str)):
        return False
    features = builder.info.features
    return keys[0] in features and isinstance(features[keys[0]], tfds.features.Text)


def load_labelled_texts(
    name: str,
    *,
    data_dir: str | None = None,
    split_seed: int = 0,
    test_fraction: float = 0.2,
) -> LabelledTexts:
    """Read the supervised (text, label) features of a prepared TFDS text
    dataset, such as `imdb_reviews` or `ag_news_subset`.

    As for image datasets, a `test` split is the test set. Without one, the
    test set is a stratified `test_fraction` of `train`, drawn with
    `split_seed`.
    """
    data_dir = default_data_dir() if data_dir is None else data_dir
    builder = _text_builder(name, data_dir)
    feature = text_key(name, builder.info)
    label = _label_key(name, builder.info)
    num_classes = builder.info.features[label].num_classes

    def read(split: str) -> tuple[list[bytes], np.ndarray]:
        records = _read_records(builder, name, split, data_dir)
        texts = [_as_bytes(record[feature]) for record in records]
        labels = np.asarray([record[label] for record in records], np.int64)
        _check_labels(name, split, labels, num_classes)
        return texts, labels.astype(np.int32)

    train_texts, train_y = read("train")
    if "test" in split_names(builder):
        test_texts, test_y = read("test")
    else:
        train_idx, test_idx = _stratified_test_split(
            name, train_y, test_fraction, split_seed
        )
        test_texts, test_y = [train_texts[i] for i in test_idx], train_y[test_idx]
        train_texts, train_y = [train_texts[i] for i in train_idx], train_y[train_idx]
    return LabelledTexts(
        name=name,
        train_texts=train_texts,
        train_y=train_y,
        test_texts=test_texts,
        test_y=test_y,
        num_classes=num_classes,
        text_key=feature,
        label_key=label,
    )


def split_names(builder: tfds.core.DatasetBuilder) -> list[str]:
    """Names of the builder's prepared splits; empty without split metadata
    (as under `tfds.testing.mock_data`)."""
    return list(builder.info.splits)


def _text_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    try:
        return tfds.builder(name, data_dir=data_dir)
    except (tfds.core.DatasetNotFoundError, ValueError) as error:
        # ValueError: a malformed name or an unknown builder config.
        raise DatasetError(
            f"unknown text dataset {name!r}; use a TFDS text dataset such as "
            "'imdb_reviews' or 'ag_news_subset'"
        ) from error


def _label_key(name: str, info: tfds.core.DatasetInfo) -> str:
    keys = info.supervised_keys
    key = keys[1] if isinstance(keys, tuple) and len(keys) == 2 else "label"
    feature = info.features[key] if key in info.features else None
    if not isinstance(feature, tfds.features.ClassLabel):
        raise DatasetError(
            f"text dataset {name!r} has no ClassLabel label feature {key!r} "
            f"(features: {sorted(info.features.keys())}), so it cannot be used "
            "for classification"
        )
    if feature.num_classes < 2:
        raise DatasetError(
            f"text dataset {name!r} has {feature.num_classes} classes, but "
            "classification needs at least 2"
        )
    return key


def _check_labels(name: str, split: str, labels: np.ndarray, num_classes: int):
    if labels.size == 0:
        raise DatasetError(f"text dataset {name!r} (split {split!r}) is empty")
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if outside.size:
        raise DatasetError(
            f"text dataset {name!r} ({split} split) has label {outside[0]} "
            f"outside [0, {num_classes}) ({outside.size} labels out of range); "
            f"labels must be class indices 0..{num_classes - 1}"
        )


def _read_records(
    builder: tfds.core.DatasetBuilder,
    name: str,
    split: str,
    data_dir: str,
    max_examples: int = 0,
) -> list[dict]:
    """Records of `split` (the first `max_examples`, 0 for all) through
    `as_data_source`, which never prepares or downloads."""
    prepare = (
        f"prepare it there first, for example with `tfds build {name} "
        f"--data_dir {data_dir} --file_format=array_record`"
    )
    try:
        source = builder.as_data_source(split=split)
    except (ValueError, NotImplementedError, KeyError) as error:
        if not builder.is_prepared():
            # TFDS's error then describes the folder a prepare would write,
            # which reads as if the data were there, so it is left out.
            raise DatasetError(
                f"text dataset {name!r} is not prepared in {data_dir}; {prepare}"
            ) from None
        raise DatasetError(
            f"text dataset {name!r} (split {split!r}) is not prepared as "
            f"array_record in {data_dir} ({error}); {prepare}"
        ) from error

    n = len(source) if max_examples <= 0 else min(max_examples, len(source))
    records = []
    read_batch = getattr(source, "__getitems__", None)
    for start in range(0, n, _READ_BATCH):
        indices = list(range(start, min(start + _READ_BATCH, n)))
        records += read_batch(indices) if read_batch else [source[i] for i in indices]
    return records


def _as_bytes(value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)
