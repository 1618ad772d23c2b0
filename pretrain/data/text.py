"""Text datasets through TFDS, tokenised as UTF-8 bytes for masked-token training.

`load_texts` reads the text feature of a prepared TFDS text dataset, such as
`imdb_reviews` (feature `text`) or `ag_news_subset` (feature `description`),
with `builder.as_data_source()`. It never prepares or downloads: a dataset
that is not prepared as array_record in `data_dir` raises DatasetError.

`ByteTokenizer` maps each UTF-8 byte b to the id `byte_offset + b` after four
special ids, so the vocabulary has 260 entries and needs no file.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from pretrain.data.loading import DatasetError, default_data_dir

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
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as error:
        raise DatasetError(
            f"unknown text dataset {name!r}; use a TFDS text dataset such as "
            "'imdb_reviews' or 'ag_news_subset'"
        ) from error
    feature = text_key(name, builder.info, key)
    try:
        source = builder.as_data_source(split=split)
    except (ValueError, NotImplementedError, KeyError) as error:
        raise DatasetError(
            f"text dataset {name!r} (split {split!r}) is not prepared as "
            f"array_record in {data_dir} ({error}); prepare it there first, for "
            f"example with `tfds build {name} --file_format=array_record`"
        ) from error

    n = len(source) if max_examples <= 0 else min(max_examples, len(source))
    texts = []
    for start in range(0, n, _READ_BATCH):
        indices = list(range(start, min(start + _READ_BATCH, n)))
        read_batch = getattr(source, "__getitems__", None)
        records = read_batch(indices) if read_batch else [source[i] for i in indices]
        texts += [_as_bytes(record[feature]) for record in records]
    if not texts:
        raise DatasetError(f"text dataset {name!r} (split {split!r}) is empty")
    return texts


def _as_bytes(value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)
