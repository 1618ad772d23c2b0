"""Data-parallel training matches single-device training."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "parallel_worker.py")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_worker(out, *args, timeout=180):
    env = {**os.environ, "PYTHONPATH": REPO}
    command = [sys.executable, WORKER, str(out), *args]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=180):
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("worker timed out")
    assert process.returncode == 0, stderr[-2000:]


def load(path):
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_eight_devices_match_one(tmp_path):
    single, sharded = tmp_path / "single.npz", tmp_path / "sharded.npz"
    finish(run_worker(single, "--devices", "1"))
    finish(run_worker(sharded, "--devices", "8"))
    one, eight = load(single), load(sharded)
    assert int(eight["devices"]) == 8
    for name in one:
        if name != "devices":
            np.testing.assert_allclose(eight[name], one[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_processes_match_two_devices(tmp_path):
    reference = tmp_path / "two_devices.npz"
    finish(run_worker(reference, "--devices", "2"))

    port = str(free_port())
    out = tmp_path / "two_processes.npz"
    workers = [
        run_worker(out, "--process-id", str(i), "--processes", "2", "--port", port)
        for i in range(2)
    ]
    for worker in workers:
        finish(worker)
    expected, actual = load(reference), load(out)
    assert int(actual["devices"]) == 2
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-6, atol=1e-6)


def record_initialize(monkeypatch) -> list[dict]:
    """Replace `jax.distributed.initialize` by a recorder of its arguments."""
    import jax

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    # Set, so that the command leaves this process's JAX config alone.
    monkeypatch.setenv("JAX_CPU_COLLECTIVES_IMPLEMENTATION", "gloo")
    return calls


def test_experiments_rejects_more_than_one_process(monkeypatch, tmp_path, capsys):
    import jax

    from experiments.cli import main

    record_initialize(monkeypatch)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    argv = ["quick", "--workdir", str(tmp_path / "run"), "--distributed"]
    assert main(argv) == 2
    message = capsys.readouterr().err
    assert "--shard I/N" in message
    assert "pretrain` or `finetune`" in message
    assert not (tmp_path / "run").exists()


def test_distributed_flag_initializes(monkeypatch, tmp_path):
    from pretrain.cli import main

    calls = record_initialize(monkeypatch)
    # epochs 0 fails the config check after initialisation, before training.
    argv = ["ae", "--workdir", str(tmp_path), "--distributed", "--config.epochs=0"]
    assert main(argv) == 2
    assert calls == [
        {"coordinator_address": None, "num_processes": None, "process_id": None}
    ]


def test_distributed_env_initializes(monkeypatch):
    from pretrain.cli_common import initialize_distributed

    calls = record_initialize(monkeypatch)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "localhost:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "1")
    assert initialize_distributed(False)
    assert calls == [
        {"coordinator_address": "localhost:1234", "num_processes": 2, "process_id": 1}
    ]


def test_distributed_off_by_default(monkeypatch):
    from pretrain.cli_common import initialize_distributed

    calls = record_initialize(monkeypatch)
    assert not initialize_distributed(False)
    assert calls == []


def test_distributed_invalid_env(monkeypatch):
    from pretrain.cli_common import initialize_distributed
    from pretrain.config import ConfigError

    calls = record_initialize(monkeypatch)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ConfigError, match="JAX_NUM_PROCESSES"):
        initialize_distributed(False)
    assert calls == []


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"JAX_NUM_PROCESSES": "0"}, "JAX_NUM_PROCESSES"),
        ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, "use 0 to 1"),
        ({"JAX_COORDINATOR_ADDRESS": "localhost:notaport"}, "HOST:PORT"),
        ({"JAX_COORDINATOR_ADDRESS": "localhost"}, "HOST:PORT"),
        ({"JAX_COORDINATOR_ADDRESS": "localhost:70000"}, "1 to 65535"),
    ],
)
def test_distributed_env_out_of_range(monkeypatch, env, fragment):
    from pretrain.cli_common import initialize_distributed
    from pretrain.config import ConfigError

    calls = record_initialize(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=fragment):
        initialize_distributed(False)
    assert calls == []
