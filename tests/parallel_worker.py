"""Train one autoencoder layer for the data-parallel tests, in a subprocess.

    python tests/parallel_worker.py OUT.npz --devices 8 [--mesh none]
    python tests/parallel_worker.py OUT.npz --process-id I --processes 2 --port P

The device count and the distributed runtime must be set before JAX starts,
which is why this runs in its own process.
"""

import argparse
import os
import sys


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--mesh", choices=("auto", "none"), default="auto")
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--processes", type=int)
    parser.add_argument("--port", type=int)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    import jax

    if args.processes:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"localhost:{args.port}",
            num_processes=args.processes,
            process_id=args.process_id,
            initialization_timeout=60,
        )

    import numpy as np
    import optax
    from flax import nnx

    from pretrain.autoencoder import AutoencoderLayer, autoencoder_config, layer_loss_fn
    from pretrain.export import flat_state
    from pretrain.train import PhaseTrainer, fit

    layer = AutoencoderLayer(
        16, 8, activation="sigmoid", batch_norm=False, tied=True, rngs=nnx.Rngs(0)
    )
    trainer = PhaseTrainer(
        layer,
        layer_loss_fn(
            autoencoder_config(noise="mask", noise_level=0.2), "cross_entropy"
        ),
        optax.adam(1e-2),
        rng=jax.random.key(0),
        batch_size=64,
        mesh="auto" if args.mesh == "auto" else None,
    )
    x = np.random.default_rng(0).uniform(size=(1000, 16)).astype(np.float32)
    history = fit(trainer, {"x": x}, epochs=3, progress=False)

    if jax.process_index() == 0:
        weights = flat_state(trainer.model())
        weights["loss"] = np.asarray([h["loss"] for h in history])
        weights["devices"] = np.asarray(jax.device_count())
        np.savez(args.out, **weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
