"""End-to-end runs of the three commands, and the table of bad input."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.cli import main as experiments_main
from finetune.cli import main as finetune_main
from pretrain import config as config_lib
from pretrain.cli import config_file as config_file_for
from pretrain.cli import main as pretrain_main
from pretrain.cli_common import add_flag_values
from pretrain.config import ConfigError
from pretrain.run import default_config


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

    # The saved config.json is a valid --config file for the same method.
    saved = os.path.join(workdir, "config.json")
    rebuilt = config_lib.build_config(
        lambda: default_config("dae"), file=config_file_for(saved, "dae")
    )
    assert {"method": "dae", **config_lib.to_dict(rebuilt)} == config
    with pytest.raises(ConfigError, match="is for method 'dae', not 'ae'"):
        config_file_for(saved, "ae")
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
    # At most once: a stage whose step an earlier test compiled counts 0.
    assert all(s["compiles"] <= 1 for s in metrics["stages"])
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


class NanImages(tfds.core.GeneratorBasedBuilder):
    """A tiny image dataset with one NaN pixel, for the bad-input table."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(4, 4, 1), dtype=np.float32),
                    "label": tfds.features.ClassLabel(num_classes=2),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(20):
            image = np.full((4, 4, 1), float(i), np.float32)
            if i == 3:
                image[0, 0, 0] = np.nan
            yield i, {"image": image, "label": i % 2}


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


def bad_finetune(tmp_path, encoder, *extra):
    workdir = str(tmp_path / "bad")
    return ["--encoder", encoder, "--labels", "50", "--workdir", workdir, *extra]


def broken_export(tmp_path, export, how):
    """Copy `export` to `tmp_path/exports/encoder` and break it as `how` names."""
    path = tmp_path / "exports" / "encoder"
    shutil.copytree(export, path)
    metadata = path / "encoder.json"
    if how == "truncate":
        metadata.write_text(metadata.read_text()[:40])
    elif how == "version":
        data = json.loads(metadata.read_text())
        data["format_version"] = 99
        metadata.write_text(json.dumps(data))
    elif how == "corrupt":
        for file in (path / "weights").rglob("*"):
            if file.is_file() and "ocdbt.process" in str(file.parent):
                file.write_bytes(b"\xff" * 64)
    elif how == "no_weights":
        shutil.rmtree(path / "weights")
    return str(path)


def config_file(tmp_path, text: str) -> str:
    path = tmp_path / "user_config.py"
    path.write_text(text)
    return str(path)


