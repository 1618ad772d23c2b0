"""Masked-prediction pretraining at low label budgets on digits and MNIST-1D.

Command::

    experiments low_label_masked --workdir runs/low_label_masked

`mae` pretrains a small ViT (depth 2, width 64, 4 heads) by masked patch
prediction. Its patches are 2x2 on digits' 8x8 images and 4 samples long on
MNIST-1D's 40-sample signals. It is fine-tuned with the `gradual` preset,
which unfreezes one Transformer block per stage from the top down.
`masked_features` pretrains the dense MLP encoder by masked-feature
reconstruction on digits. `scratch` trains the ViT from a random
initialisation. Every strategy gets the same learning-rate search.

This module is the whole grid, over 5 seeds and budgets 20, 50, 100, 500
and all. To keep each run within 90 minutes on 2 CPU cores, it also comes
in two parts, each with its own command and results.md:

- `low_label_masked_digits`: the three strategies on digits;
- `low_label_masked_mnist1d`: `mae` and `scratch` on MNIST-1D.

`low_label_masked_mnist5k` runs `mae` and `scratch` on mnist5k, and
`low_label_masked_features` runs `masked_features` on mnist5k and MNIST-1D.

Results are on docs/results.md.
"""

import ml_collections

DATASETS = ("digits", "mnist1d")


def masked_config(datasets: tuple[str, ...] = DATASETS) -> ml_collections.ConfigDict:
    """Build the grid on `datasets`."""
    config = ml_collections.ConfigDict()
    config.datasets = datasets
    config.budgets = ("20", "50", "100", "500", "all")
    config.seeds = (0, 1, 2, 3, 4)
    config.strategies = ml_collections.ConfigDict(
        {
            "scratch": {"preset": "scratch", "architecture": "mae"},
            "mae": {"method": "mae", "preset": "gradual"},
            "masked_features": {
                "method": "masked_features",
                "preset": "gradual",
                "datasets": ("digits",),
            },
        }
    )
    # Two blocks rather than the default four halve the cost of every cell.
    config.pretrain = ml_collections.ConfigDict({"epochs": 50, "depth": 2})
    config.finetune = ml_collections.ConfigDict(
        {
            "lr_finetune": 1e-3,
            "epochs_head": 30,
            "epochs_finetune": 15,
            "lr_search": (0.3, 1.0, 3.0),
        }
    )
    config.baselines = ("logreg_pixels", "knn_pixels")
    return config


def get_config() -> ml_collections.ConfigDict:
    return masked_config()
