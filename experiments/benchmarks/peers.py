"""The tied denoising autoencoder layer of `pretrain dae` in plain NumPy and in
PyTorch, timed per epoch next to ours.

All three train the same layer on the mnist5k pool: 784 -> 500, sigmoid
code, tied decoder kernel, masking noise 0.25, summed binary cross-entropy
per example averaged over the batch, Adam at 1e-3 (b1 0.9, b2 0.999, eps
1e-8), batch 256, float32. The NumPy loop has hand-written gradients and
trains the last partial batch as it is. Ours pads that batch to 256 rows
with weight 0, as `PhaseTrainer` always does.
"""

import numpy as np

from experiments.benchmarks.common import (
    AE_BATCH,
    AE_HIDDEN,
    AE_LEARNING_RATE,
    AE_NOISE_LEVEL,
    dae_trainer,
    epoch_seconds,
    median_pair,
    timed,
)

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warning for large |x|


class NumpyDenoisingAE:
    """A tied autoencoder layer with hand-written gradients and Adam.

    Params: `kernel` [visible, hidden], `hidden_bias` [hidden] and
    `visible_bias` [visible], initialised as `pretrain.autoencoder` does
    (Glorot-uniform kernel, zero biases).
    """

    def __init__(self, visible: int, hidden: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        limit = np.sqrt(6.0 / (visible + hidden))
        self.params = {
            "kernel": rng.uniform(-limit, limit, (visible, hidden)).astype(np.float32),
            "hidden_bias": np.zeros(hidden, np.float32),
            "visible_bias": np.zeros(visible, np.float32),
        }
        self.moments = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.velocities = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.steps = 0

    def loss_and_grads(self, x: np.ndarray, noisy: np.ndarray) -> tuple[float, dict]:
        """Mean over the batch of the summed cross-entropy of reconstructing
        `x` from `noisy`, and its gradients."""
        kernel = self.params["kernel"]
        code = sigmoid(noisy @ kernel + self.params["hidden_bias"])
        logits = code @ kernel.T + self.params["visible_bias"]
        # Stable binary cross-entropy with logits: max(z, 0) - z x + log(1 + e^-|z|).
        errors = np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))
        loss = float(np.sum(errors) / len(x))

        d_logits = (sigmoid(logits) - x) / len(x)
        d_pre = (d_logits @ kernel) * code * (1.0 - code)
        grads = {
            # The tied kernel gets a gradient from the decoder and the encoder.
            "kernel": d_logits.T @ code + noisy.T @ d_pre,
            "hidden_bias": d_pre.sum(axis=0),
            "visible_bias": d_logits.sum(axis=0),
        }
        return loss, grads

    def apply_adam(self, grads: dict) -> None:
        self.steps += 1
        correction1 = 1.0 - ADAM_B1**self.steps
        correction2 = 1.0 - ADAM_B2**self.steps
        for key, grad in grads.items():
            self.moments[key] = ADAM_B1 * self.moments[key] + (1 - ADAM_B1) * grad
            self.velocities[key] = (
                ADAM_B2 * self.velocities[key] + (1 - ADAM_B2) * grad * grad
            )
            update = (self.moments[key] / correction1) / (
                np.sqrt(self.velocities[key] / correction2) + ADAM_EPS
            )
            self.params[key] -= (AE_LEARNING_RATE * update).astype(np.float32)

    def run_epoch(self, x: np.ndarray, rng: np.random.Generator) -> float:
        """Train one shuffled epoch; return the mean batch loss."""
        losses = []
        order = rng.permutation(len(x))
        for start in range(0, len(x), AE_BATCH):
            batch = x[order[start : start + AE_BATCH]]
            keep = rng.random(batch.shape, dtype=np.float32) >= AE_NOISE_LEVEL
            loss, grads = self.loss_and_grads(batch, batch * keep)
            self.apply_adam(grads)
            losses.append(loss)
        return float(np.mean(losses))


def numpy_epoch_seconds(x: np.ndarray, epochs: int) -> tuple[float, float]:
    model = NumpyDenoisingAE(x.shape[1], AE_HIDDEN)
    rng = np.random.default_rng(0)
    model.run_epoch(x, rng)  # warm-up, as ours gets a compiling epoch
    return median_pair([timed(lambda: model.run_epoch(x, rng)) for _ in range(epochs)])


def torch_epoch_seconds(x: np.ndarray, epochs: int) -> tuple[float, float] | None:
    """Median seconds per epoch of the layer in PyTorch eager on CPU, or None
    when PyTorch is not installed (it is no dependency of this project)."""
    try:
        import torch
    except ImportError:
        return None

    torch.manual_seed(0)
    visible = x.shape[1]
    kernel = torch.nn.Parameter(torch.empty(visible, AE_HIDDEN))
    torch.nn.init.xavier_uniform_(kernel)
    hidden_bias = torch.nn.Parameter(torch.zeros(AE_HIDDEN))
    visible_bias = torch.nn.Parameter(torch.zeros(visible))
    params = [kernel, hidden_bias, visible_bias]
    optimizer = torch.optim.Adam(
        params, lr=AE_LEARNING_RATE, betas=(ADAM_B1, ADAM_B2), eps=ADAM_EPS
    )
    data = torch.from_numpy(x)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def run_epoch():
        for rows in torch.randperm(len(data)).split(AE_BATCH):
            batch = data[rows]
            noisy = batch * (torch.rand_like(batch) >= AE_NOISE_LEVEL)
            code = torch.sigmoid(noisy @ kernel + hidden_bias)
            logits = code @ kernel.T + visible_bias
            loss = bce(logits, batch, reduction="sum") / len(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    run_epoch()
    return median_pair([timed(run_epoch) for _ in range(epochs)])


def run_autoencoder(x: np.ndarray, epochs: int) -> None:
    """Print seconds per epoch of ours, NumPy and PyTorch, and our speed-ups."""
    ours = epoch_seconds(dae_trainer(x.shape[1]), {"x": x}, epochs)
    numpy_seconds = numpy_epoch_seconds(x, epochs)
    torch_seconds = torch_epoch_seconds(x, epochs)
    print(
        f"tied denoising AE layer {x.shape[1]}->{AE_HIDDEN}, batch {AE_BATCH}, "
        f"Adam, mnist5k pool of {len(x)}; median of {epochs} epochs after a "
        "warm-up epoch (wall-clock s, CPU s):"
    )
    print(f"  ours (PhaseTrainer, lax.scan): {ours[0]:.4f}, {ours[1]:.4f}")
    wall, cpu = numpy_seconds
    print(f"  NumPy, hand-written gradients: {wall:.4f}, {cpu:.4f}")
    print(f"  speed-up over NumPy: {numpy_seconds[0] / ours[0]:.2f}x wall-clock")
    if torch_seconds is None:
        print("  PyTorch not installed")
        return
    print(f"  PyTorch eager, CPU: {torch_seconds[0]:.4f}, {torch_seconds[1]:.4f}")
    print(f"  speed-up over PyTorch: {torch_seconds[0] / ours[0]:.2f}x wall-clock")
