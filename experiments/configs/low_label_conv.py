"""Convolutional encoders at low label budgets on MNIST-1D.

Command::

    experiments low_label_conv --workdir runs/low_label_conv

A stacked denoising convolutional autoencoder (three stages of 32, 64 and
128 channels, kernel 5, batch norm, max pooling) is pretrained stage by stage
on MNIST-1D's unlabelled pool and fine-tuned with the `gradual`, `full`
and `linear_probe` presets, the last also with the codes standardised in
front of the head (`conv_dae_probe_std`). `scratch` trains the same
architecture from a random initialisation. All get the same learning-rate
search on validation accuracy. Conv steps run one compiled step per batch
(`scan=False`), because XLA:CPU runs convolutions inside `lax.scan` much
slower.

The head learns at 0.1 rather than the fine-tuning default of 0.01, because
globally pooled conv features are small in scale and a linear head at 0.01 is
still far from converged after its epochs.

Over 5 seeds and budgets 20 to all its runs took 51 minutes on 2 CPU cores
that it shared with other jobs.

Result (2026-12-04): pretraining helps from 20 to 100 labels (+0.13 to
+0.22) and hurts at 500 (-0.19 to -0.20). With all labels scratch reaches
0.979 and the fine-tuned pretrained encoder 0.948. The head alone is close
to fine-tuning up to 100 labels and far below it from 500 on.

The same encoder on mnist5k is the experiment `low_label_conv_mnist5k`,
with fewer cells because conv steps on 28x28 images are slow on CPU.

Results are on docs/results.md.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.datasets = ("mnist1d",)
    config.budgets = ("20", "50", "100", "500", "all")
    config.seeds = (0, 1, 2, 3, 4)
    config.strategies = ml_collections.ConfigDict(
        {
            "scratch": {"preset": "scratch", "architecture": "conv_dae"},
            "conv_dae": {"method": "conv_dae", "preset": "gradual"},
            "conv_dae_full": {"method": "conv_dae", "preset": "full"},
            "conv_dae_probe": {"method": "conv_dae", "preset": "linear_probe"},
            "conv_dae_probe_std": {
                "method": "conv_dae",
                "preset": "linear_probe",
                "finetune": {"standardize_codes": True},
            },
        }
    )
    config.pretrain = ml_collections.ConfigDict(
        {
            "stages": (32, 64, 128),
            "kernel_size": 5,
            "batch_norm": True,
            "epochs": 5,
            "batch_size": 64,
        }
    )
    config.finetune = ml_collections.ConfigDict(
        {
            "scan": False,
            "lr_head": 0.1,
            "lr_finetune": 1e-3,
            "lr_search": (0.3, 1.0, 3.0),
        }
    )
    config.baselines = ("logreg_pixels", "knn_pixels")
    return config
