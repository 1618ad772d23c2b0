"""Run an experiment grid (or one shard of it), reusing finished runs.

An experiment config has `dataset` (or `datasets`, which takes precedence
when non-empty), `budgets`, `seeds`, `strategies`, shared `pretrain` and
`finetune` sections and `baselines`. `experiments.strategies` gives the
rules for strategies and their configs, and `experiments.plan` the order of
the cells, the sharding and the directory layout.

Every run directory that contains a finished run of the same config is
reused, and one with a different config is an error raised before anything
is written. An interrupted run resumes from its last checkpoint. Each run's
wall time is stored next to it in timing.json, so a reused run reports the
time it originally took.
"""

import contextlib
import importlib
import json
import logging
import os
import pkgutil
import sys
import time

import ml_collections
import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import experiments.configs
from experiments import baselines, probes
from experiments.plan import (
    BaselineCell,
    FinetuneCell,
    PretrainRun,
    build_plan,
    shard_cells,
)
from experiments.results import (
    GRID_FILE,
    MERGED_FILE,
    SUITE_FILE,
    normalise_row,
    remove_report,
    write_csv,
)
from finetune import run as finetune_run
from pretrain import config as config_lib
from pretrain import run as pretrain_run
from pretrain.config import ConfigError
from pretrain.data import LabelSplit
from pretrain.provenance import provenance
from pretrain.workdir import (
    check_workdir,
    config_differences,
    with_added_keys,
    write_json,
    write_provenance,
)

logger = logging.getLogger(__name__)

TIMING_FILE = "timing.json"
PROBE_FILE = "probe.json"


def experiment_names() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.iter_modules(experiments.configs.__path__)
        if not info.name.startswith("_")
    )


def load_experiment(name: str) -> ml_collections.ConfigDict:
    """Load a named experiment config, adding the optional keys it lacks.

    `datasets` defaults to () and `baselines` to False. `baselines` accepts
    a bool or a tuple of names whatever its default, so the command line can
    name baselines in a config whose default is True.
    """
    names = experiment_names()
    if name not in names:
        raise ConfigError(f"unknown experiment {name!r}; known experiments: {names}")
    module = importlib.import_module(f"experiments.configs.{name}")
    if not hasattr(module, "get_config"):
        raise ConfigError(
            f"experiment {name!r} is a suite of the experiments {module.PARTS}; "
            "run it with `experiments`, or pass one of its parts"
        )
    config = module.get_config()
    if "datasets" not in config:
        config.datasets = ()
    config.baselines = ml_collections.FieldReference(
        config.get("baselines", False), field_type=object
    )
    return config


def check_experiment(experiment: ml_collections.ConfigDict) -> None:
    """Check every run's config, the datasets and every label budget."""
    build_plan(experiment, os.path.abspath("."))


def _finished(workdir: str, output: str, config: dict) -> bool:
    """Return whether `workdir` contains a finished run of exactly `config`.

    A finished run of another config is an error rather than silently reused.
    """
    if not os.path.isfile(os.path.join(workdir, output)):
        return False
    with open(os.path.join(workdir, "config.json")) as f:
        saved = with_added_keys(json.load(f), config)
    if saved != config:
        raise ConfigError(
            f"{workdir!r} contains a finished run with a different config "
            f"({config_differences(saved, config)}); use a new --workdir or "
            "delete that directory"
        )
    return True


def _pretrain_finished(run: PretrainRun) -> bool:
    return _finished(
        run.workdir, os.path.join("encoder", "encoder.json"), run.saved_config
    )


def _finetune_finished(cell: FinetuneCell) -> bool:
    return _finished(cell.workdir, "metrics.json", config_lib.to_dict(cell.config))


