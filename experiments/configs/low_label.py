"""Every method at low label budgets on digits, mnist5k and MNIST-1D: the
suite of the `low_label_*` experiments.

Command::

    experiments low_label --workdir runs/low_label

This runs each part below as its own grid in runs/low_label/PART, one
after another. Then runs/low_label/results.csv gets every part's rows, with
the part in the column `experiment`. runs/low_label/results.md gets the
mean test accuracy of each part's strategies per dataset and budget, and a
link to each part's own report.

Each part is designed to finish within 90 minutes on 2 CPU cores. Their
docstrings give the times they took, which add up to about 9 hours, most
of them on cores shared with other jobs. A rerun resumes: finished cells
are reused.

The parts compare strategies within themselves, each against its own
`scratch` of the same architecture: the dense MLP, the conv encoder or the
ViT.

- Dense encoders (`ae`, `dae`, `sparse_ae`, `contractive_ae`, `deep_ae`,
  `dbn`): `low_label_dense_digits`, `low_label_dense_mnist5k_ae_dae_sparse`,
  `low_label_dense_mnist5k_contractive_deep_dbn` and
  `low_label_dense_mnist1d`.
- The conv encoder (`conv_dae`): `low_label_conv` (MNIST-1D),
  `low_label_conv_digits`, `low_label_conv_mnist5k`,
  `low_label_conv_mnist5k_500` and `low_label_conv_mnist5k_all`.
- Masked prediction (`mae`, `masked_features`): `low_label_masked_digits`,
  `low_label_masked_mnist1d`, `low_label_masked_mnist5k` and
  `low_label_masked_features`.

`--shard I/N` and `--config.KEY=VALUE` apply to every part, and
`experiments merge OUT DIR_0 ... DIR_N-1` merges the shards of a suite
part by part. Results are on docs/results.md.
"""

PARTS = (
    "low_label_dense_digits",
    "low_label_dense_mnist5k_ae_dae_sparse",
    "low_label_dense_mnist5k_contractive_deep_dbn",
    "low_label_dense_mnist1d",
    "low_label_conv",
    "low_label_conv_digits",
    "low_label_conv_mnist5k",
    "low_label_conv_mnist5k_500",
    "low_label_conv_mnist5k_all",
    "low_label_masked_digits",
    "low_label_masked_mnist1d",
    "low_label_masked_mnist5k",
    "low_label_masked_features",
)
