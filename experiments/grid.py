"""Run an experiment grid, skipping runs whose outputs already exist."""

import csv
import importlib
import io
import json
import logging
import os
import pkgutil

import ml_collections

import experiments.configs
from experiments.baselines import baseline_rows
from finetune import run as finetune_run
from pretrain import config as config_lib
from pretrain import run as pretrain_run
from pretrain.config import ConfigError
from pretrain.data import label_split, load_dataset, parse_budget
from pretrain.methods import get_method
from pretrain.provenance import provenance
from pretrain.workdir import check_workdir, write_json, write_text

logger = logging.getLogger(__name__)

COLUMNS = (
    "dataset",
    "method",
    "preset",
    "labels",
    "label_budget",
    "seed",
    "test_accuracy",
    "val_accuracy",
    "lr_multiplier",
)


def experiment_names() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.iter_modules(experiments.configs.__path__)
        if not info.name.startswith("_")
    )


def load_experiment(name: str) -> ml_collections.ConfigDict:
    names = experiment_names()
    if name not in names:
        raise ConfigError(f"unknown experiment {name!r}; known experiments: {names}")
    module = importlib.import_module(f"experiments.configs.{name}")
    return module.get_config()


def _finished(workdir: str, output: str, config: dict) -> bool:
    """Return whether `workdir` contains a finished run of exactly `config`.

    A finished run of another config is an error rather than silently reused.
    """
    if not os.path.isfile(os.path.join(workdir, output)):
        return False
    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    if saved != config:
        changed = sorted(
            k for k in set(saved) | set(config) if saved.get(k) != config.get(k)
        )
        raise ConfigError(
            f"{workdir!r} contains a finished run with a different config (keys "
            f"{changed} differ); use a new --workdir or delete that directory"
        )
    logger.info("reusing the finished run in %s", workdir)
    return True


def _pretrain(method, experiment, seed, workdir) -> str:
    overrides = {
        "dataset": experiment.dataset,
        "seed": seed,
        **config_lib.to_dict(experiment.pretrain),
    }
    config = config_lib.build_config(
        lambda: pretrain_run.default_config(method), overrides=overrides
    )
    saved = {"method": method, **config_lib.to_dict(config)}
    if _finished(workdir, os.path.join("encoder", "encoder.json"), saved):
        return os.path.join(workdir, "encoder")
    return pretrain_run.run(method, config, workdir)


def _finetune(encoder, preset, budget, experiment, seed, workdir) -> dict:
    overrides = {
        "encoder": encoder,
        "dataset": experiment.dataset,
        "labels": budget,
        "preset": preset,
        "seed": seed,
        **config_lib.to_dict(experiment.finetune),
    }
    config = config_lib.build_config(finetune_run.default_config, overrides=overrides)
    if _finished(workdir, "metrics.json", config_lib.to_dict(config)):
        with open(os.path.join(workdir, "metrics.json")) as f:
            return json.load(f)
    return finetune_run.run(config, workdir)


def check_experiment(experiment: ml_collections.ConfigDict) -> None:
    """Validate every run's config, the dataset and every label budget before
    the first run starts, so a bad grid fails before it writes anything."""
    for name, (method, preset) in experiment.strategies.items():
        if preset != "scratch":
            pretrain_config = config_lib.build_config(
                lambda method=method: pretrain_run.default_config(method),
                overrides={
                    "dataset": experiment.dataset,
                    **config_lib.to_dict(experiment.pretrain),
                },
            )
            pretrain_run.check_common(pretrain_config)
            get_method(method).check_config(pretrain_config)
        config = config_lib.build_config(
            finetune_run.default_config,
            overrides={
                "encoder": "-",
                "preset": preset,
                **config_lib.to_dict(experiment.finetune),
            },
        )
        finetune_run.check_config(config)
        if preset == "scratch" and method:
            raise ConfigError(f"strategy {name!r}: scratch takes no pretraining method")
    if not any(preset != "scratch" for _, preset in experiment.strategies.values()):
        raise ConfigError("an experiment needs at least one pretrained strategy")

    dataset = load_dataset(experiment.dataset)
    for budget in experiment.budgets:
        for seed in experiment.seeds:
            label_split(
                dataset.train_y, parse_budget(budget), dataset.num_classes, seed
            )


def run_grid(experiment: ml_collections.ConfigDict, workdir: str) -> list[dict]:
    """Pretrain once per (method, seed), fine-tune per (strategy, budget, seed)."""
    workdir = check_workdir(workdir)
    check_experiment(experiment)
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "config.json"), config_lib.to_dict(experiment))
    write_json(os.path.join(workdir, "provenance.json"), provenance())
    rows = []
    for seed in experiment.seeds:
        exports = {}
        for name, (method, preset) in experiment.strategies.items():
            if preset != "scratch":
                run_dir = os.path.join(workdir, "pretrain", method, f"seed{seed}")
                exports[name] = _pretrain(method, experiment, seed, run_dir)
        architecture = next(iter(exports.values()))
        for name, (_, preset) in experiment.strategies.items():
            encoder = exports.get(name, architecture)
            for budget in experiment.budgets:
                run_dir = os.path.join(
                    workdir, "finetune", name, str(budget), f"seed{seed}"
                )
                metrics = _finetune(encoder, preset, budget, experiment, seed, run_dir)
                row = {key: metrics.get(key) for key in COLUMNS}
                row["method"] = name
                rows.append(row)
                logger.info(
                    "%s, %s labels, seed %d: test accuracy %.4f",
                    name,
                    budget,
                    seed,
                    metrics["test_accuracy"],
                )
        if experiment.baselines:
            rows += baseline_rows(experiment, seed)
    write_csv(os.path.join(workdir, "results.csv"), rows)
    return rows


def write_csv(path: str, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