def read_seconds(workdir: str) -> float | None:
    """Return the wall time of the finished run in `workdir`, if recorded."""
    path = os.path.join(workdir, TIMING_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get("seconds")


def _timed(workdir: str, body):
    """Run `body()` and store its wall time in `workdir`/timing.json.

    A session that ends in an exception (an interrupt, an error) stores its
    time as `partial_seconds`, which the session that finishes the run adds.
    NOTE: a session killed outright (SIGKILL) stores nothing, so its time is
    missing from the total.
    """
    path = os.path.join(workdir, TIMING_FILE)
    earlier = 0.0
    if os.path.isfile(path):
        with open(path) as f:
            earlier = json.load(f).get("partial_seconds", 0.0)
    start = time.perf_counter()
    try:
        result = body()
    except BaseException:
        if os.path.isdir(workdir):
            elapsed = earlier + time.perf_counter() - start
            write_json(path, {"seconds": None, "partial_seconds": elapsed})
        raise
    write_json(path, {"seconds": earlier + time.perf_counter() - start})
    return result


class GridRunner:
    """Runs cells, pretraining each export once and caching probe results."""

    def __init__(self, experiment: ml_collections.ConfigDict):
        self.experiment = experiment
        self.pretrained = set()  # run directories checked or trained here
        self.probes = {}  # (encoder, budget, seed) -> probe accuracies

    def pretrain(self, run: PretrainRun) -> None:
        if run.workdir in self.pretrained:
            return
        if _pretrain_finished(run):
            logger.info("reusing the pretraining run in %s", run.workdir)
        else:
            _timed(
                run.workdir,
                lambda: pretrain_run.run(run.method, run.config, run.workdir),
            )
        self.pretrained.add(run.workdir)

    def run_cell(self, cell) -> list[dict]:
        if isinstance(cell, BaselineCell):
            return self._run_baselines(cell)
        return [self._run_finetune(cell)]

    def _run_finetune(self, cell: FinetuneCell) -> dict:
        self.pretrain(cell.pretrain)
        reused = _finetune_finished(cell)
        if reused:
            logger.info("reusing the fine-tuning run in %s", cell.workdir)
            with open(os.path.join(cell.workdir, "metrics.json")) as f:
                metrics = json.load(f)
        else:
            metrics = _timed(
                cell.workdir, lambda: finetune_run.run(cell.config, cell.workdir)
            )
        row = self._finetune_row(cell, metrics)
        if cell.strategy.pretrained:
            row.update(self._probe(cell, reused))
        logger.info(
            "%s on %s, %s labels, seed %d: test accuracy %.4f",
            cell.strategy.name,
            cell.dataset,
            cell.budget,
            cell.seed,
            metrics["test_accuracy"],
        )
        return row

    def _finetune_row(self, cell: FinetuneCell, metrics: dict) -> dict:
        strategy = cell.strategy
        return {
            "dataset": cell.dataset,
            "method": strategy.name,
            "pretrain_method": strategy.method,
            "preset": strategy.preset,
            "labels": metrics["labels"],
            "label_budget": cell.budget,
            "seed": cell.seed,
            "test_accuracy": metrics["test_accuracy"],
            "val_accuracy": metrics["val_accuracy"],
            "probe_linear": None,
            "probe_knn": None,
            "lr_multiplier": metrics["lr_multiplier"],
            "pretrain_seconds": (
                read_seconds(cell.pretrain.workdir) if strategy.pretrained else None
            ),
            "finetune_seconds": read_seconds(cell.workdir),
            # The target data's scaling: the export's scaler, or refitted.
            "scaling": metrics.get("scaling"),
            "pretrain_scaling": cell.pretrain.config.scaling,
            "pretrain_epochs": (
                cell.pretrain.config.epochs if strategy.pretrained else None
            ),
            # What `auto` chose; equal to `preset` for the other presets.
            "chosen_preset": metrics.get("preset"),
            "label_subset": os.path.join(cell.workdir, "labels.json"),
            "pretrain_run": cell.pretrain.workdir,
            "architecture": strategy.architecture,
        }

    def _probe(self, cell: FinetuneCell, reused: bool) -> dict:
        """Probe the frozen export on the cell's labelled subset (labels.json)."""
        encoder = cell.pretrain.encoder
        scaling = cell.config.scaling
        # One export may be probed on several datasets and scalings.
        source = {"encoder": encoder, "dataset": cell.dataset, "scaling": scaling}
        path = os.path.join(cell.workdir, PROBE_FILE)
        if reused and os.path.isfile(path):
            with open(path) as f:
                saved = json.load(f)
            if all(saved.get(k) == v for k, v in source.items()):
                return {key: saved[key] for key in ("probe_linear", "probe_knn")}

        key = (encoder, cell.dataset, scaling, cell.budget, cell.seed)
        if key not in self.probes:
            with open(os.path.join(cell.workdir, "labels.json")) as f:
                split = LabelSplit.from_dict(json.load(f))
            self.probes[key] = probes.probe_accuracies(
                encoder,
                cell.dataset,
                split,
                split_seed=cell.config.split_seed,
                data_dir=cell.config.data_dir,
                scaling=scaling,
            )
        write_json(path, {**source, **self.probes[key]})
        return dict(self.probes[key])

    def _run_baselines(self, cell: BaselineCell) -> list[dict]:
        """Fit the cell's baselines, or reuse the rows stored for its config."""
        path = os.path.join(cell.workdir, "results.json")
        config = {
            "dataset": cell.dataset,
            "seed": cell.seed,
            "names": list(cell.names),
            "budgets": list(cell.budgets),
            "split_seed": cell.split_seed,
            "data_dir": cell.data_dir,
        }
        if os.path.isfile(path):
            with open(path) as f:
                saved = json.load(f)
            if saved["config"] == config:
                logger.info("reusing the baseline results in %s", path)
                return saved["rows"]

        rows = baselines.baseline_rows(
            self.experiment,
            cell.seed,
            dataset=cell.dataset,
            names=cell.names,
            split_seed=cell.split_seed,
            data_dir=cell.data_dir,
        )
        for row in rows:
            split = row.pop("split")
            budget_dir = os.path.join(cell.workdir, str(row["label_budget"]))
            os.makedirs(budget_dir, exist_ok=True)
            row["label_subset"] = os.path.join(budget_dir, "labels.json")
            write_json(row["label_subset"], split.to_dict())
        write_json(path, {"config": config, "rows": rows})
        return rows


def _check_reusable(cells: list) -> None:
    """Raise for any finished run of another config before the first run starts."""
    for cell in cells:
        if isinstance(cell, FinetuneCell):
            _pretrain_finished(cell.pretrain)
            _finetune_finished(cell)


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool):
    """Show a tqdm bar over cells on stderr, only when stderr is a terminal."""
    enabled = enabled and sys.stderr.isatty()
    bar = tqdm.tqdm(
        total=total, unit="cell", desc="grid", file=sys.stderr, disable=not enabled
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.closing(bar))
        if enabled:
            # Log lines go through tqdm.write, so they do not break the bar.
            stack.enter_context(logging_redirect_tqdm())
        yield bar


