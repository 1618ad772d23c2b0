"""The ordered list of runs in an experiment grid, and how shards split it.

The cells are ordered by dataset, seed, strategy and budget (strategies in
the order of `strategies.items()`, which ml_collections sorts by name),
with one baseline cell per (dataset, seed) after its fine-tune cells. Shard
i of n runs every cell whose index mod n is i, and pretrains only the runs
that its cells need: the strategy's own export, or for scratch the export
whose architecture it copies. Two shards whose cells need the same pretrain
run both train it. On CPU the same seed and config give the same bits, so
their results still merge into the unsharded ones.

Directory layout under the grid's workdir::

    pretrain/DATASET/RUN/seedS         DATASET: the dataset pretrained on.
                                       RUN: the method, or METHOD-STRATEGY
                                       when the grid pretrains one method
                                       with several configs
    finetune/DATASET/STRATEGY/BUDGET/seedS
    baselines/DATASET/seedS
"""

import collections
import dataclasses
import json
import os

import ml_collections

from experiments import baselines
from experiments import strategies as strategies_lib
from experiments.strategies import Strategy
from experiments.transfer_chart import check_chart
from pretrain import config as config_lib
from pretrain.data import label_split, load_dataset, parse_budget


@dataclasses.dataclass(frozen=True)
class PretrainRun:
    dataset: str
    method: str
    seed: int
    config: ml_collections.ConfigDict
    workdir: str

    @property
    def saved_config(self) -> dict:
        """Return the config as `pretrain.run.run` stores it in config.json."""
        return {"method": self.method, **config_lib.to_dict(self.config)}

    @property
    def encoder(self) -> str:
        return os.path.join(self.workdir, "encoder")


@dataclasses.dataclass(frozen=True)
class FinetuneCell:
    dataset: str
    strategy: Strategy
    budget: str
    seed: int
    pretrain: PretrainRun  # for scratch: the run whose architecture it copies
    config: ml_collections.ConfigDict
    workdir: str


@dataclasses.dataclass(frozen=True)
class BaselineCell:
    dataset: str
    seed: int
    names: tuple[str, ...]
    budgets: tuple[str, ...]
    split_seed: int
    data_dir: str
    workdir: str


@dataclasses.dataclass(frozen=True)
class Plan:
    cells: list  # FinetuneCell and BaselineCell, in grid order


def parse_shard(text: str) -> tuple[int, int]:
    """Parse `I/N` into (I, N) with 0 <= I < N."""
    index, sep, count = text.partition("/")
    valid = sep and index.isdecimal() and count.isdecimal()
    if valid and 0 <= int(index) < int(count):
        return int(index), int(count)
    raise config_lib.ConfigError(
        f"invalid --shard {text!r}: pass I/N with 0 <= I < N, such as 0/4"
    )


def shard_cells(plan: Plan, shard: tuple[int, int]) -> list:
    index, count = shard
    return [cell for i, cell in enumerate(plan.cells) if i % count == index]


def build_plan(experiment: ml_collections.ConfigDict, workdir: str) -> Plan:
    """Build and check every run's config, the datasets and every label budget.

    Raises ConfigError (or DatasetError) for a bad grid before anything is
    written.
    """
    strategies_lib.check_shared_sections(experiment)
    datasets = strategies_lib.experiment_datasets(experiment)
    strategies = strategies_lib.parse_strategies(experiment)
    names = baselines.baseline_names(experiment.get("baselines", False))
    shared = strategies_lib.shared_finetune_config(experiment)
    _check_budgets(experiment, datasets, shared)
    _check_pretrain_datasets(strategies, shared)
    if experiment.get("transfer_chart") is not None:
        chart = config_lib.to_dict(experiment.transfer_chart)
        check_chart(chart, datasets, tuple(experiment.budgets))

    runs = _pretrain_runs(experiment, strategies, datasets, workdir)
    cells = []
    for dataset in datasets:
        for seed in experiment.seeds:
            for strategy in strategies:
                if dataset in strategy.datasets:
                    cells += _finetune_cells(
                        experiment, strategy, runs, dataset, seed, workdir
                    )
            if names:
                cells.append(
                    BaselineCell(
                        dataset=dataset,
                        seed=seed,
                        names=names,
                        budgets=tuple(str(b) for b in experiment.budgets),
                        split_seed=shared.split_seed,
                        data_dir=shared.data_dir,
                        workdir=os.path.join(
                            workdir, "baselines", dataset, f"seed{seed}"
                        ),
                    )
                )
    return Plan(cells=cells)


