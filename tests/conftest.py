"""Shared fixtures: one tiny simulated subject per test session, isolation from real data and network."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from brainrecon.simulation.simulate import SimulationConfig, simulate_subject

TINY = SimulationConfig(subject=3, seed=0, n_voxels=150, n_unpaired=64, resolution=32, n_train=400, n_test=12,
                        n_repeats=6, n_classes=4)
DEVICE = os.environ.get("TORCH_DEVICE", "cpu")


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run wherever CUDA is available and are skipped elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_subject(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_subject")
    simulate_subject(root, TINY)
    return root


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def isolate(tmp_path, monkeypatch):
    """Point the data folder at a tmp dir and refuse non-loopback connections."""
    monkeypatch.setenv("BRAINRECON_DATA", str(tmp_path / "brainrecon-data"))
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/"):
            raise OSError(f"tests may not reach the network ({host})")
        return real_connect(self, address)
    monkeypatch.setattr(socket.socket, "connect", guarded)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def tiny_overrides(**extra) -> list[str]:
    """Config overrides that make any stage run in seconds on the tiny subject."""
    sets = {"data.resolution": 32, "train.device": DEVICE}
    sets.update(extra)
    return [f"{k}={v}" for k, v in sets.items()]