def _check_not_suite_or_merge(workdir: str) -> None:
    """Reject a workdir that contains a suite run or merged results, whose
    results.csv and results.md a grid would replace."""
    for name, contents in (
        (SUITE_FILE, "a suite run"),
        (MERGED_FILE, "merged results"),
    ):
        if os.path.isfile(os.path.join(workdir, name)):
            raise ConfigError(
                f"{workdir!r} contains {contents} ({name}); give the grid a "
                "--workdir of its own"
            )


def _check_same_shard(workdir: str, name: str, shard: tuple[int, int]) -> None:
    """Reject a workdir that contains another experiment or another shard,
    whose results.csv this run would replace."""
    path = os.path.join(workdir, GRID_FILE)
    if not os.path.isfile(path):
        return
    with open(path) as f:
        saved = json.load(f)
    found = (saved.get("experiment"), tuple(saved.get("shard", (0, 1))))
    if found != (name, tuple(shard)):
        raise ConfigError(
            f"{workdir!r} already contains shard {found[1][0]}/{found[1][1]} of "
            f"experiment {found[0]!r}, not shard {shard[0]}/{shard[1]} of "
            f"{name!r}; give each experiment and each shard its own --workdir"
        )


def check_grid(
    experiment: ml_collections.ConfigDict,
    workdir: str,
    *,
    shard: tuple[int, int] = (0, 1),
    name: str = "",
) -> list:
    """Check every run of `shard` against the config and the runs already in
    `workdir`, writing nothing; return the shard's cells."""
    plan = build_plan(experiment, workdir)
    cells = shard_cells(plan, shard)
    _check_not_suite_or_merge(workdir)
    _check_same_shard(workdir, name, shard)
    _check_reusable(cells)
    return cells


def run_grid(
    experiment: ml_collections.ConfigDict,
    workdir: str,
    *,
    shard: tuple[int, int] = (0, 1),
    progress: bool = False,
    name: str = "",
) -> list[dict]:
    """Run the cells of `shard` (index, count) and write results.csv.

    Pretrains once per (pretraining config, dataset, seed) and fine-tunes
    per (dataset, strategy, budget, seed). Returns the rows of results.csv.
    """
    workdir = check_workdir(workdir)
    cells = check_grid(experiment, workdir, shard=shard, name=name)

    # A grid rerun on its workdir reuses the finished cells, so it resumes.
    resumed = os.path.isfile(os.path.join(workdir, "config.json"))
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "config.json"), config_lib.to_dict(experiment))
    write_json(
        os.path.join(workdir, GRID_FILE),
        {"experiment": name, "shard": list(shard), "cells": len(cells)},
    )
    write_provenance(workdir, provenance(), resumed=resumed)
    # results.csv is written only at the end, so one left by an earlier run
    # (of this or of another config, with --overwrite) would outlive an
    # interrupted rerun, and `experiments merge` would read it as current.
    remove_report(workdir)

    runner = GridRunner(experiment)
    rows = []
    with _progress_bar(len(cells), progress) as bar:
        for cell in cells:
            rows += [normalise_row(row) for row in runner.run_cell(cell)]
            bar.update(1)
    write_csv(os.path.join(workdir, "results.csv"), rows)
    return rows
