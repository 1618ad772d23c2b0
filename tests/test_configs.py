"""Named experiment configs, and strategies that pretrain on another dataset."""

import json
import os

import ml_collections
import pytest

from experiments.configs import quick
from experiments.grid import (
    check_experiment,
    experiment_names,
    load_experiment,
    run_grid,
)
from experiments.plan import BaselineCell, FinetuneCell, build_plan
from experiments.suite import suite_parts
from pretrain.config import ConfigError


def tiny_experiment(
    strategies: dict, datasets=("digits",)
) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.datasets = datasets
    config.budgets = ("20",)
    config.seeds = (0,)
    config.strategies = ml_collections.ConfigDict(strategies)
    config.pretrain = ml_collections.ConfigDict(
        {"hidden": (8,), "epochs": 1, "batch_size": 64}
    )
    config.finetune = ml_collections.ConfigDict(
        {"lr_search": (1.0,), "epochs_head": 1, "epochs_finetune": 1}
    )
    config.baselines = False
    return config


def finetune_cells(experiment, workdir) -> dict:
    """Map (strategy name, dataset) to its fine-tuning cell."""
    plan = build_plan(experiment, str(workdir))
    return {
        (cell.strategy.name, cell.dataset): cell
        for cell in plan.cells
        if isinstance(cell, FinetuneCell)
    }


def test_configs_found():
    names = experiment_names()
    for name in ("quick", "low_label_dense_digits", "transfer", "unfreeze"):
        assert name in names


@pytest.mark.parametrize(
    "name", [name for name in experiment_names() if not suite_parts(name)]
)
def test_config_valid(name, data_dir):
    experiment = load_experiment(name)
    check_experiment(experiment)
    plan = build_plan(experiment, os.path.abspath("."))
    assert plan.cells


def test_pretrain_dataset_sets_run(data_dir, tmp_path):
    cells = finetune_cells(
        tiny_experiment(
            {
                "ae": ("ae", "gradual"),
                "ae_8x8": {"method": "ae", "pretrain_dataset": "mnist5k_8x8"},
            }
        ),
        tmp_path,
    )
    transfer = cells["ae_8x8", "digits"]
    own = cells["ae", "digits"]
    source_dir = os.path.join(str(tmp_path), "pretrain", "mnist5k_8x8", "ae", "seed0")
    assert transfer.pretrain.dataset == "mnist5k_8x8"
    assert transfer.pretrain.config.dataset == "mnist5k_8x8"
    assert transfer.pretrain.workdir == source_dir
    assert transfer.config.encoder == os.path.join(source_dir, "encoder")
    assert transfer.config.dataset == "digits"
    assert own.pretrain.config.dataset == "digits"
    assert own.pretrain.workdir != transfer.pretrain.workdir


def test_pretrain_dataset_run_shared(data_dir, tmp_path):
    targets = ("mnist5k_target", "mnist5k_rotated")
    strategies = {
        name: {
            "method": "ae",
            "preset": preset,
            "pretrain_dataset": "mnist5k_source",
        }
        for name, preset in (("gradual", "gradual"), ("probe", "linear_probe"))
    }
    strategies["scratch"] = {"preset": "scratch", "architecture": "gradual"}
    cells = finetune_cells(tiny_experiment(strategies, datasets=targets), tmp_path)
    runs = {cell.pretrain.workdir for cell in cells.values()}
    assert len(cells) == 6
    assert runs == {
        os.path.join(str(tmp_path), "pretrain", "mnist5k_source", "ae", "seed0")
    }


def test_pretrain_dataset_shape_rejected(data_dir):
    strategies = {"ae": {"method": "ae", "pretrain_dataset": "mnist5k"}}
    with pytest.raises(ConfigError, match="pretrain_dataset"):
        check_experiment(tiny_experiment(strategies))


def test_pretrain_dataset_type_rejected(data_dir):
    strategies = {"ae": {"method": "ae", "pretrain_dataset": 3}}
    with pytest.raises(ConfigError, match="pretrain_dataset"):
        check_experiment(tiny_experiment(strategies))


def test_scratch_pretrain_dataset_rejected(data_dir):
    strategies = {
        "ae": ("ae", "gradual"),
        "scratch": {
            "preset": "scratch",
            "architecture": "ae",
            "pretrain_dataset": "mnist5k_8x8",
        },
    }
    with pytest.raises(ConfigError, match="pretrain_dataset"):
        check_experiment(tiny_experiment(strategies))


# Pretraining on mnist5k_8x8 and fine-tuning on digits take about 15 s.
@pytest.mark.slow
def test_grid_pretrains_other_dataset(data_dir, tmp_path):
    strategies = {
        "ae_8x8": {
            "method": "ae",
            "preset": "linear_probe",
            "pretrain_dataset": "mnist5k_8x8",
        }
    }
    rows = run_grid(tiny_experiment(strategies), str(tmp_path))
    run_dir = os.path.join(str(tmp_path), "pretrain", "mnist5k_8x8", "ae", "seed0")
    with open(os.path.join(run_dir, "config.json")) as f:
        saved = json.load(f)
    assert saved["dataset"] == "mnist5k_8x8"
    assert len(rows) == 1
    assert rows[0]["dataset"] == "digits"
    assert rows[0]["pretrain_run"] == run_dir
    assert not os.path.exists(os.path.join(str(tmp_path), "pretrain", "digits"))


def test_quick_baselines_take_names(data_dir):
    # A config file built on `quick` may name baselines where quick has True.
    experiment = quick.get_config()
    experiment.baselines = ("logreg_pixels",)
    plan = build_plan(experiment, os.path.abspath("."))
    cells = [cell for cell in plan.cells if isinstance(cell, BaselineCell)]
    assert cells
    for cell in cells:
        assert cell.names == ("logreg_pixels",)