BAD_INPUT = [
    # (name, command, argv builder, message fragment)
    (
        "config file with a syntax error",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config", config_file(t, "def get_config(:\n")),
        "syntax error at line 1",
    ),
    (
        "config file whose get_config raises",
        "pretrain",
        lambda t, e: bad_pretrain(
            t, "--config", config_file(t, "def get_config():\n    return 1 / 0\n")
        ),
        "ZeroDivisionError",
    ),
    (
        "stream on a method that cannot",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.stream=true", method="rbm"),
        "streaming works with",
    ),
    (
        "stream on bert",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.stream=true", method="bert"),
        "streaming works with",
    ),
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
        "expects an int",
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
        "unknown activation",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.activation=gelu"),
        "'gelu' is invalid: use sigmoid, relu or tanh",
    ),
    (
        "no hidden widths",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.hidden=()", method="masked_features"),
        "give at least one width",
    ),
    (
        "sparsity target out of range",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.sparsity_target=1.5", method="rbm"),
        "'sparsity_target' = 1.5 is invalid: must be in (0, 1)",
    ),
    (
        "warm-up as long as the run",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.epochs=2", method="mae"),
        "set warmup_epochs to 0 as well (--config.warmup_epochs with `pretrain`",
    ),
    (
        "unknown pooling",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.pool=min", method="conv_ae"),
        "'pool' = 'min' is invalid: use max, avg or none",
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
    (
        "truncated encoder metadata",
        "finetune",
        lambda t, e: bad_finetune(t, broken_export(t, e, "truncate")),
        "not valid JSON",
    ),
    (
        "newer export format",
        "finetune",
        lambda t, e: bad_finetune(t, broken_export(t, e, "version")),
        "format version 99",
    ),
    (
        "corrupted weight file",
        "finetune",
        lambda t, e: bad_finetune(t, broken_export(t, e, "corrupt")),
        "corrupted",
    ),
    (
        "weights directory removed",
        "finetune",
        lambda t, e: bad_finetune(t, broken_export(t, e, "no_weights")),
        "missing",
    ),
    (
        "drop more layers than exist",
        "finetune",
        lambda t, e: bad_finetune(t, e, "--config.drop_top=2"),
        "drop_top",
    ),
    (
        "head width of zero",
        "finetune",
        lambda t, e: bad_finetune(t, e, "--config.head_hidden=(0,)"),
        "head_hidden",
    ),
    (
        "none for an optional path",
        "finetune",
        lambda t, e: bad_finetune(t, e, "--config.data_dir=none"),
        "data_dir",
    ),
    (
        "negative batch size",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.batch_size=-8"),
        "batch_size",
    ),
    (
        "unknown scaling",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.scaling=zscore"),
        "scaling",
    ),
    (
        "sparse penalty with relu",
        "pretrain",
        lambda t, e: bad_pretrain(
            t, "--config.activation=relu", "--config.sparsity_weight=0.1"
        ),
        "sigmoid",
    ),
    (
        "experiment budget too large",
        "experiments",
        lambda t, e: [
            "quick",
            "--workdir",
            str(t / "bad"),
            "--config.budgets=('5000',)",
        ],
        "5000",
    ),
    (
        "data directory is a file",
        "pretrain",
        lambda t, e: bad_pretrain(t, f"--config.data_dir={e}/encoder.json"),
        "is a file",
    ),
    (
        "mae patch size not dividing the image",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.patch_size=3", method="mae"),
        "patch",
    ),
    (
        "dataset with NaN values",
        "pretrain",
        lambda t, e: bad_pretrain(t, dataset="nan_images"),
        "non-finite",
    ),
    (
        "streamed dataset with NaN values",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.stream=true", dataset="nan_images"),
        "dataset 'nan_images' (",
    ),
    (
        "negative weight decay",
        "finetune",
        lambda t, e: bad_finetune(t, e, "--config.weight_decay=-1"),
        "weight_decay",
    ),
    (
        "conv unknown pool",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.pool=maxx", method="conv_ae"),
        "pool",
    ),
    (
        "conv empty stages",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.stages=()", method="conv_ae"),
        "stages",
    ),
    (
        "conv sparsity with tanh",
        "pretrain",
        lambda t, e: bad_pretrain(
            t,
            "--config.activation=tanh",
            "--config.sparsity_weight=0.1",
            method="conv_ae",
        ),
        "activation",
    ),
    (
        "mask ratio out of range",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.mask_ratio=1.0", method="conv_simmim"),
        "mask_ratio",
    ),
    (
        "simmim with denoising noise",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.noise=mask", method="conv_simmim"),
        "noise",
    ),
    (
        "rbm on standardised inputs",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.scaling=standard", method="rbm"),
        "--config.scaling=minmax",
    ),
    (
        "gaussian rbm on minmax inputs",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.visible=gaussian", method="rbm"),
        "--config.scaling=standard",
    ),
    (
        "rbm with two layers",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.hidden=(8, 4)", method="rbm"),
        "dbn",
    ),
    (
        "dbn propagation mode unknown",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.dbn_propagate=means", method="dbn"),
        "dbn_propagate",
    ),
    (
        "mae mask ratio of one",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.mask_ratio=1.0", method="mae"),
        "mask_ratio",
    ),
    (
        "mae width not divisible by heads",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.heads=5", method="mae"),
        "heads",
    ),
    (
        "mae unknown pooling",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.pooling=max", method="mae"),
        "pooling",
    ),
    (
        "mae warmup as long as training",
        "pretrain",
        lambda t, e: bad_pretrain(
            t, "--config.epochs=5", "--config.warmup_epochs=5", method="mae"
        ),
        "warmup_epochs",
    ),
    (
        "masked features ratio of zero",
        "pretrain",
        lambda t, e: bad_pretrain(
            t, "--config.mask_ratio=0.0", method="masked_features"
        ),
        "mask_ratio",
    ),
    (
        "bert on an image dataset",
        "pretrain",
        lambda t, e: bad_pretrain(t, method="bert"),
        "no text feature",
    ),
    (
        "bool for an int key",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.cd_k=true", method="rbm"),
        "expects an int",
    ),
    (
        "bert selection ratio above one",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.select_ratio=1.5", method="bert"),
        "select_ratio",
    ),
    (
        "layer decay above one",
        "finetune",
        lambda t, e: bad_finetune(t, e, "--config.layer_decay=1.5"),
        "layer_decay",
    ),
    (
        "simmim patch size not dividing the image",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.patch_size=3", method="conv_simmim"),
        "must divide every side of the inputs' spatial size [8, 8]",
    ),
    (
        "dataset flag and config key disagree",
        "pretrain",
        lambda t, e: bad_pretrain(t, "--config.dataset=mnist5k"),
        "--dataset 'digits' and --config.dataset='mnist5k' disagree",
    ),
    (
        "labels flag and config key disagree",
        "finetune",
        lambda t, e: bad_finetune(t, e, "--config.labels=100"),
        "--labels '50' and --config.labels=100 disagree",
    ),
    (
        "image encoder on a text dataset",
        "finetune",
        lambda t, e: bad_finetune(t, e, "--dataset", "imdb_reviews"),
        "but dataset 'imdb_reviews' is a text dataset",
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


def test_workdir_below_a_file(data_dir, tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("not a directory")
    workdir = str(path / "run")
    status = pretrain_main(["ae", "--workdir", workdir, "--config.epochs=1"])
    assert status == 2
    assert "cannot be created" in capsys.readouterr().err
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


def test_number_for_text_key_kept_as_text():
    import ml_collections

    from pretrain.config import build_config, parse_value

    def defaults():
        config = ml_collections.ConfigDict()
        config.labels = "all"
        return config

    config = build_config(defaults, overrides={"labels": parse_value("100")})
    assert config.labels == "100"
    config = build_config(defaults, overrides={"labels": parse_value("0.5")})
    assert config.labels == "0.5"


def test_none_for_text_key_is_choice():
    import ml_collections

    from pretrain.config import ConfigError, build_config, parse_value

    def defaults():
        config = ml_collections.ConfigDict()
        config.pool = "max"
        config.epochs = 3
        return config

    config = build_config(defaults, overrides={"pool": parse_value("none")})
    assert config.pool == "none"
    with pytest.raises(ConfigError, match="'epochs' expects an int"):
        build_config(defaults, overrides={"epochs": parse_value("none")})


def test_flag_values_join_overrides():
    overrides = {"dataset": "digits", "epochs": 3}
    add_flag_values(overrides, {"dataset": "digits", "labels": "100", "preset": None})
    assert overrides == {"dataset": "digits", "epochs": 3, "labels": "100"}
    # A number from --config.labels=100 and the text of --labels 100 agree.
    overrides = {"labels": 100}
    add_flag_values(overrides, {"labels": "100"})
    assert overrides["labels"] == "100"
    with pytest.raises(ConfigError, match="Give only one of them"):
        add_flag_values({"dataset": "mnist5k"}, {"dataset": "digits"})
