"""Suites of experiment grids: parts, combined results, shards and checks."""

import csv
import os
import shutil

import ml_collections
import pytest

from experiments.cli import main as experiments_main
from experiments.configs import low_label
from experiments.grid import experiment_names, load_experiment, run_grid
from experiments.results import read_csv
from experiments.suite import merge_suite, run_parts, suite_parts
from pretrain.config import ConfigError
from pretrain.workdir import WorkdirError


def tiny_part(strategies: dict) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset = "digits"
    config.datasets = ()
    config.budgets = ("20",)
    config.seeds = (0, 1)
    config.strategies = ml_collections.ConfigDict(strategies)
    config.pretrain = ml_collections.ConfigDict(
        {"hidden": (8,), "epochs": 1, "batch_size": 64}
    )
    config.finetune = ml_collections.ConfigDict(
        {"lr_search": (1.0,), "epochs_head": 1, "epochs_finetune": 1}
    )
    config.baselines = ("logreg_pixels",)
    return config


def tiny_parts() -> dict:
    return {
        "part_ae": tiny_part({"scratch": ("", "scratch"), "ae": ("ae", "gradual")}),
        "part_dae": tiny_part(
            {"scratch": ("", "scratch"), "dae": ("dae", "linear_probe")}
        ),
    }


def read_rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def stable(rows: list[dict]) -> list[tuple]:
    """The rows' part, key and accuracies, without paths and wall times."""
    return sorted(
        (r["experiment"], r["method"], r["seed"], r["test_accuracy"]) for r in rows
    )


@pytest.fixture(scope="module")
def suite_run(data_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("suite"))
    report = run_parts("tiny_suite", workdir, tiny_parts())
    return workdir, report


def test_suite_writes_each_part(suite_run):
    workdir, _ = suite_run
    for part in ("part_ae", "part_dae"):
        for name in ("results.csv", "results.md", "accuracy_vs_labels.png"):
            assert os.path.isfile(os.path.join(workdir, part, name))


def test_suite_csv_joins_parts(suite_run):
    workdir, _ = suite_run
    rows = read_rows(os.path.join(workdir, "results.csv"))
    for part in ("part_ae", "part_dae"):
        own = read_csv(os.path.join(workdir, part, "results.csv"))
        joined = [r for r in rows if r["experiment"] == part]
        assert len(joined) == len(own)
        assert {r["method"] for r in joined} == {r["method"] for r in own}


def test_suite_report_names_parts(suite_run):
    _, report = suite_run
    assert "[part_ae](part_ae/results.md)" in report
    assert "| part_dae | dae |" in report
    assert "**" in report
    assert "(n=2)" in report


def test_suite_report_shows_baseline_once(suite_run):
    _, report = suite_run
    assert report.count("| baseline | logreg_pixels |") == 1


@pytest.fixture(scope="module")
def suite_shards(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("suite_shards")
    shards = [str(root / f"shard{i}") for i in range(2)]
    for i, shard_dir in enumerate(shards):
        run_parts("tiny_suite", shard_dir, tiny_parts(), shard=(i, 2))
    return shards


def test_suite_shards_merge_to_whole(suite_run, suite_shards, tmp_path):
    workdir, _ = suite_run
    out = str(tmp_path / "merged")
    merge_suite(out, suite_shards, overwrite=False)
    merged = read_rows(os.path.join(out, "results.csv"))
    whole = read_rows(os.path.join(workdir, "results.csv"))
    assert stable(merged) == stable(whole)


def test_suite_merge_checks_every_part_first(suite_shards, tmp_path):
    broken = str(tmp_path / "shard1")
    shutil.copytree(suite_shards[1], broken)
    os.remove(os.path.join(broken, "part_dae", "results.csv"))
    out = str(tmp_path / "merged")
    with pytest.raises(ConfigError, match="suite part 'part_dae'"):
        merge_suite(out, [suite_shards[0], broken], overwrite=False)
    assert not os.path.exists(out)


def test_suite_merge_of_one_shard_says_incomplete(suite_shards, tmp_path):
    report = merge_suite(str(tmp_path / "merged"), suite_shards[:1], overwrite=False)
    assert "Incomplete" in report


def test_damaged_suite_file_rejected(tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "suite.json").write_text('{"suite": "low_la')
    status = experiments_main(
        ["low_label", "--workdir", str(workdir), "--config.seeds=(0,)"]
    )
    assert status == 2
    assert "suite file is damaged" in capsys.readouterr().err
    assert os.listdir(workdir) == ["suite.json"]


def test_suite_file_without_parts_rejected(tmp_path):
    (tmp_path / "suite.json").write_text('{"suite": "tiny_suite"}')
    with pytest.raises(ConfigError, match="list of 'parts'"):
        run_parts("tiny_suite", str(tmp_path), tiny_parts())


def test_merge_rejects_truncated_shard_config(suite_shards, tmp_path):
    broken = str(tmp_path / "shard1")
    shutil.copytree(suite_shards[1], broken)
    config = os.path.join(broken, "part_ae", "config.json")
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text[: len(text) // 2])
    out = str(tmp_path / "merged")
    with pytest.raises(ConfigError, match="not valid JSON.*shard is damaged"):
        merge_suite(out, [suite_shards[0], broken], overwrite=False)
    assert not os.path.exists(out)


def test_part_path_that_is_file_rejected_first(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "part_dae").write_text("not a directory")
    with pytest.raises(WorkdirError, match="suite part 'part_dae'"):
        run_parts("tiny_suite", str(workdir), tiny_parts())
    assert sorted(os.listdir(workdir)) == ["part_dae"]


def test_grid_rejects_suite_workdir(suite_run):
    workdir, _ = suite_run
    with pytest.raises(ConfigError, match="contains a suite run"):
        run_grid(tiny_parts()["part_ae"], workdir, name="tiny")


def test_damaged_results_row_rejected(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(
        "dataset,method,label_budget,seed,labels,test_accuracy\n"
        "digits,ae,20,0,20,0.5\n"
        "digits,ae,20\n"
    )
    with pytest.raises(ConfigError, match="damaged row on line 3"):
        read_csv(str(path))


def test_suite_rejects_grid_workdir(suite_run):
    workdir, _ = suite_run
    with pytest.raises(ConfigError, match="run of a grid"):
        run_parts("tiny_suite", os.path.join(workdir, "part_ae"), tiny_parts())


def test_suite_rejects_other_suite_workdir(suite_run):
    workdir, _ = suite_run
    with pytest.raises(ConfigError, match="contains the suite 'tiny_suite'"):
        run_parts("other_suite", workdir, tiny_parts())


def test_low_label_parts_are_grids():
    parts = suite_parts("low_label")
    assert parts == low_label.PARTS
    for part in parts:
        assert part in experiment_names()
        assert suite_parts(part) is None


def test_suite_not_loaded_as_grid():
    with pytest.raises(ConfigError, match="is a suite"):
        load_experiment("low_label")


def test_suite_typo_writes_nothing(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    status = experiments_main(
        ["low_label", "--workdir", workdir, "--config.seedz=(0,)"]
    )
    assert status == 2
    assert "seedz" in capsys.readouterr().err
    assert not os.path.exists(workdir)


def test_suite_rejects_config_file(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    status = experiments_main(
        ["low_label", "--workdir", workdir, "--config", "quick.py"]
    )
    assert status == 2
    assert "cannot apply to a suite" in capsys.readouterr().err
    assert not os.path.exists(workdir)
