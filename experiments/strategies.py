"""Strategies of an experiment grid and the pretrain and fine-tune configs they get.

A strategy is either a `(method, preset)` tuple or a dict with the keys in
`STRATEGY_KEYS`. `method` is a pretraining method ("" for scratch) and
`preset` a fine-tuning preset (default "gradual"). `pretrain` and `finetune`
are overrides for this strategy only. `datasets` lists the datasets it runs
on (default: all of the experiment's). Names outside the experiment's
`datasets` are skipped with a warning, so `--config.datasets` can narrow a
grid; a strategy left with none does not run. `architecture` is for scratch
only: the pretrained strategy whose export gives the architecture (default:
the first pretrained strategy by name, the order in which ml_collections
lists the keys). `pretrain_dataset` is for pretrained strategies only: the
dataset to pretrain on, in place of the dataset being fine-tuned on (default:
that dataset). Its inputs must have the shape of every dataset the strategy
fine-tunes on.

Config rules, in the order they apply:

- The method's defaults, then the experiment's shared `pretrain` section, then
  the strategy's `pretrain` overrides. A shared key that a method lacks is
  skipped for that method when another pretrained method of the grid has it
  (`hidden` for ae next to `patch_size` for mae). A shared key that no method
  of the grid has is an error, and so is an unknown key in a strategy's
  overrides.
- The fine-tuning defaults, then the shared `finetune` section, then the
  strategy's `finetune` overrides. Every fine-tuning key is checked.
- The grid sets `dataset`, `seed`, `encoder`, `labels` and `preset` itself,
  so those keys are errors in any section. `split_seed` and `data_dir` may
  be set in the shared sections only, so that every strategy gets the same
  pool, test set and label subsets.
"""

import dataclasses
import difflib
import logging
import re
from collections.abc import Mapping

import ml_collections

from finetune import run as finetune_run
from pretrain import config as config_lib
from pretrain import run as pretrain_run
from pretrain.config import ConfigError
from pretrain.methods import MethodError, get_method
from pretrain.rng import draw_rng_impl

logger = logging.getLogger(__name__)

STRATEGY_KEYS = (
    "method",
    "preset",
    "pretrain",
    "finetune",
    "datasets",
    "architecture",
    "pretrain_dataset",
)
# Keys whose value the grid sets per run.
GRID_KEYS = ("dataset", "seed", "encoder", "labels", "preset")
# Keys that must be equal for every strategy, so that label subsets are paired.
SHARED_ONLY_KEYS = ("split_seed", "data_dir")
# Strategy names become directory names.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclasses.dataclass(frozen=True)
class Strategy:
    name: str
    method: str  # pretraining method; "" for scratch
    preset: str
    pretrain: dict  # this strategy's pretrain overrides
    finetune: dict  # this strategy's fine-tune overrides
    datasets: tuple[str, ...]
    architecture: str  # scratch only: the strategy whose export it copies
    pretrain_dataset: str = ""  # "": the dataset being fine-tuned on

    @property
    def pretrained(self) -> bool:
        return self.preset != "scratch"

    def pretrain_dataset_for(self, dataset: str) -> str:
        """Return the dataset to pretrain on when fine-tuning on `dataset`."""
        return self.pretrain_dataset or dataset


def experiment_datasets(experiment: ml_collections.ConfigDict) -> tuple[str, ...]:
    """Return `datasets` when it is set and non-empty, else `(dataset,)`."""
    datasets = tuple(experiment.get("datasets", ()) or ())
    if not datasets:
        datasets = (experiment.get("dataset", ""),)
    for name in datasets:
        config_lib.check(
            isinstance(name, str) and bool(name),
            "datasets",
            datasets,
            "name at least one dataset, as config.dataset or config.datasets",
        )
    config_lib.check(
        len(set(datasets)) == len(datasets), "datasets", datasets, "has duplicates"
    )
    return datasets


def configured_methods(experiment: ml_collections.ConfigDict) -> set[str]:
    """Return the pretraining method of every strategy in the config, including
    strategies that `--config.datasets` narrows out.

    Shared pretrain keys are checked against these, so a narrowed grid
    accepts the keys that the whole grid accepts.
    """
    methods = set()
    for value in experiment.strategies.values():
        if isinstance(value, tuple | list):
            method = value[0]
        else:
            method = _plain(value).get("method", "")
        if method:
            methods.add(method)
    return methods


