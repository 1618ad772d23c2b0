"""Experiment grids on digits: paired label subsets, reuse, shards and checks."""

import json
import os

import ml_collections
import pytest

from experiments import grid
from experiments.cli import main as experiments_main
from experiments.grid import check_experiment, run_grid
from experiments.merge import merge_shards
from experiments.plan import build_plan, parse_shard, shard_cells
from experiments.results import COLUMNS, read_csv, write_csv
from finetune import run as finetune_run
from pretrain import run as pretrain_run
from pretrain.config import ConfigError

# Columns that differ between two runs of the same cells: paths and wall times.
RUN_SPECIFIC = ("label_subset", "pretrain_run", "pretrain_seconds", "finetune_seconds")


def tiny_experiment(**changes) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset = "digits"
    config.datasets = ()
    config.budgets = ("20",)
    config.seeds = (0,)
    config.strategies = ml_collections.ConfigDict(
        {
            "scratch": ("", "scratch"),
            "ae": {"method": "ae", "pretrain": {"learning_rate": 0.02}},
            "dae": ("dae", "gradual"),
            "dae_probe": ("dae", "linear_probe"),
        }
    )
    config.pretrain = ml_collections.ConfigDict(
        {"hidden": (16,), "epochs": 1, "batch_size": 64}
    )
    config.finetune = ml_collections.ConfigDict(
        {"lr_search": (1.0,), "epochs_head": 2, "epochs_finetune": 1}
    )
    config.baselines = ("logreg_pixels", "knn_pixels")
    for key, value in changes.items():
        # Replace whole sections; ConfigDict.update would merge them.
        del config[key]
        config[key] = value
    return config


@pytest.fixture(scope="module")
def finished(data_dir, tmp_path_factory):
    """One unsharded tiny grid: (workdir, rows)."""
    workdir = str(tmp_path_factory.mktemp("grid"))
    rows = run_grid(tiny_experiment(), workdir)
    return workdir, rows


def cell_dir(workdir, strategy, seed, budget="20"):
    return os.path.join(workdir, "finetune", "digits", strategy, budget, f"seed{seed}")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def comparable(rows):
    """Rows without run-specific columns, sorted by their key."""
    stable = [{k: v for k, v in row.items() if k not in RUN_SPECIFIC} for row in rows]
    return sorted(stable, key=lambda r: (r["method"], r["label_budget"], r["seed"]))


def test_grid_paired_label_subsets(finished):
    workdir, rows = finished
    for seed in (0,):
        splits = [
            read_json(os.path.join(cell_dir(workdir, name, seed), "labels.json"))
            for name in ("scratch", "ae", "dae", "dae_probe")
        ]
        baseline = read_json(
            os.path.join(
                workdir, "baselines", "digits", f"seed{seed}", "20", "labels.json"
            )
        )
        for split in splits[1:] + [baseline]:
            assert split["train_idx"] == splits[0]["train_idx"]
            assert split["val_idx"] == splits[0]["val_idx"]


def test_grid_rows_and_columns(finished):
    workdir, rows = finished
    methods = sorted({row["method"] for row in rows})
    assert methods == [
        "ae",
        "dae",
        "dae_probe",
        "knn_pixels",
        "logreg_pixels",
        "scratch",
    ]
    assert len(rows) == 6
    on_disk = read_csv(os.path.join(workdir, "results.csv"))
    assert comparable(on_disk) == comparable(rows)
    for row in on_disk:
        assert set(COLUMNS) <= set(row)


def test_grid_probes_and_seconds(finished):
    _, rows = finished
    by_method = {row["method"]: row for row in rows if row["seed"] == 0}
    assert 0.0 <= by_method["ae"]["probe_linear"] <= 1.0
    assert 0.0 <= by_method["ae"]["probe_knn"] <= 1.0
    assert by_method["scratch"]["probe_linear"] is None
    assert by_method["scratch"]["pretrain_seconds"] is None
    assert by_method["ae"]["pretrain_seconds"] > 0
    assert by_method["ae"]["finetune_seconds"] > 0
    # One encoder, one label subset: the same probe for both presets.
    assert by_method["dae"]["probe_linear"] == by_method["dae_probe"]["probe_linear"]


