"""Every dense pretraining method at low label budgets on digits and mnist5k.

Command::

    experiments low_label_dense --workdir runs/low_label_dense

Six methods pretrain a dense encoder on each dataset's unlabelled pool:
stacked autoencoders (`ae`), denoising (`dae`), sparse (`sparse_ae`) and
contractive (`contractive_ae`) ones, an end-to-end deep autoencoder
(`deep_ae`) and a deep belief network (`dbn`). Each export is fine-tuned
with the `gradual` preset and, from the same pretraining run, probed with
`linear_probe` (strategies `METHOD_probe`). `scratch` trains the same
architecture from a random initialisation. Every encoder has widths
(512, 256), and the autoencoders use ReLU, as `experiments quick` does.
`sparse_ae` uses sigmoid codes because its KL sparsity penalty needs codes
in (0, 1), and `dbn` keeps the sigmoid units of its method defaults.

This module is the whole grid: 13 strategies x 5 budgets x 5 seeds x 2
datasets, 650 fine-tuning runs and 60 pretraining runs, about 167 minutes on
2 CPU cores (estimate). To keep each run within 90 minutes there, the grid
also comes in three parts, each with its own command and results.md and an
estimate in its docstring:

- `low_label_dense_digits`: every method on digits, about 44 minutes.
- `low_label_dense_mnist5k_ae_dae_sparse`: ae, dae and sparse_ae on
  mnist5k, about 70 minutes.
- `low_label_dense_mnist5k_contractive_deep_dbn`: contractive_ae, deep_ae
  and dbn on mnist5k, about 70 minutes.

The estimates are upper bounds that assume every stage runs all its epochs.
They are the per-epoch and per-run times of 2-epoch smoke runs of this grid
(1 seed, budgets 20 and all, CPUs shared with other jobs) times the epochs
and runs of each grid. For scale, the same method gives 369 s for
`experiments quick`, which took 242 s on 2 idle cores.
"""

import ml_collections

METHODS = ("ae", "dae", "sparse_ae", "contractive_ae", "deep_ae", "dbn")
DATASETS = ("digits", "mnist5k")
# The pretrain overrides of a method's two strategies must be equal, so that
# they share one pretraining run.
METHOD_OVERRIDES = {
    "sparse_ae": {"activation": "sigmoid"},
    # AIS estimates of the log-likelihood only monitor the training and leave
    # the export unchanged, so they are turned off.
    "dbn": {"ais_every": 0},
}


def dense_config(
    datasets: tuple[str, ...] = DATASETS,
    methods: tuple[str, ...] = METHODS,
    *,
    scratch: bool = True,
) -> ml_collections.ConfigDict:
    """Build the grid of `methods` on `datasets`, with or without scratch."""
    config = ml_collections.ConfigDict()
    config.datasets = datasets
    config.budgets = ("20", "50", "100", "500", "all")
    config.seeds = (0, 1, 2, 3, 4)
    strategies = {}
    if scratch:
        strategies["scratch"] = {"preset": "scratch", "architecture": methods[0]}
    for method in methods:
        pretrain = METHOD_OVERRIDES.get(method, {})
        strategies[method] = {
            "method": method,
            "preset": "gradual",
            "pretrain": dict(pretrain),
        }
        strategies[f"{method}_probe"] = {
            "method": method,
            "preset": "linear_probe",
            "pretrain": dict(pretrain),
        }
    config.strategies = ml_collections.ConfigDict(strategies)
    config.pretrain = ml_collections.ConfigDict(
        {"hidden": (512, 256), "activation": "relu", "epochs": 50, "batch_size": 64}
    )
    config.finetune = ml_collections.ConfigDict({"lr_search": (0.5, 1.0, 2.0)})
    config.baselines = ("logreg_pixels", "knn_pixels")
    return config


def get_config() -> ml_collections.ConfigDict:
    return dense_config()
