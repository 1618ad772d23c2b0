"""The results.csv format of an experiment grid: columns, writing and reading.

One row per fine-tune cell or baseline fit. `method` is the strategy (or
baseline) name and `pretrain_method` the pretraining method behind it (empty
for scratch and baselines). `probe_linear` and `probe_knn` are the test
accuracies of frozen-feature probes (empty for scratch and baselines). The
`*_seconds` columns are wall times of the original runs, and
`pretrain_seconds` is empty for scratch. `label_subset` is the absolute path
of the labels.json that contains the cell's train_idx and val_idx.
"""

import csv
import io
import os

from pretrain.config import ConfigError
from pretrain.workdir import write_text

COLUMNS = (
    "dataset",
    "method",
    "pretrain_method",
    "preset",
    "labels",
    "label_budget",
    "seed",
    "test_accuracy",
    "val_accuracy",
    "probe_linear",
    "probe_knn",
    "lr_multiplier",
    "pretrain_seconds",
    "finetune_seconds",
    "scaling",
    "pretrain_scaling",
    "pretrain_epochs",
    "chosen_preset",
    "label_subset",
    "pretrain_run",
    "architecture",
)
INT_COLUMNS = ("labels", "seed", "pretrain_epochs")
FLOAT_COLUMNS = (
    "test_accuracy",
    "val_accuracy",
    "probe_linear",
    "probe_knn",
    "lr_multiplier",
    "pretrain_seconds",
    "finetune_seconds",
)
# A row is one (dataset, method, label budget, seed); merged shards must not
# repeat one.
ROW_KEY = ("dataset", "method", "label_budget", "seed")


def row_key(row: dict) -> tuple:
    return tuple(str(row[column]) for column in ROW_KEY)


def normalise_row(row: dict) -> dict:
    """Return `row` with exactly `COLUMNS`, as `read_csv` would give it back.

    A missing number is None and a missing text value "".
    """
    numeric = INT_COLUMNS + FLOAT_COLUMNS
    normalised = {}
    for column in COLUMNS:
        value = row.get(column)
        normalised[column] = "" if value is None and column not in numeric else value
    return normalised


def write_csv(path: str, rows: list[dict]) -> None:
    """Write `rows` atomically with the `COLUMNS` header; None becomes empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_csv(path: str) -> list[dict]:
    """Read a results.csv back into rows with ints, floats and None."""
    if not os.path.isfile(path):
        raise ConfigError(f"results file {path!r} not found; run the grid first")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = sorted(set(ROW_KEY) - set(reader.fieldnames or ()))
        if missing:
            raise ConfigError(
                f"{path!r} is not an experiment results.csv: columns {missing} "
                "are missing"
            )
        try:
            return [_parse_row(row) for row in reader]
        except (csv.Error, ValueError, TypeError) as error:
            raise ConfigError(
                f"{path!r} has a damaged row on line {reader.line_num} "
                f"({error}); run the grid again to write it anew"
            ) from None


def _parse_row(row: dict) -> dict:
    parsed = dict(row)
    for column in INT_COLUMNS:
        if column in row:
            parsed[column] = int(row[column]) if row[column] != "" else None
    for column in FLOAT_COLUMNS:
        if column in row:
            parsed[column] = float(row[column]) if row[column] != "" else None
    return parsed


# The shard and experiment of a grid run, in its workdir.
GRID_FILE = "grid.json"
# The shards that `experiments merge` combined, in its output directory.
MERGED_FILE = "merged.json"
# The name and parts of a suite run, in its workdir.
SUITE_FILE = "suite.json"

# results.csv and every file that `experiments.report.write_report` may write.
REPORT_FILES = (
    "results.csv",
    "results.md",
    "accuracy_vs_labels.png",
    "transfer_chart.png",
    "accuracy_vs_pretrain_epochs.png",
)


def remove_report(workdir: str) -> None:
    """Delete the results of an earlier run in `workdir`, so that a run that
    stops before it writes new ones leaves none that look current."""
    for name in REPORT_FILES:
        path = os.path.join(workdir, name)
        if os.path.isfile(path):
            os.remove(path)
