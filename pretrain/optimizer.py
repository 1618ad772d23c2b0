"""AdamW with warmup, cosine decay, gradient clipping and a weight-decay mask.

Weight decay applies to the kernels of linear maps only (param paths ending
in `kernel`). Biases, layer-norm scales, token embedding tables, the CLS
token and the MAE mask token are not decayed, as in BERT and MAE training.
"""

import jax
import optax


def param_path(path) -> str:
    """Dotted name of a param leaf, without the `value` of its nnx.Variable."""
    parts = []
    for key in path:
        key = getattr(key, "key", getattr(key, "name", key))
        if key != "value":
            parts.append(str(key))
    return ".".join(parts)


def decay_mask(params):
    """True at the params that get weight decay: the kernels of linear maps."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: param_path(path).endswith("kernel"), params
    )


def steps_per_epoch(n: int, batch_size: int, drop_remainder: bool) -> int:
    """Steps `pretrain.train.PhaseTrainer` takes per epoch over n examples."""
    return n // batch_size if drop_remainder else -(-n // batch_size)


def warmup_cosine(
    learning_rate: float, warmup_steps: int, total_steps: int
) -> optax.Schedule:
    """Linear warmup from 0 to `learning_rate`, then cosine decay to 0 at
    `total_steps`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1),
        end_value=0.0,
    )


def adamw_warmup_cosine(
    learning_rate: float,
    *,
    warmup_steps: int,
    total_steps: int,
    weight_decay: float,
    clip_norm: float,
    b2: float = 0.999,
) -> optax.GradientTransformation:
    """Clip gradients to global norm `clip_norm` (0 turns clipping off), then
    AdamW on the warmup-cosine schedule with `decay_mask`."""
    adamw = optax.adamw(
        warmup_cosine(learning_rate, warmup_steps, total_steps),
        b2=b2,
        weight_decay=weight_decay,
        mask=decay_mask,
    )
    if clip_norm <= 0:
        return adamw
    return optax.chain(optax.clip_by_global_norm(clip_norm), adamw)


def optimizer_from_config(config, n: int) -> optax.GradientTransformation:
    """`adamw_warmup_cosine` for `config.epochs` epochs over n examples.

    Reads learning_rate, warmup_epochs, epochs, batch_size, drop_remainder,
    weight_decay, clip_norm and adam_b2.
    """
    steps = steps_per_epoch(n, config.batch_size, config.drop_remainder)
    return adamw_warmup_cosine(
        config.learning_rate,
        warmup_steps=config.warmup_epochs * steps,
        total_steps=config.epochs * steps,
        weight_decay=config.weight_decay,
        clip_norm=config.clip_norm,
        b2=config.adam_b2,
    )
