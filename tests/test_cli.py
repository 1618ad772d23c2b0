"""End-to-end runs of the three commands, and the table of bad input."""

import csv
import json
import os

import pytest

from experiments.cli import main as experiments_main
from finetune.cli import main as finetune_main
from pretrain.cli import main as pretrain_main


def test_pretrain_writes_outputs(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    status = pretrain_main(
        [
            "dae",
            "--dataset",
            "digits",
            "--workdir",
            workdir,
            "--config.hidden=(16,)",
            "--config.epochs=2",
            "--config.safetensors=true",
        ]
    )
    assert status == 0
    for name in ("config.json", "provenance.json", "metrics.jsonl", "filters.png"):
        assert os.path.isfile(os.path.join(workdir, name)), name
    assert os.path.isfile(os.path.join(workdir, "encoder", "encoder.json"))
    assert os.path.isfile(os.path.join(workdir, "encoder", "weights.safetensors"))
    assert os.listdir(os.path.join(workdir, "tb"))
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    assert config["method"] == "dae"
    assert config["noise"] == "mask"
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0]["phase"] == "layer0"


def test_finetune_writes_metrics(ae_export, tmp_path):
    workdir = str(tmp_path / "ft")
    status = finetune_main(
        [
            "--encoder",
            ae_export,
            "--dataset",
            "digits",
            "--labels",
            "50",
            "--workdir",
            workdir,
            "--config.epochs_head=3",
            "--config.epochs_finetune=2",
        ]
    )
    assert status == 0
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    for key in ("test_accuracy", "val_accuracy", "labels", "seed", "preset"):
        assert key in metrics, key
    assert metrics["labels"] == 50
    assert metrics["preset"] == "gradual"
    assert [s["stage"] for s in metrics["stages"]] == [
        "head",
        "unfreeze_1",
        "unfreeze_2",
    ]
    assert all(s["compiles"] == 1 for s in metrics["stages"])
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    with open(os.path.join(workdir, "labels.json")) as f:
        labels = json.load(f)
    assert len(labels["train_idx"]) == 50
    assert not set(labels["train_idx"]) & set(labels["val_idx"])
    assert os.path.isfile(os.path.join(workdir, "model", "model.json"))