def parse_strategies(experiment: ml_collections.ConfigDict) -> list[Strategy]:
    """Normalise every entry of `experiment.strategies` to a `Strategy`."""
    datasets = experiment_datasets(experiment)
    strategies = [
        _parse_one(name, value, datasets)
        for name, value in experiment.strategies.items()
    ]
    strategies = [s for s in strategies if s.datasets]
    pretrained = [s.name for s in strategies if s.pretrained]
    if not pretrained:
        raise ConfigError("an experiment needs at least one pretrained strategy")
    return [_with_architecture(s, strategies, pretrained[0]) for s in strategies]


def _parse_one(name: str, value, datasets: tuple[str, ...]) -> Strategy:
    key = f"strategies.{name}"
    config_lib.check(
        bool(_NAME_PATTERN.fullmatch(name)),
        key,
        name,
        "strategy names must be letters, digits, '_', '.' or '-'",
    )
    if isinstance(value, tuple | list):
        config_lib.check(
            len(value) == 2, key, value, "a tuple strategy is (method, preset)"
        )
        value = {"method": value[0], "preset": value[1]}
    config_lib.check(
        isinstance(value, Mapping | ml_collections.ConfigDict),
        key,
        value,
        "a strategy is a (method, preset) tuple or a dict",
    )
    fields = _plain(value)
    for field in fields:
        if field not in STRATEGY_KEYS:
            close = difflib.get_close_matches(field, STRATEGY_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            config_lib.check(
                False,
                f"{key}.{field}",
                fields[field],
                f"not a strategy key{hint} Valid keys: {list(STRATEGY_KEYS)}",
            )
    own = tuple(fields.get("datasets") or datasets)
    outside = [d for d in own if d not in datasets]
    if outside:
        # A grid narrowed with --config.datasets skips a strategy where the
        # narrowed list leaves it no dataset.
        logger.warning(
            "strategy %s: datasets %s are not among the experiment's %s; "
            "it does not run on them",
            name,
            outside,
            list(datasets),
        )
    strategy = Strategy(
        name=name,
        method=fields.get("method", ""),
        preset=fields.get("preset", "gradual"),
        pretrain=dict(fields.get("pretrain") or {}),
        finetune=dict(fields.get("finetune") or {}),
        datasets=tuple(d for d in own if d in datasets),
        architecture=fields.get("architecture", ""),
        pretrain_dataset=fields.get("pretrain_dataset", ""),
    )
    _check_strategy(strategy, datasets)
    return strategy


def _plain(value) -> dict:
    if isinstance(value, ml_collections.ConfigDict):
        return config_lib.to_dict(value)
    return dict(value)


def _check_strategy(strategy: Strategy, datasets: tuple[str, ...]) -> None:
    key = f"strategies.{strategy.name}"
    if strategy.pretrained:
        config_lib.check(
            bool(strategy.method),
            f"{key}.method",
            strategy.method,
            "name a pretraining method; only the scratch preset takes none",
        )
        try:
            get_method(strategy.method)
        except MethodError as error:
            raise ConfigError(f"{key}.method: {error}") from None
        config_lib.check(
            not strategy.architecture,
            f"{key}.architecture",
            strategy.architecture,
            "only a scratch strategy takes an architecture",
        )
        config_lib.check(
            isinstance(strategy.pretrain_dataset, str),
            f"{key}.pretrain_dataset",
            strategy.pretrain_dataset,
            "must be a dataset name",
        )
    else:
        config_lib.check(
            not strategy.method,
            f"{key}.method",
            strategy.method,
            "scratch takes no pretraining method",
        )
        config_lib.check(
            not strategy.pretrain,
            f"{key}.pretrain",
            strategy.pretrain,
            "scratch takes no pretrain overrides; set them on its architecture",
        )
        config_lib.check(
            not strategy.pretrain_dataset,
            f"{key}.pretrain_dataset",
            strategy.pretrain_dataset,
            "scratch takes no pretrain_dataset; set it on its architecture",
        )
    for section in ("pretrain", "finetune"):
        for field in getattr(strategy, section):
            config_lib.check(
                field not in GRID_KEYS + SHARED_ONLY_KEYS,
                f"{key}.{section}.{field}",
                getattr(strategy, section)[field],
                "the grid sets this key, or it must be the same for every "
                "strategy (set it in the shared section)",
            )


def _with_architecture(
    strategy: Strategy, strategies: list[Strategy], default: str
) -> Strategy:
    if strategy.pretrained:
        return strategy
    name = strategy.architecture or default
    by_name = {s.name: s for s in strategies}
    key = f"strategies.{strategy.name}.architecture"
    config_lib.check(
        name in by_name and by_name[name].pretrained,
        key,
        name,
        f"name a pretrained strategy: one of "
        f"{[s.name for s in strategies if s.pretrained]}",
    )
    missing = sorted(set(strategy.datasets) - set(by_name[name].datasets))
    config_lib.check(
        not missing,
        key,
        name,
        f"strategy {name!r} does not run on {missing}, so it has no export there",
    )
    return dataclasses.replace(strategy, architecture=name)


def check_shared_sections(experiment: ml_collections.ConfigDict) -> None:
    """Reject grid-set keys in the shared `pretrain` and `finetune` sections."""
    for section in ("pretrain", "finetune"):
        for field, value in experiment[section].items():
            config_lib.check(
                field not in GRID_KEYS,
                f"{section}.{field}",
                value,
                "the grid sets this key for every run",
            )


def pretrain_config(
    experiment: ml_collections.ConfigDict,
    strategy: Strategy,
    grid_methods: set[str],
    dataset: str,
    seed: int,
) -> ml_collections.ConfigDict:
    """Build and check the pretraining config of `strategy` on `dataset`, the
    dataset it pretrains on (`Strategy.pretrain_dataset_for`)."""
    own_keys = set(pretrain_run.default_config(strategy.method))
    other_keys = set()
    for method in grid_methods:
        other_keys |= set(pretrain_run.default_config(method))
    shared = {}
    for field, value in config_lib.to_dict(experiment.pretrain).items():
        if field in own_keys:
            shared[field] = value
        elif field not in other_keys:
            # Report it as an unknown key of this method's config.
            shared[field] = value
    overrides = {**shared, **strategy.pretrain, "dataset": dataset, "seed": seed}
    try:
        config = config_lib.build_config(
            lambda: pretrain_run.default_config(strategy.method), overrides=overrides
        )
        # As pretrain.run records it, so that finished runs match.
        config.rng_impl = draw_rng_impl(config.rng_impl)
        pretrain_run.check_common(config)
        get_method(strategy.method).check_config(config)
        pretrain_run.check_stream(strategy.method, config)
    except ConfigError as error:
        # The keys come from the experiment's pretrain section or the
        # strategy's own, so the message names both places to look.
        raise ConfigError(
            f"pretrain config of strategy {strategy.name!r} (its pretrain keys "
            f"and the experiment's pretrain section): {error}"
        ) from None
    return config


def finetune_config(
    experiment: ml_collections.ConfigDict,
    strategy: Strategy,
    *,
    encoder: str,
    dataset: str,
    budget: str,
    seed: int,
) -> ml_collections.ConfigDict:
    """Build and check the fine-tuning config of one grid cell."""
    overrides = {
        **config_lib.to_dict(experiment.finetune),
        **strategy.finetune,
        "encoder": encoder,
        "dataset": dataset,
        "labels": budget,
        "preset": strategy.preset,
        "seed": seed,
    }
    try:
        config = config_lib.build_config(
            finetune_run.default_config, overrides=overrides
        )
        finetune_run.check_config(config)
    except ConfigError as error:
        raise ConfigError(
            f"finetune config of strategy {strategy.name!r} (its preset and "
            f"finetune keys and the experiment's finetune section): {error}"
        ) from None
    return config


def shared_finetune_config(
    experiment: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
    """Return the fine-tuning defaults with the shared section applied."""
    return config_lib.build_config(
        finetune_run.default_config,
        overrides=config_lib.to_dict(experiment.finetune),
    )
