"""Fine-tuning data for token encoders: a TFDS text classification dataset,
tokenised with the tokenizer and sequence length stored in the export.

`finetune.run` dispatches here when the export's spec has `input_kind`
"tokens", as `pretrain bert` encoders do. Label budgets, the validation set,
stages and metrics are those of image fine-tuning. Only the inputs differ:
int32 token ids [n, sequence_length] in place of scaled images.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

from finetune.run import Splits
from pretrain import config as config_lib
from pretrain.data import DatasetError, label_split, parse_budget
from pretrain.data.text import ByteTokenizer, is_text_dataset, load_labelled_texts
from pretrain.export import ExportError, LoadedEncoder
from pretrain.multihost import primary_first


def takes_tokens(spec: Mapping[str, Any]) -> bool:
    """Return whether the encoder of `spec` reads token ids, not images or
    signals."""
    return spec.get("family") == "transformer" and spec.get("input_kind") == "tokens"


def describe_inputs(spec: Mapping[str, Any]) -> str:
    """Describe the encoder's inputs for error messages."""
    if takes_tokens(spec):
        return f"text as {spec['input_shape'][0]} byte tokens"
    return f"inputs of shape {tuple(spec['input_shape'])}"


def check_not_text_dataset(config, loaded: LoadedEncoder) -> None:
    """Raise ExportError when an image or signal encoder is given a text dataset."""
    if is_text_dataset(config.dataset, config.data_dir or None):
        raise ExportError(
            f"the {loaded.metadata['method']} encoder in {config.encoder!r} takes "
            f"{describe_inputs(loaded.spec)}, but dataset {config.dataset!r} is a "
            "text dataset; fine-tune a `pretrain bert` encoder on it, or pick "
            "an image or signal dataset for this encoder"
        )


def check_text_config(config) -> None:
    """Reject the image-only options, which token ids cannot take."""
    config_lib.check(
        not config.augment,
        "augment",
        config.augment,
        "augmentation shifts and rotates images, and text inputs have none; "
        "set augment=false",
    )
    scaling = config.get("scaling", "export")
    config_lib.check(
        scaling == "export",
        "scaling",
        scaling,
        "token ids are not scaled, so a scaler cannot be refitted on them; "
        "use scaling=export",
    )


def tokenizer_of(loaded: LoadedEncoder, encoder_dir: str) -> ByteTokenizer:
    try:
        return ByteTokenizer.from_spec(loaded.spec["tokenizer"])
    except (ValueError, KeyError, TypeError) as error:
        raise ExportError(f"invalid tokenizer in {encoder_dir!r}: {error}") from None


def prepare_text_data(config, loaded: LoadedEncoder) -> Splits:
    """Tokenise `config.dataset` for the token encoder `loaded` and draw the
    labelled train and validation sets from its training pool."""
    check_text_config(config)
    # An unknown name (None) is left to load_labelled_texts, which reports it.
    if is_text_dataset(config.dataset, config.data_dir or None) is False:
        raise ExportError(
            f"the {loaded.metadata['method']} encoder in {config.encoder!r} takes "
            f"{describe_inputs(loaded.spec)}, but dataset {config.dataset!r} has "
            "no text input feature; fine-tune it on a TFDS text dataset such as "
            "'imdb_reviews', or pick an image encoder for this dataset"
        )
    tokenizer = tokenizer_of(loaded, config.encoder)
    length = loaded.spec["input_shape"][0]
    # Process 0 first, so that several processes never prepare a dataset at once.
    data = primary_first(
        lambda: load_labelled_texts(
            config.dataset,
            data_dir=config.data_dir or None,
            split_seed=config.split_seed,
        ),
        errors=(DatasetError,),
    )

    split = label_split(
        data.train_y, parse_budget(config.labels), data.num_classes, config.seed
    )

    def subset(idx: np.ndarray) -> dict[str, np.ndarray]:
        texts = [data.train_texts[i] for i in idx]
        return {"x": tokenizer.encode(texts, length), "y": data.train_y[idx]}

    return Splits(
        train=subset(split.train_idx),
        val=subset(split.val_idx),
        test={"x": tokenizer.encode(data.test_texts, length), "y": data.test_y},
        num_classes=data.num_classes,
        label_split=split,
        scaler=loaded.scaler,
    )