def test_grid_shares_pretrain_run(finished):
    workdir, rows = finished
    by_method = {row["method"]: row for row in rows if row["seed"] == 0}
    assert by_method["dae"]["pretrain_run"] == by_method["dae_probe"]["pretrain_run"]
    assert sorted(os.listdir(os.path.join(workdir, "pretrain", "digits"))) == [
        "ae",
        "dae",
    ]


def test_strategy_overrides_applied(finished):
    workdir, rows = finished
    ae = read_json(
        os.path.join(workdir, "pretrain", "digits", "ae", "seed0", "config.json")
    )
    dae = read_json(
        os.path.join(workdir, "pretrain", "digits", "dae", "seed0", "config.json")
    )
    assert ae["learning_rate"] == 0.02
    assert dae["learning_rate"] != 0.02
    assert ae["hidden"] == [16]
    scratch = read_json(os.path.join(cell_dir(workdir, "scratch", 0), "config.json"))
    assert scratch["encoder"].endswith(os.path.join("ae", "seed0", "encoder"))


def test_grid_rerun_reuses_runs(finished, monkeypatch):
    workdir, rows = finished
    calls = {"pretrain": 0, "finetune": 0}
    real_pretrain, real_finetune = pretrain_run.run, finetune_run.run

    def counting_pretrain(*args, **kwargs):
        calls["pretrain"] += 1
        return real_pretrain(*args, **kwargs)

    def counting_finetune(*args, **kwargs):
        calls["finetune"] += 1
        return real_finetune(*args, **kwargs)

    monkeypatch.setattr(grid.pretrain_run, "run", counting_pretrain)
    monkeypatch.setattr(grid.finetune_run, "run", counting_finetune)
    target = cell_dir(workdir, "dae", 0)
    os.remove(os.path.join(target, "metrics.json"))
    seconds_before = {r["method"]: r["finetune_seconds"] for r in rows}

    again = run_grid(tiny_experiment(), workdir)
    assert calls == {"pretrain": 0, "finetune": 1}
    assert os.path.isfile(os.path.join(target, "metrics.json"))
    # Every reused run reports the wall time of its original run.
    seconds_after = {r["method"]: r["finetune_seconds"] for r in again}
    for method in ("ae", "dae_probe", "scratch"):
        assert seconds_after[method] == seconds_before[method]
    assert comparable(again) == comparable(rows)


@pytest.mark.slow
def test_merged_shards_equal_unsharded(finished, tmp_path):
    _, rows = finished
    shards = [str(tmp_path / f"shard{i}") for i in range(2)]
    for i, shard_dir in enumerate(shards):
        run_grid(tiny_experiment(), shard_dir, shard=(i, 2), name="tiny")
    merged = merge_shards(str(tmp_path / "merged"), shards)
    assert comparable(merged) == comparable(rows)
    for name in ("results.csv", "results.md", "accuracy_vs_labels.png"):
        assert os.path.isfile(tmp_path / "merged" / name)


def fake_shard(path, index, count, rows, config=None):
    """A shard directory written by hand, as `run_grid` leaves it."""
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config or {"budgets": ["20"]}, f)
    with open(os.path.join(path, "grid.json"), "w") as f:
        json.dump({"experiment": "tiny", "shard": [index, count]}, f)
    write_csv(os.path.join(path, "results.csv"), rows)
    return str(path)


def fake_row(method, seed, accuracy=0.5):
    return {
        "dataset": "digits",
        "method": method,
        "preset": "gradual",
        "labels": 20,
        "label_budget": "20",
        "seed": seed,
        "test_accuracy": accuracy,
    }


