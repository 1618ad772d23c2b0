"""Transfer from a source dataset to a target: similar or different data, few
or many labels.

Command::

    experiments transfer --workdir runs/transfer

Every pretrained strategy is a stacked autoencoder with widths (512, 256)
and ReLU, as in `experiments quick`. `ae` pretrains on the pool of the
dataset it fine-tunes on, and `scratch` trains the same architecture from a
random initialisation, on every dataset.

On `digits`, `ae_8x8` pretrains on `mnist5k_8x8` (5,000 MNIST images in the
8x8, 0..16 format of digits) and fine-tunes on digits with `gradual`,
against `ae` pretrained on digits itself.

The other targets are `mnist5k_target`, the half of mnist5k that the source
leaves out (similar data), and `mnist5k_rotated` and `mnist5k_noise`, that
half rotated or on a noise background (different data). On them the
`source_*` strategies share one encoder pretrained on `mnist5k_source`. They
fine-tune it with the presets `linear_probe`, `gradual`, `full` and `auto`,
and apply the export's input scaling (`scaling="export"`).

The default minmax scaling has one minimum and maximum over all inputs.
Source and targets both span pixel values 0..255, so refitting it on a
target changes little or nothing. The pair `source_gradual_standard` and
`source_gradual_standard_refit` therefore pretrains with per-pixel standard
scaling and fine-tunes with the export's scaler and with one refitted on
the target pool. A pixel that is constant on the source keeps a standard
deviation of 1, so the export's scaler passes the noise background of
mnist5k_noise at its raw scale.

Budgets 100 and all (1,667 training labels on the mnist5k variants, 1,197 on
digits) are the two sides of "little and much target data". The four
cases of the transfer chart are read off results.md. The mnist5k_target
section is the similar source, and the mnist5k_rotated and mnist5k_noise
sections are the different ones. In each section the 100-labels column is
little data and the all-labels column much data. docs/guide.md has the
details.

Estimate: about 72 minutes on 2 CPU cores, an upper bound that assumes
every stage runs all its epochs and `auto` always chooses `gradual`. It
starts from per-epoch and per-run times of 2-epoch smoke runs of
`experiments low_label_dense` on digits and mnist5k (1 seed, budgets 20 and
all, CPUs shared with other jobs). These are scaled to the 2,000-image pools
of the mnist5k variants and multiplied by the epochs and runs of this grid.
Measured: 22 minutes wall-clock on an otherwise idle 2-core AMD EPYC.

Result (2026-12-04, 3 seeds, docs/results.md): with the similar source
every preset ties, a few points above scratch at 100 labels. With a
different source no preset beats scratch, and on mnist5k_noise the source
encoder scores chance under the export's scaling until it is refitted.
"""

import ml_collections

SOURCE = "mnist5k_source"
TARGETS = ("mnist5k_target", "mnist5k_rotated", "mnist5k_noise")
STANDARD = {"scaling": "standard"}  # pretraining scaling: per-pixel mean and std


def _source_strategy(preset: str, pretrain=None, **finetune) -> dict:
    return {
        "method": "ae",
        "preset": preset,
        "pretrain_dataset": SOURCE,
        "datasets": TARGETS,
        "pretrain": pretrain or {},
        "finetune": finetune,
    }


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.datasets = ("digits", *TARGETS)
    config.budgets = ("100", "all")
    config.seeds = (0, 1, 2)
    config.strategies = ml_collections.ConfigDict(
        {
            "scratch": {"preset": "scratch", "architecture": "ae"},
            "ae": {"method": "ae", "preset": "gradual"},
            "ae_8x8": {
                "method": "ae",
                "preset": "gradual",
                "pretrain_dataset": "mnist5k_8x8",
                "datasets": ("digits",),
            },
            "source_linear_probe": _source_strategy("linear_probe"),
            "source_gradual": _source_strategy("gradual"),
            "source_full": _source_strategy("full"),
            "source_auto": _source_strategy("auto"),
            "source_gradual_standard": _source_strategy("gradual", STANDARD),
            "source_gradual_standard_refit": _source_strategy(
                "gradual", STANDARD, scaling="refit"
            ),
        }
    )
    config.pretrain = ml_collections.ConfigDict(
        {"hidden": (512, 256), "activation": "relu", "epochs": 50, "batch_size": 64}
    )
    # results.md ends with the four quadrants; see experiments.transfer_chart.
    config.transfer_chart = ml_collections.ConfigDict(
        {
            "similar": ("mnist5k_target",),
            "different": ("mnist5k_rotated", "mnist5k_noise"),
            "little": "100",
            "much": "all",
        }
    )
    config.finetune = ml_collections.ConfigDict(
        {
            "lr_search": (0.5, 1.0, 2.0),
            "scaling": "export",
            # auto counts fewer than this many training labels as few. The
            # default of 100 would count the 100-label budget as many, so
            # auto would never try its linear_probe branch here.
            "auto_few_labels": 200,
        }
    )
    config.baselines = ("logreg_pixels", "knn_pixels")
    return config
