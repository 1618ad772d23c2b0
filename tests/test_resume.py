"""Killed runs resume from their last checkpoint and end bit-identical."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from finetune.cli import main as finetune_main
from pretrain.cli import main as pretrain_main
from pretrain.export import flat_state, load_encoder
from pretrain.workdir import write_provenance

PRETRAIN_ARGS = [
    "ae",
    "--dataset",
    "digits",
    "--config.hidden=(32, 16)",
    "--config.epochs=30",
    "--config.checkpoint_every=1",
]


def finetune_args(encoder):
    return [
        "--encoder",
        encoder,
        "--labels",
        "100",
        "--config.epochs_head=30",
        "--config.epochs_finetune=15",
        "--config.patience=100",
        "--config.checkpoint_every=1",
    ]


def committed_checkpoint(workdir: str) -> bool:
    for root, dirs, _ in os.walk(os.path.join(workdir, "checkpoints")):
        # orbax renames a step directory to its bare number once committed.
        if any(d.isdigit() for d in dirs) and root:
            return True
    return False


def kill_after_first_checkpoint(module: str, argv: list[str], workdir: str) -> None:
    command = [sys.executable, "-m", module, *argv, "--workdir", workdir]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not committed_checkpoint(workdir):
        if process.poll() is not None:
            pytest.fail(
                f"run ended before its first checkpoint: {process.stderr.read()}"
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint within 120 s")
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.5))
    process.send_signal(signal.SIGKILL)
    # -SIGKILL: the run was still going, so the rerun has work left to resume.
    assert process.wait(timeout=30) == -signal.SIGKILL


def model_weights(path: str) -> dict:
    return flat_state(load_encoder(path).module)


def assert_same_weights(first: dict, second: dict) -> None:
    assert sorted(first) == sorted(second)
    for name in first:
        assert np.array_equal(first[name], second[name]), name


@pytest.mark.slow
def test_pretrain_resumes_bit_identical(data_dir, tmp_path):
    reference = str(tmp_path / "reference")
    assert pretrain_main([*PRETRAIN_ARGS, "--workdir", reference]) == 0

    resumed = str(tmp_path / "resumed")
    kill_after_first_checkpoint("pretrain", PRETRAIN_ARGS, resumed)
    assert pretrain_main([*PRETRAIN_ARGS, "--workdir", resumed]) == 0

    assert_same_weights(
        model_weights(os.path.join(reference, "encoder")),
        model_weights(os.path.join(resumed, "encoder")),
    )
    with open(os.path.join(resumed, "metrics.jsonl")) as f:
        epochs = [line for line in f if '"phase": "layer0"' in line]
    assert len(epochs) == 30
    with open(os.path.join(resumed, "provenance.json")) as f:
        assert len(json.load(f)["resumed"]) == 1
    with open(os.path.join(reference, "provenance.json")) as f:
        assert "resumed" not in json.load(f)


@pytest.mark.slow
def test_finetune_resumes_bit_identical(ae_export, tmp_path):
    reference = str(tmp_path / "reference")
    assert finetune_main([*finetune_args(ae_export), "--workdir", reference]) == 0

    resumed = str(tmp_path / "resumed")
    kill_after_first_checkpoint("finetune", finetune_args(ae_export), resumed)
    assert finetune_main([*finetune_args(ae_export), "--workdir", resumed]) == 0

    first = ocp.StandardCheckpointer().restore(
        os.path.join(reference, "model", "weights")
    )
    second = ocp.StandardCheckpointer().restore(
        os.path.join(resumed, "model", "weights")
    )
    assert_same_weights(first, second)


def test_resumed_metrics_file_unchanged(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    args = [
        "ae",
        "--workdir",
        workdir,
        "--config.hidden=(16, 8)",
        "--config.epochs=3",
        "--config.checkpoint_every=1",
    ]
    metrics = os.path.join(workdir, "metrics.jsonl")
    assert pretrain_main(args) == 0
    with open(metrics, "rb") as f:
        reference = f.read()

    # Rerun a finished run, resume the second layer from its epoch-2
    # checkpoint, and start the second layer over: each rewrites the lines
    # it drops and leaves the first layer's lines alone.
    layer1 = os.path.join(workdir, "checkpoints", "layer1")
    for remove in (None, os.path.join(layer1, "3"), layer1):
        if remove is not None:
            shutil.rmtree(remove)
        assert pretrain_main(args) == 0
        with open(metrics, "rb") as f:
            assert f.read() == reference, remove


def test_changed_config_rejected(data_dir, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    args = ["ae", "--workdir", workdir, "--config.hidden=(8,)", "--config.epochs=1"]
    assert pretrain_main(args) == 0
    changed = [a.replace("epochs=1", "epochs=2") for a in args]
    assert pretrain_main(changed) == 2
    err = capsys.readouterr().err
    assert "keys ['epochs'] differ: epochs was 1, now 2" in err
    assert "--overwrite" in err
    assert pretrain_main([*changed, "--overwrite"]) == 0


def test_resume_fills_added_keys(tmp_path):
    from pretrain.workdir import WorkdirError, start_run

    old = {"method": "ae", "epochs": 3}
    start_run(str(tmp_path), old, overwrite=False)
    assert start_run(str(tmp_path), {**old, "stream": False}, overwrite=False)
    with pytest.raises(WorkdirError, match="stream was False, now True"):
        start_run(str(tmp_path), {**old, "stream": True}, overwrite=False)


def test_provenance_keeps_first_record(tmp_path):
    def written():
        with open(tmp_path / "provenance.json") as f:
            return json.load(f)

    write_provenance(str(tmp_path), {"time": "start"}, resumed=False)
    write_provenance(str(tmp_path), {"time": "resume 1"}, resumed=True)
    write_provenance(str(tmp_path), {"time": "resume 2"}, resumed=True)
    assert written() == {
        "time": "start",
        "resumed": [{"time": "resume 1"}, {"time": "resume 2"}],
    }

    write_provenance(str(tmp_path), {"time": "new run"}, resumed=False)
    assert written() == {"time": "new run"}


def test_whole_classifier_head_checkpoint_resumes(ae_export, tmp_path, monkeypatch):
    # A workdir whose head stage was checkpointed with the whole classifier,
    # as when its codes are not cached, resumes with the whole classifier.
    from finetune import run as run_lib

    argv = [*finetune_args(ae_export), "--workdir", str(tmp_path)]
    argv += ["--config.epochs_head=3", "--config.epochs_finetune=2"]
    with monkeypatch.context() as patch:
        patch.setattr(run_lib, "codes_fixed_in_training", lambda *args: False)
        assert finetune_main(argv) == 0
    with open(tmp_path / "metrics.json") as f:
        first = json.load(f)
    with open(tmp_path / "metrics.jsonl") as f:
        lines = f.read()

    assert finetune_main(argv) == 0
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f)["test_accuracy"] == first["test_accuracy"]
    with open(tmp_path / "metrics.jsonl") as f:
        assert f.read() == lines
    assert not os.path.exists(tmp_path / "checkpoints" / "lr_x1" / "head_on_codes")
