"""Freezing by rules on parameter paths, turned into optax masks.

A rule is (regex, label) with label "train" or "freeze"; the first rule whose
regex matches a dotted parameter path ("encoder.layers.1.linear.kernel")
decides. Every parameter must match some rule.
"""

import logging
import re
from collections.abc import Sequence

import jax
import optax
from flax import nnx

logger = logging.getLogger(__name__)

Rule = tuple[str, str]


def dotted_path(path) -> str:
    parts = []
    for key in path:
        key = getattr(key, "key", getattr(key, "name", key))
        if key != "value":  # the leaf inside an nnx.Variable node
            parts.append(str(key))
    return ".".join(parts)


def label_params(params: nnx.State, rules: Sequence[Rule]) -> nnx.State:
    """Label each leaf of `params` "train" or "freeze" by the first matching rule."""
    for pattern, label in rules:
        if label not in ("train", "freeze"):
            raise ValueError(
                f"rule {pattern!r} has label {label!r}; use train or freeze"
            )

    unmatched = []

    def label_of(path, _):
        name = dotted_path(path)
        for pattern, label in rules:
            if re.search(pattern, name):
                return label
        unmatched.append(name)
        return "freeze"

    labels = jax.tree_util.tree_map_with_path(label_of, params)
    if unmatched:
        raise ValueError(
            f"no freezing rule covers the params {unmatched}; add a rule for them"
        )
    return labels


def log_rules(params: nnx.State, rules: Sequence[Rule], stage: str) -> None:
    """Log each rule with the number of parameter arrays it decides."""
    counts = [0] * len(rules)
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = dotted_path(path)
        for i, (pattern, _label) in enumerate(rules):
            if re.search(pattern, name):
                counts[i] += 1
                break
    for (pattern, label), count in zip(rules, counts, strict=True):
        logger.info("%s: %-6s %-36s (%d arrays)", stage, label, pattern, count)


def masked_optimizer(
    labels: nnx.State, learning_rate: float, weight_decay: float
) -> optax.GradientTransformation:
    """AdamW on the "train" leaves; `set_to_zero` on the "freeze" leaves.

    `optax.multi_transform` keeps no AdamW state for frozen leaves, so weight
    decay and momentum cannot move them. The learning rate and weight decay
    are injected into the optimizer state, so one compiled step serves every
    value of them.
    """
    adamw = optax.inject_hyperparams(optax.adamw)
    return optax.multi_transform(
        {
            "train": adamw(learning_rate=learning_rate, weight_decay=weight_decay),
            "freeze": optax.set_to_zero(),
        },
        labels,
    )


def frozen_mask(labels: nnx.State) -> nnx.State:
    """True where a leaf is frozen, as `PhaseTrainer(frozen=...)` expects."""
    return jax.tree.map(lambda label: label == "freeze", labels)