def test_merge_rejects_duplicate_row(tmp_path):
    first = fake_shard(tmp_path / "a", 0, 2, [fake_row("ae", 0)])
    second = fake_shard(tmp_path / "b", 1, 2, [fake_row("ae", 0, 0.6)])
    with pytest.raises(ConfigError, match="duplicate"):
        merge_shards(str(tmp_path / "out"), [first, second])
    assert not os.path.exists(tmp_path / "out")


def test_merge_rejects_other_config(tmp_path):
    first = fake_shard(tmp_path / "a", 0, 2, [fake_row("ae", 0)])
    second = fake_shard(
        tmp_path / "b", 1, 2, [fake_row("ae", 1)], config={"budgets": ["50"]}
    )
    with pytest.raises(ConfigError, match="budgets"):
        merge_shards(str(tmp_path / "out"), [first, second])


def test_merge_command_writes_results(tmp_path):
    first = fake_shard(tmp_path / "a", 0, 2, [fake_row("ae", 0), fake_row("ae", 1)])
    second = fake_shard(tmp_path / "b", 1, 2, [fake_row("scratch", 0)])
    out = str(tmp_path / "out")
    assert experiments_main(["merge", out, first, second]) == 0
    merged = read_csv(os.path.join(out, "results.csv"))
    assert len(merged) == 3
    with open(os.path.join(out, "results.md")) as f:
        assert "Incomplete" not in f.read()


def test_merge_subset_names_missing_shards(tmp_path, capsys):
    first = fake_shard(tmp_path / "a", 0, 2, [fake_row("ae", 0)])
    out = str(tmp_path / "out")
    assert experiments_main(["merge", out, first]) == 0
    with open(os.path.join(out, "results.md")) as f:
        lines = f.read().splitlines()
    note = (
        "Incomplete: shards [1] of 2 are missing, so these tables cover only "
        "the cells of shards [0]."
    )
    # Right below the title, before the intro and the tables.
    assert lines[0].startswith("# ")
    assert lines[2] == note
    assert note in capsys.readouterr().out


def test_shards_partition_cells(data_dir, tmp_path):
    plan = build_plan(tiny_experiment(), str(tmp_path))
    shards = [shard_cells(plan, (i, 3)) for i in range(3)]
    assert sum(len(cells) for cells in shards) == len(plan.cells)
    seen = [id(cell) for cells in shards for cell in cells]
    assert len(set(seen)) == len(plan.cells)
    assert shards[1] == plan.cells[1::3]


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/2", "0/0"])
def test_parse_shard_rejects(text):
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


@pytest.mark.parametrize("text", ["-1/2", "2/2"])
def test_shard_command_rejects(tmp_path, capsys, text):
    workdir = str(tmp_path / "grid")
    status = experiments_main(["quick", "--workdir", workdir, "--shard", text])
    assert status == 2
    assert f"invalid --shard '{text}': pass I/N" in capsys.readouterr().err
    assert not os.path.exists(workdir)


def test_shard_command_missing_value(tmp_path, capsys):
    with pytest.raises(SystemExit):
        experiments_main(["quick", "--workdir", str(tmp_path), "--shard", "--quiet"])
    assert "--shard: expected one argument" in capsys.readouterr().err


def test_parse_shard_accepts():
    assert parse_shard("1/4") == (1, 4)


def test_strategy_key_typo_rejected(data_dir, tmp_path):
    strategies = ml_collections.ConfigDict(
        {"ae": {"method": "ae", "presett": "gradual"}, "scratch": ("", "scratch")}
    )
    workdir = tmp_path / "grid"
    with pytest.raises(ConfigError, match="presett"):
        run_grid(tiny_experiment(strategies=strategies), str(workdir))
    assert not workdir.exists()


