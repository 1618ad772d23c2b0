"""The convolutional encoder of `low_label_conv` on mnist5k, at 20, 50 and
100 labels.

Command::

    experiments low_label_conv_mnist5k --workdir runs/low_label_conv_mnist5k

The same stacked denoising convolutional autoencoder, fine-tuning settings
and learning-rate search as `low_label_conv`, on mnist5k's 28x28 images,
over 5 seeds, with the `gradual` and `linear_probe` presets. `full` is left
out, and so are the budgets 500 and all, because on 2 CPU cores a fine-tuning
cell with its three-rate search takes minutes on these images.

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs import low_label_conv


def get_config() -> ml_collections.ConfigDict:
    config = low_label_conv.get_config()
    config.datasets = ("mnist5k",)
    config.budgets = ("20", "50", "100")
    del config.strategies["conv_dae_full"]
    config.strategies["conv_dae_probe"] = {
        "method": "conv_dae",
        "preset": "linear_probe",
    }
    return config
