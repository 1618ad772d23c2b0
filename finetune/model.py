"""The fine-tuned model: an exported encoder with a task head on top."""

from collections.abc import Sequence

import jax
from flax import nnx


class Head(nnx.Module):
    """A linear head, or an MLP head with ReLU hidden layers."""

    def __init__(
        self, in_features: int, hidden: Sequence[int], num_classes: int, *, rngs
    ):
        widths = [in_features, *hidden, num_classes]
        self.layers = nnx.List(
            [
                nnx.Linear(widths[i], widths[i + 1], rngs=rngs)
                for i in range(len(widths) - 1)
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


class Classifier(nnx.Module):
    """Encoder then head, returning class logits.

    `encoder_batch_stats_train` is False for a pretrained encoder: its batch
    norm then runs in inference mode in training steps too, so its running
    statistics never change.
    """

    def __init__(
        self,
        encoder: nnx.Module,
        head: Head,
        *,
        encoder_batch_stats_train: bool,
    ):
        self.encoder = encoder
        self.head = head
        self.encoder_batch_stats_train = encoder_batch_stats_train

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        code = self.encoder(x, train=train and self.encoder_batch_stats_train)
        return self.head(code)


def head_spec(hidden: Sequence[int], num_classes: int) -> dict:
    return {"hidden": [int(h) for h in hidden], "num_classes": int(num_classes)}
