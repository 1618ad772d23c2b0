"""Default configs and config checks of the masked-prediction methods."""

from typing import Any

import ml_collections

from pretrain import config as config_lib
from pretrain.transformer import DTYPES, POOLINGS

check = config_lib.check


def training_config(config: ml_collections.ConfigDict) -> None:
    """Add the optimizer keys shared by the masked-prediction methods."""
    config.warmup_epochs = 5  # linear warmup from 0 to learning_rate
    config.weight_decay = 0.05  # AdamW, on linear kernels only
    config.clip_norm = 1.0  # max global gradient norm; 0 turns clipping off
    config.adam_b2 = 0.95  # AdamW second-moment decay, 0.95 as in MAE


def transformer_config(config: ml_collections.ConfigDict) -> None:
    """Add the encoder keys shared by `mae` and `bert`."""
    config.width = 64
    config.depth = 4  # Transformer blocks
    config.heads = 4
    config.mlp_ratio = 4.0  # MLP hidden width / width
    config.dropout = 0.0  # on each residual branch, in training steps
    config.pooling = "mean"  # exported features: mean of the tokens, or cls
    # Compute dtype of the encoder; params and the pooled output stay float32.
    config.dtype = "float32"  # or bfloat16


def mae_config(**changes: Any) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # 0 picks the smallest size that divides the input into at most 16
    # patches: 2 for digits (8x8), 7 for mnist5k (28x28), 4 for mnist1d (40).
    config.patch_size = 0
    transformer_config(config)
    config.decoder_width = 32
    config.decoder_depth = 2
    config.decoder_heads = 4
    config.mask_ratio = 0.75  # share of patches hidden from the encoder
    config.norm_pix_loss = False  # regress per-patch normalised values
    config.epochs = 100
    config.batch_size = 128
    config.learning_rate = 1e-3  # peak of the warmup-cosine schedule
    training_config(config)
    config.update(changes)
    return config


def masked_features_config(**changes: Any) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.hidden = (256, 128)  # dense encoder widths, bottom to top
    config.activation = "relu"
    config.batch_norm = False
    config.mask_ratio = 0.25  # share of features hidden
    config.epochs = 100
    config.batch_size = 128
    config.learning_rate = 1e-3
    training_config(config)
    config.adam_b2 = 0.999
    config.update(changes)
    return config


def bert_config(**changes: Any) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset = "imdb_reviews"  # a prepared TFDS text dataset
    config.text_key = ""  # text feature; empty: the first supervised key
    config.text_split = "train"
    config.max_examples = 0  # read at most this many texts; 0 reads all
    config.sequence_length = 128  # byte tokens, [CLS] and [SEP] included
    transformer_config(config)
    config.depth = 2
    config.dropout = 0.1
    config.pooling = "cls"
    config.select_ratio = 0.15  # share of eligible tokens predicted
    config.epochs = 10
    config.batch_size = 64
    config.learning_rate = 5e-4
    training_config(config)
    config.warmup_epochs = 1
    config.weight_decay = 0.01
    config.adam_b2 = 0.999
    config.update(changes)
    return config


def _positive_int(config, key: str) -> None:
    value = config[key]
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    check(ok, key, value, "must be a positive int")


def check_training(config: ml_collections.ConfigDict) -> None:
    check(
        0 <= config.warmup_epochs < config.epochs,
        "warmup_epochs",
        config.warmup_epochs,
        f"must be >= 0 and below epochs ({config.epochs}); for a short run, "
        f"set warmup_epochs to {max(config.epochs // 3, 0)} as well "
        "(--config.warmup_epochs with `pretrain`, --config.pretrain.warmup_epochs "
        "with `experiments`)",
    )
    check(config.weight_decay >= 0, "weight_decay", config.weight_decay, "must be >= 0")
    check(config.clip_norm >= 0, "clip_norm", config.clip_norm, "must be >= 0")
    check(0 < config.adam_b2 < 1, "adam_b2", config.adam_b2, "must be in (0, 1)")


def check_transformer(config: ml_collections.ConfigDict, prefix: str = "") -> None:
    """Check width, depth and heads (with `prefix`, the decoder's keys)."""
    for key in ("width", "depth", "heads"):
        _positive_int(config, prefix + key)
    width, heads = config[prefix + "width"], config[prefix + "heads"]
    check(
        width % 4 == 0 and width % heads == 0,
        prefix + "width",
        width,
        f"must be a multiple of 4 and of {prefix}heads ({heads})",
    )


def check_encoder(config: ml_collections.ConfigDict) -> None:
    check_transformer(config)
    check(config.mlp_ratio > 0, "mlp_ratio", config.mlp_ratio, "must be positive")
    check(0 <= config.dropout < 1, "dropout", config.dropout, "must be in [0, 1)")
    check(
        config.pooling in POOLINGS,
        "pooling",
        config.pooling,
        f"use one of {POOLINGS}",
    )
    check(
        config.dtype in DTYPES,
        "dtype",
        config.dtype,
        f"use one of {DTYPES}",
    )


def check_mae(config: ml_collections.ConfigDict) -> None:
    check(
        isinstance(config.patch_size, int) and config.patch_size >= 0,
        "patch_size",
        config.patch_size,
        "must be an int >= 0 (0 chooses one)",
    )
    check_encoder(config)
    check_transformer(config, "decoder_")
    check(
        0 < config.mask_ratio < 1,
        "mask_ratio",
        config.mask_ratio,
        "must be strictly between 0 and 1",
    )
    check_training(config)


def check_masked_features(config: ml_collections.ConfigDict) -> None:
    config_lib.check_widths(config)
    config_lib.check_choice(config, "activation", ("sigmoid", "relu", "tanh"))
    check(
        0 < config.mask_ratio < 1,
        "mask_ratio",
        config.mask_ratio,
        "must be strictly between 0 and 1",
    )
    check_training(config)


def check_bert_values(config: ml_collections.ConfigDict) -> None:
    check(
        isinstance(config.sequence_length, int) and config.sequence_length >= 3,
        "sequence_length",
        config.sequence_length,
        "must be an int >= 3: [CLS], at least one byte and [SEP]",
    )
    check_encoder(config)
    check(
        0 < config.select_ratio < 1,
        "select_ratio",
        config.select_ratio,
        "must be strictly between 0 and 1",
    )
    check(config.max_examples >= 0, "max_examples", config.max_examples, "must be >= 0")
    check_training(config)


def check_bert(config: ml_collections.ConfigDict) -> None:
    """Check the values, then reject `pretrain.run.run`, which loads images only."""
    check_bert_values(config)
    check(
        False,
        "dataset",
        config.dataset,
        "bert trains on text, which `pretrain.run.run` (the pretrain command) "
        "cannot load yet; call pretrain.bert.run_text(config, workdir) instead",
    )