def _check_budgets(experiment, datasets, shared) -> None:
    config_lib.check(
        len(experiment.budgets) > 0, "budgets", experiment.budgets, "name a budget"
    )
    config_lib.check(
        len(experiment.seeds) > 0, "seeds", experiment.seeds, "name a seed"
    )
    for dataset_name in datasets:
        dataset = load_dataset(
            dataset_name,
            split_seed=shared.split_seed,
            data_dir=shared.data_dir or None,
        )
        for budget in experiment.budgets:
            for seed in experiment.seeds:
                label_split(
                    dataset.train_y, parse_budget(budget), dataset.num_classes, seed
                )


def _check_pretrain_datasets(strategies: list[Strategy], shared) -> None:
    """Check that each `pretrain_dataset` loads and that its inputs have the
    shape of every dataset its strategy fine-tunes on."""
    shapes = {}

    def input_shape(name: str) -> tuple[int, ...]:
        if name not in shapes:
            dataset = load_dataset(
                name, split_seed=shared.split_seed, data_dir=shared.data_dir or None
            )
            shapes[name] = tuple(dataset.input_shape)
        return shapes[name]

    for strategy in strategies:
        if not strategy.pretrain_dataset:
            continue
        source = input_shape(strategy.pretrain_dataset)
        for dataset in strategy.datasets:
            config_lib.check(
                input_shape(dataset) == source,
                f"strategies.{strategy.name}.pretrain_dataset",
                strategy.pretrain_dataset,
                f"its inputs have shape {source}, but {dataset!r} has "
                f"{input_shape(dataset)}. Name a dataset with the input shape of "
                "every dataset that the strategy fine-tunes on",
            )


def _pretrain_runs(experiment, strategies, datasets, workdir) -> dict:
    """Map (strategy name, fine-tuning dataset, seed) to its PretrainRun.

    Strategies of one method with the same resolved config, pretraining
    dataset included, share a run.
    """
    grid_methods = strategies_lib.configured_methods(experiment)
    shared_split_seed = strategies_lib.shared_finetune_config(experiment).split_seed
    configs = {}
    for strategy in strategies:
        if strategy.pretrained:
            for dataset in strategy.datasets:
                for seed in experiment.seeds:
                    config = strategies_lib.pretrain_config(
                        experiment,
                        strategy,
                        grid_methods,
                        strategy.pretrain_dataset_for(dataset),
                        seed,
                    )
                    config_lib.check(
                        config.split_seed == shared_split_seed,
                        "pretrain.split_seed",
                        config.split_seed,
                        f"must equal finetune.split_seed ({shared_split_seed}), "
                        "or pretraining sees test examples",
                    )
                    configs[strategy.name, dataset, seed] = config

    run_names = _run_names(strategies, configs)
    runs = {}
    for (name, dataset, seed), config in configs.items():
        method = next(s.method for s in strategies if s.name == name)
        run_dir = os.path.join(
            workdir, "pretrain", config.dataset, run_names[name], f"seed{seed}"
        )
        runs[name, dataset, seed] = PretrainRun(
            config.dataset, method, seed, config, run_dir
        )
    return runs


def _run_names(strategies: list[Strategy], configs: dict) -> dict[str, str]:
    """Name each pretrained strategy's run directory.

    Strategies of one method whose configs agree (ignoring dataset and seed)
    share a directory. A method with several configs gets one directory per
    config, named after the first strategy that uses it.
    """
    keys = {}
    for (name, _, _), config in configs.items():
        values = config_lib.to_dict(config)
        del values["dataset"], values["seed"]
        method = next(s.method for s in strategies if s.name == name)
        keys[name] = (method, json.dumps(values, sort_keys=True))

    first_user = {}
    for name, key in keys.items():
        first_user.setdefault(key, name)
    configs_per_method = collections.Counter(method for method, _ in first_user)

    names = {}
    for name, key in keys.items():
        method = key[0]
        if configs_per_method[method] == 1:
            names[name] = method
        else:
            names[name] = f"{method}-{first_user[key]}"
    return names


def _finetune_cells(experiment, strategy, runs, dataset, seed, workdir) -> list:
    source = strategy.name if strategy.pretrained else strategy.architecture
    run = runs[source, dataset, seed]
    cells = []
    for budget in experiment.budgets:
        budget = str(budget)
        config = strategies_lib.finetune_config(
            experiment,
            strategy,
            encoder=run.encoder,
            dataset=dataset,
            budget=budget,
            seed=seed,
        )
        cell_dir = os.path.join(
            workdir, "finetune", dataset, strategy.name, budget, f"seed{seed}"
        )
        cells.append(
            FinetuneCell(dataset, strategy, budget, seed, run, config, cell_dir)
        )
    return cells