def test_strategy_pretrain_typo_rejected(data_dir):
    strategies = ml_collections.ConfigDict(
        {"ae": {"method": "ae", "pretrain": {"hiden": (8,)}}}
    )
    with pytest.raises(ConfigError, match="pretrain config of strategy 'ae' .*hiden"):
        check_experiment(tiny_experiment(strategies=strategies))


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"method": "ae", "finetune": {"lr_hed": 0.1}}, "finetune config of strategy"),
        ({"method": "ae", "preset": "gradul"}, "finetune config of strategy"),
        ({"method": "dea"}, "strategies.ae.method: unknown pretraining method"),
    ],
)
def test_strategy_error_named(data_dir, fields, fragment):
    strategies = ml_collections.ConfigDict({"ae": fields})
    with pytest.raises(ConfigError, match=fragment):
        check_experiment(tiny_experiment(strategies=strategies))


def test_shared_key_of_other_method_skipped(data_dir, tmp_path):
    strategies = ml_collections.ConfigDict(
        {"ae": ("ae", "gradual"), "mae": ("mae", "gradual")}
    )
    pretrain = ml_collections.ConfigDict({"hidden": (16,), "patch_size": 2})
    plan = build_plan(
        tiny_experiment(strategies=strategies, pretrain=pretrain), str(tmp_path)
    )
    runs = {
        cell.strategy.name: cell.pretrain
        for cell in plan.cells
        if hasattr(cell, "strategy")
    }
    assert tuple(runs["ae"].config.hidden) == (16,)
    assert runs["mae"].config.patch_size == 2
    assert "hidden" not in runs["mae"].config


def test_narrowed_grid_skips_other_method_key(data_dir, tmp_path):
    strategies = ml_collections.ConfigDict(
        {
            "ae": {"method": "ae", "datasets": ("digits",)},
            "mae": {"method": "mae", "datasets": ("mnist1d",)},
        }
    )
    # epochs stays above mae's default warmup_epochs.
    pretrain = ml_collections.ConfigDict({"hidden": (16,), "epochs": 10})
    experiment = tiny_experiment(
        datasets=("mnist1d",), strategies=strategies, pretrain=pretrain
    )
    plan = build_plan(experiment, str(tmp_path))
    runs = [cell.pretrain for cell in plan.cells if hasattr(cell, "strategy")]
    assert [run.method for run in runs] == ["mae"]
    assert "hidden" not in runs[0].config


def test_shared_pretrain_typo_rejected(data_dir):
    pretrain = ml_collections.ConfigDict({"hidden": (16,), "epocs": 1})
    with pytest.raises(ConfigError, match="epocs"):
        check_experiment(tiny_experiment(pretrain=pretrain))


def test_grid_key_in_section_rejected(data_dir):
    strategies = ml_collections.ConfigDict(
        {"ae": {"method": "ae", "finetune": {"split_seed": 3}}}
    )
    with pytest.raises(ConfigError, match="split_seed"):
        check_experiment(tiny_experiment(strategies=strategies))


def test_scratch_architecture_must_be_pretrained(data_dir):
    strategies = ml_collections.ConfigDict(
        {"ae": ("ae", "gradual"), "scratch": {"preset": "scratch", "architecture": "x"}}
    )
    with pytest.raises(ConfigError, match="architecture"):
        check_experiment(tiny_experiment(strategies=strategies))


def test_unknown_baseline_rejected(data_dir):
    with pytest.raises(ConfigError, match="baselines"):
        check_experiment(tiny_experiment(baselines=("logreg",)))


# Preparing mnist1d on first use takes most of this test's time.
@pytest.mark.slow
def test_plan_dataset_subsets(data_dir, tmp_path):
    strategies = ml_collections.ConfigDict(
        {
            "ae": ("ae", "gradual"),
            "dae": {"method": "dae", "datasets": ("digits",)},
            "scratch": {"preset": "scratch", "architecture": "ae"},
        }
    )
    experiment = tiny_experiment(
        datasets=("digits", "mnist1d"), strategies=strategies, baselines=False
    )
    plan = build_plan(experiment, str(tmp_path))
    cells = [(cell.dataset, cell.strategy.name) for cell in plan.cells]
    assert cells == [
        ("digits", "ae"),
        ("digits", "dae"),
        ("digits", "scratch"),
        ("mnist1d", "ae"),
        ("mnist1d", "scratch"),
    ]
    assert plan.cells[-1].pretrain.dataset == "mnist1d"


