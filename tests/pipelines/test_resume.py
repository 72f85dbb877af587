"""Run folders, checkpoints and resume of ``dali-mixup train``: a stopped run continues bit for
bit, an existing run is never overwritten silently, bad checkpoint files get a named error."""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from dali_mixup.pipelines import train
from dali_mixup.pipelines.checkpoint import (TRAINING_FORMAT, CheckpointError, RunError,
                                             RunFolderExists, load_checkpoint)
from dali_mixup.pipelines.evaluate import load_trained

pytestmark = pytest.mark.dali


def write_jpeg_dataset(root, classes=("ant", "bee", "cat"), n_train=8, n_val=3, size=16, seed=0):
    """``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``: real JPEG files (Pillow),
    class ``c`` brighter than class ``c - 1`` plus noise, with a bright bar where the class says."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, name in enumerate(classes):
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            for i in range(n):
                img = np.clip(50 + 50 * c + rng.normal(0, 25, (size, size, 3)), 0, 255)
                img[:, 2 + 4 * c: 4 + 4 * c] = 250
                Image.fromarray(img.astype(np.uint8)).save(
                    os.path.join(root, split, name, f"{i:02d}.jpg"), quality=90)
    return str(root)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    return write_jpeg_dataset(tmp_path_factory.mktemp("jpegs"))


def small(data, out, **kw):
    """A tiny CPU run on the JPEG folder: 3 classes x 8 images, batches of 4 (6 steps/epoch),
    random crops, flips and k-mixup."""
    base = dict(data=data, mixing="k_mixup", k=2, size=8, batch_size=4, width=4, epochs=3,
                optimizer="sgd", lr=0.05, out=str(out), progress=False, plot=False,
                torch_threads=1, dali_threads=1)
    base.update(kw)
    return train.TrainConfig(**base)


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_state(a, b):
    """Model, optimizer and scheduler states of two ``last.pt`` files: exactly equal."""
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for p in sa:
        for k in sa[p]:
            assert torch.equal(torch.as_tensor(sa[p][k]), torch.as_tensor(sb[p][k])), (p, k)
    assert a["scheduler"] == b["scheduler"]


def interrupt_on(monkeypatch, target, name, nth):
    """Send this process SIGINT (Ctrl-C) during the ``nth`` call of ``target.name``."""
    real = getattr(target, name)
    calls = [0]

    def wrapped(*args, **kw):
        calls[0] += 1
        if calls[0] == nth:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kw)

    monkeypatch.setattr(target, name, wrapped)


def test_two_epochs_then_resume_equals_three_straight(jpegs, tmp_path, monkeypatch):
    """3 epochs straight vs. stopped by Ctrl-C after epoch 2 (during its validation) and
    resumed: the same weights, optimizer and scheduler states, bit for bit, and the same
    history."""
    straight = train.run(small(jpegs, tmp_path / "a"))
    interrupt_on(monkeypatch, train, "evaluate", 2)
    with pytest.raises(KeyboardInterrupt) as stop:
        train.run(small(jpegs, tmp_path / "b"))
    monkeypatch.undo()
    assert (stop.value.epoch, stop.value.step) == (3, 0)
    saved = weights(stop.value.path)
    assert saved["format"] == TRAINING_FORMAT and saved["epoch"] == 2
    assert saved["step_in_epoch"] == 0 and len(saved["history"]) == 2
    resumed = train.run(small(jpegs, tmp_path / "b", resume="auto"))
    a, b = weights(straight["checkpoint_path"]), weights(resumed["checkpoint_path"])
    assert a["epoch"] == b["epoch"] == 3
    assert_same_state(a, b)
    assert [h["val_acc"] for h in straight["history"]] == [h["val_acc"] for h in resumed["history"]]
    assert [h["train_loss"] for h in straight["history"]] == [h["train_loss"] for h in resumed["history"]]
    # the state after 2 epochs is not the final one (the third epoch did train)
    assert not all(torch.equal(saved["model"][k], a["model"][k]) for k in a["model"])


def test_stop_mid_epoch_and_resume_from_the_command_line(tmp_path, monkeypatch, capsys):
    """Ctrl-C during a step (in-memory arrays): the step ends, ``last.pt`` holds the position
    inside the epoch, exit status 130 with the command that continues; ``--resume RUN`` alone
    (no --arrays) then ends with the weights of an uninterrupted run."""
    rng = np.random.default_rng(1)
    npz = tmp_path / "toy.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (60, 6, 6, 1), dtype=np.uint8),
             y_train=np.arange(60) % 3, x_val=rng.integers(0, 256, (12, 6, 6, 1), dtype=np.uint8),
             y_val=np.arange(12) % 3)
    args = ["--arrays", str(npz), "--mixing", "zeta_mixup", "--epochs", "2", "--batch-size", "8",
            "--width", "4", "--torch-threads", "1", "--no-progress", "--name", "toy"]
    assert train.main(args + ["--out", str(tmp_path / "a")]) == 0
    import dali_mixup.losses as losses

    interrupt_on(monkeypatch, losses, "soft_target_cross_entropy", 10)  # epoch 2, step 3 of 7
    assert train.main(args + ["--out", str(tmp_path / "b")]) == 130
    monkeypatch.undo()
    run_b = tmp_path / "b" / "toy"
    err = capsys.readouterr().err
    assert f"--resume {run_b}" in err and "epoch 2, step 3" in err
    mid = weights(run_b / "last.pt")
    assert (mid["epoch"], mid["step_in_epoch"]) == (1, 3)
    assert train.main(["--resume", str(run_b), "--no-progress"]) == 0
    assert_same_state(weights(tmp_path / "a" / "toy" / "last.pt"), weights(run_b / "last.pt"))
    res = json.load(open(run_b / "results.json"))
    assert res["config"]["arrays"] == str(npz) and res["history"][-1]["epoch"] == 2


def test_an_existing_run_is_never_overwritten_without_overwrite(jpegs, tmp_path, capsys):
    first = train.run(small(jpegs, tmp_path, epochs=1, name="exp"))
    folder = str(tmp_path / "exp")
    assert first["run_dir"] == folder
    assert sorted(os.listdir(folder)) == ["best.pt", "config.json", "last.pt", "results.json"]
    before = open(os.path.join(folder, "results.json")).read()
    with pytest.raises(RunFolderExists, match="--overwrite") as e:
        train.run(small(jpegs, tmp_path, epochs=1, name="exp", lr=0.01))
    assert folder in str(e.value)
    assert open(os.path.join(folder, "results.json")).read() == before  # untouched
    rc = train.main(["--data", jpegs, "--size", "8", "--batch-size", "4", "--width", "4",
                     "--epochs", "1", "--out", str(tmp_path), "--name", "exp", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and folder in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    again = train.run(small(jpegs, tmp_path, epochs=1, name="exp", lr=0.01, overwrite=True))
    assert json.load(open(os.path.join(folder, "results.json")))["config"]["lr"] == 0.01
    assert again["run_dir"] == folder


def test_a_run_stopped_before_its_first_epoch_does_not_block_the_next(jpegs, tmp_path):
    """A data error after the run folder was made (batch larger than the data) leaves only
    config.json; the corrected command then runs in that folder without --overwrite."""
    with pytest.raises(ValueError, match="--batch-size 64"):
        train.run(small(jpegs, tmp_path, epochs=1, name="retry", batch_size=64))
    assert os.listdir(tmp_path / "retry") == ["config.json"]
    res = train.run(small(jpegs, tmp_path, epochs=1, name="retry"))
    assert json.load(open(tmp_path / "retry" / "config.json"))["batch_size"] == 4
    assert res["run_dir"] == str(tmp_path / "retry")


def test_best_weights_load_for_evaluation(jpegs, tmp_path):
    """``best.pt`` is the epoch with the best validation accuracy; ``load_trained`` rebuilds the
    model, and its accuracy on the validation pipeline is that epoch's."""
    res = train.run(small(jpegs, tmp_path, epochs=4, name="best", optimizer="adamw", lr=0.02))
    best_epoch = max(res["history"], key=lambda h: h["val_acc"])["epoch"]
    model, info = load_trained(res["best_path"])
    assert info["epoch"] == res["best_epoch"] == best_epoch
    assert info["val_acc"] == res["best_val_acc"]
    assert info["classes"] == ["ant", "bee", "cat"] and not model.training
    cfg = train.TrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in info["config"].items()})
    loaders = train.Loaders(cfg, 0, 1, 0)
    _, acc, n = train.evaluate(model, loaders.val_it, torch.device("cpu"), 1)
    assert n == 9 and acc == info["val_acc"]
    # a run folder means its best.pt; last.pt loads too (the last epoch's model)
    assert load_trained(res["run_dir"])[1]["epoch"] == best_epoch
    assert load_trained(res["checkpoint_path"])[1]["epoch"] == 4


