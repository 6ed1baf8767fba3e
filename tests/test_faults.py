"""Bad data and faults stop at once, say what to fix, and lose nothing: non-finite data and losses, SIGTERM, a full
disk, two writers on one data folder, the thread count."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from brainrecon import locks, runtime
from brainrecon.cli import app
from brainrecon.config import load_config
from brainrecon.errors import WriteError
from brainrecon.train import checkpoint
from brainrecon.train.encoder import train_encoder
from brainrecon.train.guards import NonFiniteLoss
from tests.conftest import tiny_overrides

ENCODER_SETS = {"model.input_size": 32, "train.milestones": "[]"}


def encoder_cfg(epochs: int):
    return load_config("encoder", "rgbd", "demo", tiny_overrides(**{"train.epochs": epochs, **ENCODER_SETS}))


def _cli_sets(base=ENCODER_SETS, **extra) -> list[str]:
    return [a for s in tiny_overrides(**{**base, **extra}) for a in ("--set", s)]


def assert_same_weights(last_a, last_b) -> None:
    """The two checkpoints hold bit-identical weights."""
    a, b = checkpoint.load(last_a)["model"], checkpoint.load(last_b)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def _poisoned_copy(tiny_subject, tmp_path, file: str, key: str, index: tuple, value: float):
    data = tmp_path / "data"
    shutil.copytree(tiny_subject, data)
    path = data / file
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[key] = arrays[key].astype(arrays[key].dtype if arrays[key].dtype.kind == "f" else np.float32)
    arrays[key][index] = value
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return data


@pytest.mark.parametrize("file,key,index,value,what", [
    ("sbj_3.npz", "arr_0", (3, 5), np.nan, "1 non-finite value (1 NaN, 0 inf), the first at [3, 5]"),
    ("sbj_3.npz", "arr_1", (7, 0), np.inf, "1 non-finite value (0 NaN, 1 inf), the first at [7, 0]"),
    ("sbj_3.npz", "arr_2", (2, 9), -np.inf, "1 non-finite value (0 NaN, 1 inf), the first at [2, 9]"),
    ("rgbd_32_from_224_large_png_uint8.npz", "train_images", (4, 1, 2, 3), np.nan,
     "1 non-finite value (1 NaN, 0 inf), the first at [4, 1, 2, 3]"),
    ("rgbd_32_from_224_large_png_uint8.npz", "test_images", (1, 0, 0, 0), 1.5,
     "1 values outside [0, 1] (found [0, 1.5]), the first at [1, 0, 0, 0]"),
])
def test_non_finite_or_out_of_range_data_is_refused_before_training(tiny_subject, tmp_path, monkeypatch, file, key,
                                                                      index, value, what):
    import brainrecon.train.encoder as trainer
    built = []
    monkeypatch.setattr(trainer, "build_encoder", lambda *a, **k: built.append(a))   # no network is ever built
    data = _poisoned_copy(tiny_subject, tmp_path, file, key, index, value)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train-encoder", "--config", "demo", "--data-dir", str(data), "--out", str(out),
                                      *_cli_sets(**{"train.epochs": 1})])
    assert not built
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"{data / file}: key '{key}'" in message and what in message, message
    assert not out.exists() or not any(out.iterdir())                  # nothing written


def test_undefined_ceiling_of_a_constant_voxel_reads_as_zero(tiny_subject, tmp_path):
    from brainrecon.data import release
    data = _poisoned_copy(tiny_subject, tmp_path, "sbj_3.npz", "arr_5", (4,), np.nan)
    subject = release.load_subject(data, 3, "VC")
    assert np.isfinite(subject.noise_ceiling).all() and np.isfinite(subject.snr).all()
    trials = np.ones((5, 4, 3), np.float32)                            # three constant voxels
    trials[:, :, 1] += np.arange(5)[:, None]                           # signal, no noise
    ceiling, snr = release.noise_ceiling_from_repeats(trials)
    assert ceiling.tolist() == [0.0, 1.0, 0.0] and snr.tolist() == [0.0, 1e6, 0.0]


def test_writers_never_write_non_finite_values(tmp_path):
    from brainrecon.config import ROIS
    from brainrecon.data import release
    from brainrecon.errors import DataError
    arrays = {f"arr_{i}": np.zeros((2, 3), np.float32) for i in range(3)}
    arrays.update(arr_3=np.zeros(2, np.int64), arr_4=np.zeros(2, np.int64), arr_5=np.zeros(3, np.float32),
                  arr_6=np.zeros(3, np.float32))
    arrays["arr_1"][1, 2] = np.nan
    with pytest.raises(DataError, match=r"'arr_1'.*the first at \[1, 2\]"):
        release.write_subject(tmp_path / "sbj_1.npz", arrays, {r: np.ones(3, bool) for r in ROIS})
    assert not list(tmp_path.iterdir())


def _poison(monkeypatch, module, name: str, at_call: int):
    """Make the `at_call`-th call (1-based) of module.name return non-finite losses."""
    real, calls = getattr(module, name), []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss, parts = real(*args, **kwargs)
        if len(calls) == at_call:
            loss = loss * float("nan")
            key = next(iter(parts))
            parts = {**parts, key: parts[key] * float("nan")}
        return loss, parts
    monkeypatch.setattr(module, name, poisoned)


def test_a_non_finite_loss_stops_at_that_step_and_resume_is_bit_exact(tiny_subject, tmp_path, monkeypatch):
    import brainrecon.train.encoder_step as enc
    cfg = encoder_cfg(3)
    n_train = 400 - round(0.05 * 400)
    steps = n_train // cfg.train.batch_size
    _poison(monkeypatch, enc, "encoder_loss", steps + 3)                # epoch 2, step 3
    with pytest.raises(NonFiniteLoss) as info:
        train_encoder(cfg, tiny_subject, tmp_path / "resumed", quiet=True)
    message = str(info.value)
    assert message.startswith(f"epoch 2, step 3/{steps}: the loss became non-finite (loss, criterion)"), message
    assert f"the last good checkpoint is {tmp_path / 'resumed' / 'last.pt'} (epoch 1)" in message
    assert "--resume" in message
    assert checkpoint.load(tmp_path / "resumed/last.pt")["epoch"] == 0
    assert not (tmp_path / "resumed" / locks.LOCK).exists()
    monkeypatch.undo()
    train_encoder(cfg, tiny_subject, tmp_path / "resumed", resume=True, quiet=True)
    train_encoder(cfg, tiny_subject, tmp_path / "straight", quiet=True)
    assert_same_weights(tmp_path / "straight/last.pt", tmp_path / "resumed/last.pt")


def test_a_non_finite_validation_loss_is_an_error(tiny_subject, tmp_path, monkeypatch):
    import brainrecon.train.encoder as enc
    real = enc.predict
    monkeypatch.setattr(enc, "predict", lambda model, images, batch=100: real(model, images, batch) * float("nan"))
    with pytest.raises(NonFiniteLoss, match="epoch 1: val_loss is nan"):
        train_encoder(encoder_cfg(2), tiny_subject, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run/best.pt").exists()


def test_a_full_disk_during_a_checkpoint_keeps_the_old_one_and_resume_is_bit_exact(tiny_subject, tmp_path,
                                                                                     monkeypatch):
    import brainrecon.atomic as atomic
    real, calls = atomic.write_atomic, []

    def disk_full_on_epoch_2_last(path, writer):
        calls.append(path)
        if path.name == "last.pt" and sum(p.name == "last.pt" for p in calls) == 2:
            def failing(tmp):
                writer(tmp)                                            # the temp file exists, half-written in life
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, failing)
        return real(path, writer)
    monkeypatch.setattr(checkpoint, "write_atomic", disk_full_on_epoch_2_last)
    run = tmp_path / "run"
    with pytest.raises(WriteError) as info:
        train_encoder(encoder_cfg(3), tiny_subject, run, quiet=True)
    message = str(info.value)
    assert message.startswith(f"{run / 'last.pt'}: could not write it (No space left on device; ") and "MiB free" in \
        message and "the previous file, if any, is unchanged" in message and "--resume" in message, message
    assert checkpoint.load(run / "last.pt")["epoch"] == 0              # the old checkpoint, intact and loadable
    assert not list(run.glob(".*.tmp"))                                # the temp file is gone
    monkeypatch.undo()
    train_encoder(encoder_cfg(3), tiny_subject, run, resume=True, quiet=True)
    train_encoder(encoder_cfg(3), tiny_subject, tmp_path / "straight", quiet=True)
    assert_same_weights(tmp_path / "straight/last.pt", run / "last.pt")


def test_the_cli_exits_2_on_a_full_disk(tiny_subject, tmp_path, monkeypatch):
    import brainrecon.atomic as atomic
    real = atomic.write_atomic

    def full(path, writer):
        if path.name == "last.pt":
            raise atomic.write_error(path, OSError(errno.ENOSPC, "No space left on device"))
        return real(path, writer)
    monkeypatch.setattr(checkpoint, "write_atomic", full)
    result = CliRunner().invoke(app, ["train-encoder", "--config", "demo", "--data-dir", str(tiny_subject), "--out",
                                      str(tmp_path / "run"), *_cli_sets(**{"train.epochs": 1})])
    assert result.exit_code == 2 and "No space left on device" in result.output, result.output


def test_stale_temp_files_are_removed_when_a_run_starts(tmp_path):
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "keep.txt").write_text("mine")
    with locks.hold(tmp_path):
        assert not (tmp_path / ".last.pt.abc123.tmp").exists() and (tmp_path / "keep.txt").exists()


def _wait_for(path, proc, timeout=180):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["train-encoder", "train-decoder"])
def test_sigterm_stops_cleanly_and_resume_is_bit_exact(tiny_subject, tmp_path, stage):
    """A scheduler's preemption: SIGTERM mid-epoch -> exit 143, lock released, resume command printed; --resume gives
    the weights of an uninterrupted run, bit for bit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "brainrecon"]
    encoder = tmp_path / "encoder"
    if stage == "train-decoder":
        subprocess.run([*base, "train-encoder", "--config", "demo", "--data-dir", str(tiny_subject), "--out",
                        str(encoder), *_cli_sets(**{"train.epochs": 1})], check=True, env=env, capture_output=True)
        extra = ["--encoder", str(encoder), *_cli_sets({"train.milestones": "[]"}, **{
            "train.unpaired_image_batch": 8, "train.unpaired_fmri_batch": 8, "train.batch_size": 16,
            "loss.perceptual_width": 0.125, "loss.perceptual_net": "vgg16-random",
            "loss.perceptual_weights": "[10,10,10,10,2]", "train.warn_seconds": 0})]
    else:
        extra = _cli_sets()
    run, straight = tmp_path / "run", tmp_path / "straight"
    cmd = [*base, stage, "--config", "demo", "--data-dir", str(tiny_subject), "--epochs", "4", *extra]
    proc = subprocess.Popen([*cmd, "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    _wait_for(run / "last.pt", proc)                                   # the first epoch is done
    time.sleep(0.3)                                                    # well inside the second
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    message = " ".join(stderr.split())
    assert proc.returncode == 143, stderr
    assert "SIGTERM in epoch" in message and "--resume" in message and "last good checkpoint" in message, message
    assert not (run / locks.LOCK).exists()
    done = checkpoint.load(run / "last.pt")["epoch"]
    assert done < 3, "the run finished before the signal: nothing was tested"
    subprocess.run([*cmd, "--out", str(run), "--resume"], check=True, env=env, capture_output=True)
    subprocess.run([*cmd, "--out", str(straight)], check=True, env=env, capture_output=True)
    assert_same_weights(straight / "last.pt", run / "last.pt")


@pytest.mark.ddp
@pytest.mark.slow
def test_sigterm_under_torchrun_stops_every_rank(tiny_subject, tmp_path):
    from tests.test_ddp import _free_port
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "brainrecon", "train-encoder", "--data-dir", str(tiny_subject), "--config",
           "demo", *_cli_sets(**{"train.device": "cpu"}), "--epochs", "6"]      # gloo on the CPU
    proc = subprocess.Popen([*cmd, "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    _wait_for(run / "last.pt", proc)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGTERM)                                # as a scheduler does: the whole job
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert stderr.count("SIGTERM in epoch") >= 1, stderr[-3000:]
    assert not (run / locks.LOCK).exists()
    done = checkpoint.load(run / "last.pt")["epoch"]
    assert done < 5, "the run finished before the signal: nothing was tested"
    resumed = subprocess.run([*cmd, "--out", str(run), "--resume"], env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = subprocess.run([*cmd, "--out", str(tmp_path / "straight")], env=env, capture_output=True, text=True,
                              timeout=300)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert_same_weights(tmp_path / "straight/last.pt", run / "last.pt")


def test_thread_count_follows_request_env_and_ranks(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert runtime.cpu_threads(3) == (3, "3 (train.threads / --threads)")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert runtime.cpu_threads(0) == (1, "1 (OMP_NUM_THREADS)")
    monkeypatch.delenv("OMP_NUM_THREADS")
    usable = len(os.sched_getaffinity(0))
    monkeypatch.setattr(runtime, "_cgroup_cpus", lambda: None)
    assert runtime.cpu_threads(0)[0] == usable
    monkeypatch.setattr(runtime, "_cgroup_cpus", lambda: 1.5)             # a container's quota below the CPUs
    n, why = runtime.cpu_threads(0)
    assert n == 1 if usable > 1 else n == usable
    monkeypatch.setattr(runtime, "_cgroup_cpus", lambda: None)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(usable * 2))            # more ranks than CPUs: one thread each
    assert runtime.cpu_threads(0)[0] == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert runtime.cpu_threads(0) == (2, "2 (4 CPUs in the affinity mask, / 2 ranks on this host)")


def test_metrics_record_the_thread_choice(tiny_subject, tmp_path):
    m = train_encoder(load_config("encoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": 1, "train.threads": 1, **ENCODER_SETS})), tiny_subject, tmp_path / "run", quiet=True)
    assert m["cpu_threads"] == 1 and m["cpu_threads_reason"] == "1 (train.threads / --threads)"
    assert json.loads((tmp_path / "run/metrics.json").read_text())["cpu_threads"] == 1
