"""The convolutional encoder of `low_label_conv` on mnist5k at 100 labels.

Command::

    experiments low_label_conv_mnist5k --workdir runs/low_label_conv_mnist5k

The same stacked denoising convolutional autoencoder, fine-tuning settings
and learning-rate search as `low_label_conv`, on mnist5k's 28x28 images. It
runs one budget, 3 seeds and the `gradual` preset only, because on 2 CPU
cores one fine-tuning cell with its three-rate search takes several minutes.

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs import low_label_conv


def get_config() -> ml_collections.ConfigDict:
    config = low_label_conv.get_config()
    config.datasets = ("mnist5k",)
    config.budgets = ("100",)
    # Three seeds, as in the run on docs/results.md. low_label_conv has five.
    config.seeds = (0, 1, 2)
    del config.strategies["conv_dae_full"]
    return config
