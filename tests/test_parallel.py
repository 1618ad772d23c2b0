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