def test_grid_records_target_scaling(finished):
    _, rows = finished
    by_method = {row["method"]: row for row in rows if row["seed"] == 0}

    assert by_method["ae"]["scaling"] == "export"
    assert by_method["ae"]["pretrain_scaling"] == "minmax"
    assert by_method["dae_probe"]["chosen_preset"] == "linear_probe"


def test_merge_orders_rows_like_config(tmp_path):
    config = {"budgets": ["20"], "strategies": {"ae": [], "scratch": []}}
    first = fake_shard(tmp_path / "a", 0, 2, [fake_row("scratch", 0)], config)
    second = fake_shard(tmp_path / "b", 1, 2, [fake_row("ae", 0)], config)

    merged = merge_shards(str(tmp_path / "out"), [first, second])

    assert [row["method"] for row in merged] == ["ae", "scratch"]


def test_merge_error_names_each_shard(tmp_path):
    first = fake_shard(tmp_path / "a", 0, 2, [fake_row("ae", 0)])
    second = fake_shard(tmp_path / "b", 0, 1, [fake_row("ae", 1)])

    with pytest.raises(ConfigError, match=r"'.*a' is shard 0/2, '.*b' is shard 0/1"):
        merge_shards(str(tmp_path / "out"), [first, second])


def test_other_shard_in_workdir_rejected(data_dir, tmp_path):
    workdir = fake_shard(tmp_path / "s0", 0, 2, [fake_row("ae", 0)])

    with pytest.raises(ConfigError, match="shard 0/2"):
        run_grid(tiny_experiment(), workdir, shard=(1, 2), name="tiny")
    assert len(read_csv(os.path.join(workdir, "results.csv"))) == 1


def test_probe_codes_use_refit_scaling(data_dir, tmp_path):
    from experiments.probes import encoder_codes
    from pretrain import config as config_lib
    from pretrain.data import fit_scaler, load_dataset
    from pretrain.export import load_encoder
    from pretrain.train import predict

    # Per-pixel standard scaling differs between digits and mnist5k_8x8.
    config = config_lib.build_config(
        lambda: pretrain_run.default_config("ae"),
        overrides={
            "hidden": (8,),
            "epochs": 1,
            "scaling": "standard",
            "data_dir": data_dir,
        },
    )
    export = pretrain_run.run("ae", config, str(tmp_path / "ae"))
    exported = encoder_codes(export, "mnist5k_8x8", 0, data_dir, "export")
    refit = encoder_codes(export, "mnist5k_8x8", 0, data_dir, "refit")

    loaded = load_encoder(export)
    pool = load_dataset("mnist5k_8x8", data_dir=data_dir).train_x
    scaler = fit_scaler(pool, loaded.scaler.kind)
    codes = predict(loaded.module, lambda m, x: m(x), scaler.apply(pool))
    assert not (exported[0] == refit[0]).all()
    assert abs(refit[0] - codes.reshape(len(codes), -1)).max() < 1e-6


def test_narrowed_datasets_skip_strategies_outside_them(tmp_path):
    strategies = ml_collections.ConfigDict(
        {
            "ae": ("ae", "gradual"),
            "dae_far": {"method": "dae", "datasets": ("mnist1d",)},
            "dae_both": {"method": "dae", "datasets": ("digits", "mnist1d")},
            "scratch": {"preset": "scratch", "architecture": "ae"},
        }
    )
    experiment = tiny_experiment(
        datasets=("digits",), strategies=strategies, baselines=False
    )
    plan = build_plan(experiment, str(tmp_path))
    cells = [(cell.dataset, cell.strategy.name) for cell in plan.cells]
    assert cells == [("digits", "ae"), ("digits", "dae_both"), ("digits", "scratch")]