def test_truncated_or_foreign_checkpoints_get_a_named_error(jpegs, tmp_path, capsys):
    res = train.run(small(jpegs, tmp_path, epochs=1, name="ok"))
    good = open(res["checkpoint_path"], "rb").read()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good[: len(good) // 2])
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    code = tmp_path / "code.pt"
    torch.save({"format": TRAINING_FORMAT, "payload": np.random.default_rng(0)}, code)
    for path, says in ((cut, "cannot be read"), (noise, "cannot be read"),
                       (foreign, "holds a dict with keys ['epoch', 'state_dict']"),
                       (code, "holds objects other than tensors")):
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(str(path))
        msg = str(e.value)
        assert str(path) in msg and says in msg and "dali-mixup training checkpoint" in msg, msg
    with pytest.raises(CheckpointError, match="holds format 'dali-mixup model weights'"):
        load_checkpoint(res["best_path"])  # weights are not a training state to resume
    rc = train.main(["--resume", str(cut), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and str(cut) in err and len(err.strip().splitlines()) == 1


def test_resume_keeps_the_runs_configuration(jpegs, tmp_path):
    train.run(small(jpegs, tmp_path, epochs=1, name="cfg"))
    run = str(tmp_path / "cfg")
    with pytest.raises(RunError, match=r"lr = 0\.3 \(the run has 0\.05\)"):
        train.run(small(jpegs, tmp_path, epochs=1, name="cfg", lr=0.3, resume=run))
    with pytest.raises(RunError, match="has finished its 1 epoch"):
        train.run(small(jpegs, tmp_path, epochs=1, name="cfg", resume=run))
    with pytest.raises(RunError, match="give one of them"):
        train.run(small(jpegs, tmp_path, name="cfg", resume="auto", overwrite=True))
    with pytest.raises(RunError, match="no checkpoint"):
        train.run(small(jpegs, tmp_path, resume=str(tmp_path / "nothing")))


def test_resume_from_webdataset_shards_equals_straight(tmp_path, monkeypatch):
    """The WebDataset reader (archive reshuffle, shuffle buffer) restores from its checkpoint:
    stopped during epoch 2's validation and resumed = 3 epochs straight."""
    import io
    import tarfile

    rng = np.random.default_rng(2)
    for split, n in (("train", 3), ("val", 1)):
        os.makedirs(tmp_path / "wds" / split)
        with tarfile.open(tmp_path / "wds" / split / "s-000.tar", "w") as t:
            for j in range(8 * n):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(buf, "JPEG")
                for name, data in ((f"{j:03d}.jpg", buf.getvalue()), (f"{j:03d}.cls", str(j % 3).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
    data = str(tmp_path / "wds")
    straight = train.run(small(data, tmp_path / "a", mixing="mixup"))
    interrupt_on(monkeypatch, train, "evaluate", 2)
    with pytest.raises(KeyboardInterrupt):
        train.run(small(data, tmp_path / "b", mixing="mixup"))
    monkeypatch.undo()
    resumed = train.run(small(data, tmp_path / "b", mixing="mixup", resume="auto"))
    assert_same_state(weights(straight["checkpoint_path"]), weights(resumed["checkpoint_path"]))


WORKER = """
import os, signal, sys
from dali_mixup.pipelines import train
stop = int(os.environ.get("STOP_AT_EVAL", "0"))
if stop:  # Ctrl-C on every rank during the stop-th validation
    real, calls = train.evaluate, [0]
    def evaluate(*args, **kw):
        out = real(*args, **kw)
        calls[0] += 1
        if calls[0] == stop:
            os.kill(os.getpid(), signal.SIGINT)
        return out
    train.evaluate = evaluate
sys.exit(train.main(sys.argv[1:]))
"""


def test_torchrun_two_ranks_stop_and_resume_equals_straight(jpegs, tmp_path):
    """2 ranks (gloo): a run stopped after epoch 2 and resumed under torchrun ends with the
    weights of an uninterrupted 3-epoch run (every rank's DALI state saved and restored)."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    (tmp_path / "worker.py").write_text(WORKER)

    def torchrun(out, *extra, stop=0):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=root, STOP_AT_EVAL=str(stop))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(tmp_path / "worker.py"), "--data", jpegs, "--size", "8", "--mixing", "mixup",
               "--batch-size", "4", "--width", "4", "--epochs", "3", "--torch-threads", "1",
               "--out", str(out), "--name", "ddp", "--no-progress", *extra]
        return subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                               timeout=300)

    r = torchrun(tmp_path / "a")
    assert r.returncode == 0, r.stderr[-3000:]
    r = torchrun(tmp_path / "b", stop=2)
    assert r.returncode != 0 and "--resume" in r.stderr, r.stderr[-3000:]
    mid = weights(tmp_path / "b" / "ddp" / "last.pt")
    assert (mid["epoch"], mid["step_in_epoch"], mid["world_size"], len(mid["dali"])) == (2, 0, 2, 2)
    r = torchrun(tmp_path / "b", "--resume", "auto")
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_state(weights(tmp_path / "a" / "ddp" / "last.pt"), weights(tmp_path / "b" / "ddp" / "last.pt"))


def test_without_checkpoints_no_last_pt_is_written_and_the_demo_turns_them_off(jpegs, tmp_path):
    """The demo's many short runs skip last.pt and DALI checkpoints; the run still gives its
    results and best.pt."""
    import inspect

    from dali_mixup.pipelines import demo

    res = train.run(small(jpegs, tmp_path, epochs=1, checkpoints=False), log=lambda *_: None)
    folder = os.path.join(str(tmp_path), res["config"]["name"] or res["config"]["mixing"])
    assert not os.path.exists(os.path.join(folder, "last.pt"))
    assert os.path.exists(os.path.join(folder, "best.pt")) and res["checkpoint_path"] is None
    assert "checkpoints=False" in inspect.getsource(demo)