@pytest.mark.slow
def test_experiments_quick_tiny(data_dir, tmp_path):
    workdir = str(tmp_path / "quick")
    argv = [
        "quick",
        "--workdir",
        workdir,
        "--config.seeds=(0, 1)",
        "--config.budgets=('50',)",
        "--config.pretrain.epochs=1",
        "--config.pretrain.hidden=(16,)",
        "--config.finetune.lr_search=(1.0,)",
        "--config.finetune.epochs_head=2",
        "--config.finetune.epochs_finetune=1",
        "--config.baselines=false",
    ]
    assert experiments_main(argv) == 0
    with open(os.path.join(workdir, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2
    assert {row["method"] for row in rows} == {"scratch", "ae", "dae"}
    for column in ("dataset", "method", "preset", "labels", "seed", "test_accuracy"):
        assert column in rows[0], column
    with open(os.path.join(workdir, "results.md")) as f:
        table = f.read()
    assert "| scratch |" in table
    assert os.path.isfile(os.path.join(workdir, "accuracy_vs_labels.png"))
    assert os.path.isfile(os.path.join(workdir, "provenance.json"))

    # A rerun reuses every finished run and writes the same results.
    with open(os.path.join(workdir, "results.csv")) as f:
        first = f.read()
    assert experiments_main(argv) == 0
    with open(os.path.join(workdir, "results.csv")) as f:
        assert f.read() == first

    # A changed config must not silently reuse runs of the old one.
    changed = [a.replace("pretrain.epochs=1", "pretrain.epochs=2") for a in argv]
    assert experiments_main(changed) == 2


def test_baselines_on_same_labels(data_dir):
    import ml_collections

    from experiments.baselines import baseline_rows

    experiment = ml_collections.ConfigDict({"dataset": "digits", "budgets": ("50",)})
    rows = baseline_rows(experiment, seed=0)
    assert [row["method"] for row in rows] == ["logreg_pixels", "mlp_sklearn"]
    assert all(row["labels"] == 50 for row in rows)
    assert all(row["test_accuracy"] > 0.5 for row in rows)


def bad_pretrain(tmp_path, *extra, method="ae", dataset="digits"):
    workdir = str(tmp_path / "bad")
    return [
        "ae" if method is None else method,
        "--dataset",
        dataset,
        "--workdir",
        workdir,
        *extra,
    ]


BAD_INPUT = [
    # (name, command, argv builder, message fragment)
    (
        "unknown dataset",
        "pretrain",
        lambda t, e: bad_pretrain(t, dataset="digts"),
        "digits",
    ),
    ("unknown method", "pretrain", lambda t, e: bad_pretrain(t, method="aee"), "'ae'"),
    (
        "unknown config key",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.epoch=3"),
        "Did you mean 'epochs'",
    ),
    (
        "wrong value type",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.epochs=many"),
        "expects a int",
    ),
    (
        "negative learning rate",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.learning_rate=-0.1"),
        "learning_rate",
    ),
    (
        "zero epochs",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.epochs=0"),
        "epochs",
    ),
    (
        "masking noise out of range",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.noise=mask", "--config.noise_level=1.5"),
        "noise_level",
    ),
    (
        "missing encoder",
        "finetune",
        lambda t, e: [
            "--encoder",
            str(t / "none"),
            "--labels",
            "50",
            "--workdir",
            str(t / "bad"),
        ],
        "does not exist",
    ),
    (
        "label budget too large",
        "finetune",
        lambda t, e: ["--encoder", e, "--labels", "5000", "--workdir", str(t / "bad")],
        "5000",
    ),
    (
        "label budget below classes",
        "finetune",
        lambda t, e: ["--encoder", e, "--labels", "5", "--workdir", str(t / "bad")],
        "5",
    ),
    (
        "label budget not a number",
        "finetune",
        lambda t, e: ["--encoder", e, "--labels", "lots", "--workdir", str(t / "bad")],
        "lots",
    ),
    (
        "unknown preset",
        "finetune",
        lambda t, e: [
            "--encoder",
            e,
            "--labels",
            "50",
            "--preset",
            "half",
            "--workdir",
            str(t / "bad"),
        ],
        "half",
    ),
    (
        "input shape mismatch",
        "finetune",
        lambda t, e: [
            "--encoder",
            e,
            "--dataset",
            "mnist5k",
            "--labels",
            "50",
            "--workdir",
            str(t / "bad"),
        ],
        "(28, 28, 1)",
    ),
    (
        "unknown experiment",
        "experiments",
        lambda t, e: ["quik", "--workdir", str(t / "bad")],
        "quick",
    ),
]

COMMANDS = {
    "pretrain": pretrain_main,
    "finetune": finetune_main,
    "experiments": experiments_main,
}


@pytest.mark.parametrize(
    "command, build, fragment",
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_exits_2(command, build, fragment, ae_export, tmp_path, capsys):
    status = COMMANDS[command](build(tmp_path, ae_export))
    error = capsys.readouterr().err
    assert status == 2
    assert fragment in error
    assert "Traceback" not in error
    assert not os.path.exists(tmp_path / "bad")


def test_workdir_that_is_a_file(data_dir, tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("not a directory")
    status = pretrain_main(["ae", "--workdir", str(path), "--config.epochs=1"])
    assert status == 2
    assert "is a file" in capsys.readouterr().err
    assert path.read_text() == "not a directory"


def test_config_file_typo_rejected(data_dir, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"epochs": 2, "hiddden": [8]}))
    status = pretrain_main(
        ["ae", "--workdir", str(tmp_path / "bad"), "--config", str(config)]
    )
    assert status == 2
    assert "hiddden" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "bad")