def test_grid_records_rbm_generator_of_run(data_dir, tmp_path, monkeypatch):
    # On several devices pretrain.run records threefry2x32, and the grid must
    # expect the same config, or it would not find its finished runs.
    import jax

    monkeypatch.setattr(jax, "device_count", lambda: 2)
    strategies = ml_collections.ConfigDict({"dbn": ("dbn", "gradual")})
    pretrain = ml_collections.ConfigDict({"hidden": (16,), "epochs": 1})
    plan = build_plan(
        tiny_experiment(strategies=strategies, pretrain=pretrain), str(tmp_path)
    )
    runs = [cell.pretrain for cell in plan.cells if hasattr(cell, "strategy")]
    assert runs
    assert all(run.config.rng_impl == "threefry2x32" for run in runs)


def test_merge_rejects_shard_as_output(tmp_path):
    first = fake_shard(tmp_path / "a", 0, 2, [fake_row("ae", 0)])
    second = fake_shard(tmp_path / "b", 1, 2, [fake_row("ae", 1)])
    with pytest.raises(ConfigError, match="also a shard directory"):
        merge_shards(first, [first, second])
    assert len(read_csv(os.path.join(first, "results.csv"))) == 1


def test_merge_rejects_grid_workdir_output(tmp_path):
    first = fake_shard(tmp_path / "a", 0, 2, [fake_row("ae", 0)])
    other = fake_shard(tmp_path / "other", 0, 1, [fake_row("dae", 0)])
    with pytest.raises(ConfigError, match="contains the run of a grid"):
        merge_shards(other, [first])
    assert len(read_csv(os.path.join(other, "results.csv"))) == 1


def test_merge_replaces_own_merge_only(tmp_path, capsys):
    first = fake_shard(tmp_path / "a", 0, 2, [fake_row("ae", 0)])
    second = fake_shard(tmp_path / "b", 1, 2, [fake_row("ae", 1)])
    other = fake_shard(
        tmp_path / "c", 0, 1, [fake_row("dae", 0)], config={"budgets": ["50"]}
    )
    out = str(tmp_path / "out")
    merge_shards(out, [first])

    # The same config again, now with both shards, replaces the first merge.
    assert len(merge_shards(out, [first, second])) == 2
    with pytest.raises(ConfigError, match="another experiment config"):
        merge_shards(out, [other])
    assert len(read_csv(os.path.join(out, "results.csv"))) == 2
    assert experiments_main(["merge", out, other]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert experiments_main(["merge", "--overwrite", out, other]) == 0
    assert read_csv(os.path.join(out, "results.csv"))[0]["method"] == "dae"


def test_merge_rejects_unmerged_results(tmp_path):
    first = fake_shard(tmp_path / "a", 0, 1, [fake_row("ae", 0)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.md").write_text("notes of my own\n")
    with pytest.raises(ConfigError, match="results.md"):
        merge_shards(str(out), [first])
    assert (out / "results.md").read_text() == "notes of my own\n"


def test_interrupted_rerun_leaves_no_results(finished, monkeypatch):
    workdir, rows = finished
    assert os.path.isfile(os.path.join(workdir, "results.csv"))

    def interrupt(self, cell):
        raise KeyboardInterrupt

    monkeypatch.setattr(grid.GridRunner, "run_cell", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_grid(tiny_experiment(), workdir)
    # An earlier results.csv would outlive the rerun and pass as its result.
    assert not os.path.exists(os.path.join(workdir, "results.csv"))

    # A finished rerun reuses every cell and writes the same results again,
    # which leaves the shared grid as the other tests expect it.
    monkeypatch.undo()
    again = run_grid(tiny_experiment(), workdir)
    assert comparable(again) == comparable(rows)
    assert os.path.isfile(os.path.join(workdir, "results.csv"))


def test_merge_rejects_merge_without_config(tmp_path):
    first = fake_shard(tmp_path / "a", 0, 1, [fake_row("ae", 0)])
    out = tmp_path / "out"
    merge_shards(str(out), [first])
    os.remove(out / "config.json")
    with pytest.raises(ConfigError, match="another experiment config"):
        merge_shards(str(out), [first])
