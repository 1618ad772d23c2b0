"""`pretrain` and `finetune` as two JAX processes on one shared workdir.

Each run starts real command processes on localhost (gloo collectives, one
CPU device per process) and compares them with one process on two devices.
A timeout turns a hang, such as processes waiting at different barriers,
into a failure.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240  # seconds per command, about ten times what one takes on 2 CPU cores

PRETRAIN = [
    "pretrain",
    "ae",
    "--dataset",
    "digits",
    "--config.hidden=(16,)",
    "--config.epochs=2",
    "--config.checkpoint_every=1",
]
FINETUNE = [
    "finetune",
    "--dataset",
    "digits",
    "--labels",
    "50",
    "--preset",
    "full",
    "--config.epochs_head=2",
    "--config.epochs_finetune=1",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def command_env(data_dir: str, devices: int, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("JAX_") and key != "XLA_FLAGS"
    }
    env.update(
        PYTHONPATH=REPO,
        TFDS_DATA_DIR=data_dir,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        **extra,
    )
    return env


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", *args]
    return subprocess.Popen(
        command, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True
    )


def wait_all(processes: list[subprocess.Popen]) -> list[tuple[int, str]]:
    """Wait for every process. On a timeout, kill them all and fail."""
    results = []
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=TIMEOUT)
            results.append((process.returncode, stderr))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        pytest.fail(f"a command process did not finish within {TIMEOUT} s (a hang)")
    return results


def run_one_process(args: list[str], data_dir: str) -> None:
    [(status, stderr)] = wait_all([start(args, command_env(data_dir, devices=2))])
    assert status == 0, stderr[-3000:]


def run_two_processes(
    args: list[str], data_dir: str, extra: tuple[list[str], list[str]] = ([], [])
) -> list[tuple[int, str]]:
    """Run `args` as processes 0 and 1, each with its own `extra` arguments."""
    address = f"localhost:{free_port()}"
    processes = [
        start(
            [*args, *extra[index]],
            command_env(
                data_dir,
                devices=1,
                JAX_COORDINATOR_ADDRESS=address,
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(index),
            ),
        )
        for index in range(2)
    ]
    return wait_all(processes)


def check_succeeded(results: list[tuple[int, str]]) -> list[str]:
    for index, (status, stderr) in enumerate(results):
        assert status == 0, f"process {index}:\n{stderr[-3000:]}"
    return [stderr for _, stderr in results]


def read_weights(directory: str) -> dict[str, np.ndarray]:
    with ocp.StandardCheckpointer() as checkpointer:
        return dict(checkpointer.restore(os.path.join(directory, "weights")))


def check_weights_close(actual: str, expected: str) -> None:
    actual_weights, expected_weights = read_weights(actual), read_weights(expected)
    assert sorted(actual_weights) == sorted(expected_weights)
    for name, value in expected_weights.items():
        np.testing.assert_allclose(
            actual_weights[name], value, rtol=1e-6, atol=1e-6, err_msg=name
        )


def metric_lines(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def digits_prepared(data_dir):
    """Prepare digits once here, so the timed commands only read it."""
    from pretrain.data import load_dataset

    load_dataset("digits", data_dir=data_dir)
    return data_dir


@pytest.mark.slow
def test_pretrain_finetune_two_processes(digits_prepared, tmp_path):
    data_dir = digits_prepared
    single, multi = str(tmp_path / "single"), str(tmp_path / "multi")

    run_one_process([*PRETRAIN, "--workdir", single], data_dir)
    check_succeeded(run_two_processes([*PRETRAIN, "--workdir", multi], data_dir))
    check_weights_close(os.path.join(multi, "encoder"), os.path.join(single, "encoder"))
    # Process 0 alone writes run files, so each epoch is logged once.
    assert [r["epoch"] for r in metric_lines(multi)] == [1, 2]
    for name in ("config.json", "provenance.json", "filters.png", "tb"):
        assert os.path.exists(os.path.join(multi, name)), name
    assert os.path.isfile(os.path.join(multi, "encoder", "encoder.json"))
    assert not [name for name in os.listdir(multi) if name.startswith(".")]

    # The same command again resumes from the finished checkpoints.
    logs = check_succeeded(run_two_processes([*PRETRAIN, "--workdir", multi], data_dir))
    for log in logs:
        assert "resuming the run" in log
    assert [r["epoch"] for r in metric_lines(multi)] == [1, 2]
    check_weights_close(os.path.join(multi, "encoder"), os.path.join(single, "encoder"))

    single_ft, multi_ft = str(tmp_path / "single_ft"), str(tmp_path / "multi_ft")
    single_args = ["--encoder", os.path.join(single, "encoder"), "--workdir"]
    multi_args = ["--encoder", os.path.join(multi, "encoder"), "--workdir"]
    run_one_process([*FINETUNE, *single_args, single_ft], data_dir)
    check_succeeded(run_two_processes([*FINETUNE, *multi_args, multi_ft], data_dir))
    check_weights_close(
        os.path.join(multi_ft, "model"), os.path.join(single_ft, "model")
    )
    with open(os.path.join(single_ft, "metrics.json")) as f:
        expected = json.load(f)
    with open(os.path.join(multi_ft, "metrics.json")) as f:
        actual = json.load(f)
    assert actual["test_accuracy"] == expected["test_accuracy"]
    assert actual["val_accuracy"] == expected["val_accuracy"]
    assert [s["best_epoch"] for s in actual["stages"]] == [
        s["best_epoch"] for s in expected["stages"]
    ]
    np.testing.assert_allclose(actual["test_loss"], expected["test_loss"], rtol=1e-6)


@pytest.mark.slow
def test_two_processes_bad_workdir(digits_prepared, tmp_path):
    # Process 0 checks the workdir, and both processes must stop with its
    # error instead of one raising while the other waits for it.
    workdir = tmp_path / "a_file"
    workdir.write_text("")
    results = run_two_processes([*PRETRAIN, "--workdir", str(workdir)], digits_prepared)
    for index, (status, stderr) in enumerate(results):
        assert status == 2, f"process {index}:\n{stderr[-3000:]}"
        assert "is a file, not a directory" in stderr


@pytest.mark.slow
def test_rbm_two_processes_draw_with_threefry(digits_prepared, tmp_path):
    data_dir = digits_prepared
    rbm = ["pretrain", "rbm", "--dataset", "digits", "--config.hidden=(16,)"]
    rbm += ["--config.epochs=1", "--config.ais_every=0"]
    single, multi = str(tmp_path / "single"), str(tmp_path / "multi")

    run_one_process(
        [*rbm, "--config.rng_impl=threefry2x32", "--workdir", single], data_dir
    )
    # The default rng_impl, philox4x32, cannot draw across devices.
    logs = check_succeeded(run_two_processes([*rbm, "--workdir", multi], data_dir))
    assert "draws with threefry2x32" in logs[0]
    with open(os.path.join(multi, "config.json")) as f:
        assert json.load(f)["rng_impl"] == "threefry2x32"
    check_weights_close(os.path.join(multi, "encoder"), os.path.join(single, "encoder"))


@pytest.mark.slow
def test_two_processes_different_configs(digits_prepared, tmp_path):
    # Different configs would train different programs and wait at different
    # collectives forever, so the commands compare them before training.
    workdir = str(tmp_path / "run")
    extra = (["--config.epochs=2"], ["--config.epochs=3"])
    results = run_two_processes(
        [*PRETRAIN, "--workdir", workdir], digits_prepared, extra
    )
    for index, (status, stderr) in enumerate(results):
        assert status == 2, f"process {index}:\n{stderr[-3000:]}"
        assert "the workdir and config of process 1 differs" in stderr
    assert "keys ['epochs'] differ here" in results[1][1]
    assert not os.path.exists(workdir)


@pytest.mark.slow
def test_config_error_in_one_process(digits_prepared, tmp_path):
    # Process 1 stops at its config check, and process 0, left waiting at
    # the next collective, must stop with one line instead of a traceback.
    workdir = str(tmp_path / "run")
    extra = ([], ["--config.epohcs=3"])
    results = run_two_processes(
        [*PRETRAIN, "--workdir", workdir], digits_prepared, extra
    )
    (status0, stderr0), (status1, stderr1) = results
    assert status1 == 2
    assert "unknown config key 'epohcs'" in stderr1
    assert status0 == 1
    assert "another process of the run stopped or failed first" in stderr0
    assert "Traceback" not in stderr0
