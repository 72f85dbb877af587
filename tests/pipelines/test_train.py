"""Training end to end on CPU, and data-parallel runs with 2 processes under torchrun (gloo)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from dali_mixup.losses import soft_target_cross_entropy
from dali_mixup.pipelines import train
from dali_mixup.pipelines.imagefolder import imagefolder_pipeline
from dali_mixup.pipelines.models import SmallCNN

pytestmark = pytest.mark.dali

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_learnable_folder(root, n_per_class=16, num_classes=3, size=8, seed=0):
    """Three classes told apart by where the bright bar is (rows / columns / diagonal)."""
    rng = np.random.default_rng(seed)
    for c in range(num_classes):
        os.makedirs(os.path.join(root, f"c{c}"), exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(0, 60, (size, size)).astype(np.uint8)
            j = rng.integers(1, size - 1)
            if c == 0:
                img[j, :] = 230
            elif c == 1:
                img[:, j] = 230
            else:
                np.fill_diagonal(img, 230)
            Image.fromarray(img, mode="L").save(os.path.join(root, f"c{c}", f"{i:02d}.png"))
    return str(root)


def make_id_folder(root, n_per_class=7, num_classes=3):
    """Constant images, value 10 * (id + 1): the id survives every augmentation."""
    sid = 0
    for c in range(num_classes):
        os.makedirs(os.path.join(root, f"c{c}"), exist_ok=True)
        for i in range(n_per_class):
            sid += 1
            Image.fromarray(np.full((8, 8), 10 * sid, np.uint8), mode="L").save(
                os.path.join(root, f"c{c}", f"{i:02d}.png"))
    return str(root)


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    return make_learnable_folder(tmp_path_factory.mktemp("learnable"))


def test_file_reader_k_mixup_iterator_training_steps_lower_the_loss(learnable):
    """readers.file -> decode -> crop/normalize -> k-mixup -> DALIGenericIterator -> SGD."""
    torch.manual_seed(0)
    pipe, names = imagefolder_pipeline(learnable, batch_size=16, size=8, gray=True,
                                       mixing="k_mixup", k=4, flip=False, crop_scale=(0.8, 1.0))
    it = DALIGenericIterator(pipe, names, reader_name="Reader",
                             last_batch_policy=LastBatchPolicy.DROP)
    model = SmallCNN(1, 3, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    val, vnames = imagefolder_pipeline(learnable, batch_size=48, size=8, gray=True,
                                       training=False)
    vbatch = next(iter(DALIGenericIterator(val, vnames, reader_name="Reader")))[0]
    xv, yv = vbatch["images"], vbatch["labels"].reshape(-1).long()

    def val_loss():
        model.eval()
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(model(xv), yv).item()

    before = val_loss()
    losses = []
    for _ in range(12):
        model.train()
        for b in it:
            x, y = b[0]["images"], b[0]["labels"]
            assert x.shape == (16, 1, 8, 8) and y.shape == (16, 3)
            assert (y.max(1).values < 1).any(), "k-mixup produced soft labels"
            loss = soft_target_cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        it.reset()
    after = val_loss()
    assert len(losses) == 12 * 3
    # the mixed-batch loss has a floor (the soft labels' entropy); the clean loss does not
    assert np.mean(losses[-6:]) < 0.9 * np.mean(losses[:6])
    assert after < 0.6 * before


def test_run_writes_results_and_curves_and_learns(learnable, tmp_path):
    # "zeta", an earlier spelling (as in a saved config), runs and is stored as "zeta_mixup"
    cfg = train.TrainConfig(data=learnable, val_fraction=0.25, mixing="zeta", gray=True, size=8,
                            crop_scale=(0.8, 1.0), flip=False, epochs=6, batch_size=8,
                            optimizer="adamw", lr=0.01, weight_decay=0.0, width=8,
                            out=str(tmp_path), progress=False)
    res = train.run(cfg)
    assert res["num_train"] == 36 and res["num_val"] == 12 and res["world_size"] == 1
    assert res["steps_per_epoch"] == 4
    hist = res["history"]
    assert [h["epoch"] for h in hist] == list(range(1, 7))
    assert all(h["val_samples"] == 12 and h["train_samples"] == 32 for h in hist)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert res["best_val_acc"] > 1 / 3 + 0.2  # well above chance
    saved = json.load(open(tmp_path / "zeta_mixup" / "results.json"))
    assert saved["final_val_acc"] == res["final_val_acc"]
    assert saved["config"]["mixing"] == "zeta_mixup"
    with Image.open(tmp_path / "zeta_mixup" / "curves.png") as im:
        assert im.size[0] > 400 and im.size[1] > 200


def test_progress_off_a_terminal_is_one_line_per_epoch(learnable, tmp_path, capsys):
    """CI logs and ``docker run`` without -t: no carriage-return bar, one line per epoch
    (validated or not), each naming the run and the epoch."""
    cfg = train.TrainConfig(data=learnable, val_fraction=0.25, mixing="mixup", gray=True, size=8,
                            epochs=5, val_every=2, batch_size=8, width=8, out=str(tmp_path),
                            plot=False, progress=True)
    train.run(cfg)
    err = capsys.readouterr().err
    assert "\r" not in err and "it/s" not in err and "step/s" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("[mixup] epoch ")]
    assert [ln.split()[2] for ln in lines] == [f"{e}/5" for e in range(1, 6)], err
    assert all("val acc" in lines[e - 1] for e in (2, 4, 5))  # the validated epochs
    assert not any("val acc" in lines[e - 1] for e in (1, 3))


def test_progress_on_a_terminal_is_a_bar():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        p = train.Progress("run", total=4, stream=stream)
        for _ in range(4):
            p.step(loss="0.5")
        p.line("[run] epoch 1/1  val acc 0.5")
        p.close()
    assert "\r" in tty.getvalue() and "[run] epoch 1/1" in tty.getvalue()
    assert pipe.getvalue() == "[run] epoch 1/1  val acc 0.5\n"
    quiet = io.StringIO()
    train.Progress("run", total=1, enabled=False, stream=quiet).line("x")
    assert quiet.getvalue() == ""


def test_train_main_on_arrays_and_gpu_error(tmp_path, capsys, monkeypatch):
    rc = train.main(["--arrays", "digits", "--epochs", "1", "--mixing", "kmixup",  # old spelling
                     "--batch-size", "128", "--width", "8", "--out", str(tmp_path),
                     "--no-progress", "--lr", "0.05"])
    assert rc == 0
    res = json.load(open(tmp_path / "k_mixup" / "results.json"))
    assert res["config"]["mixing"] == "k_mixup" and res["num_train"] == 1438 and res["num_val"] == 359
    assert res["history"][0]["val_samples"] == 359
    assert res["history"][0]["train_samples"] == 1438 // 128 * 128
    assert "final val acc" in capsys.readouterr().out
    from dali_mixup.pipelines import common
    monkeypatch.setattr(common, "_dali_gpu_count", lambda: 0)
    rc = train.main(["--arrays", "digits", "--device", "gpu", "--out", str(tmp_path)])
    assert rc == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_train_subset_val_every_and_robustness_evaluation(learnable, tmp_path, capsys):
    rc = train.main(["--data", learnable, "--val-fraction", "0.25", "--gray", "--size", "8",
                     "--crop-scale", "0.8", "1", "--no-flip", "--mixing", "k_mixup", "--k", "4",
                     "--epochs", "5", "--val-every", "2", "--batch-size", "8", "--width", "8",
                     "--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "0",
                     "--train-fraction", "0.5", "--eval-robustness", "--noise-sigmas", "0", "32",
                     "--fgsm-eps", "0", "4", "16", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "ECE (15 bins)" in text and "FGSM, acc by eps" in text
    res = json.load(open(tmp_path / "k_mixup" / "results.json"))
    # 36 training images (12 per class), half of each class: 18, two full batches of 8
    assert res["num_train"] == 18 and res["steps_per_epoch"] == 2
    hist = res["history"]
    assert [h["epoch"] for h in hist] == [2, 4, 5] and [h["step"] for h in hist] == [4, 8, 10]
    assert [h["train_samples"] for h in hist] == [32, 32, 16]
    r = res["robustness"]
    assert r["count"] == 12 and r["sigmas"] == [0, 32] and r["epsilons"] == [0, 4, 16]
    # the clean pass, sigma = 0 and eps = 0 agree with the last validation pass
    assert r["acc"] == r["noise_acc"][0] == r["fgsm_acc"][0] == res["final_val_acc"]
    assert r["nll"] == pytest.approx(hist[-1]["val_loss"], rel=1e-5)
    assert 0 <= r["ece"] <= 1 and sum(r["bins"]["count"]) == 12 and r["ece_bins"] == 15
    assert r["fgsm_acc"][2] <= r["acc"]


def test_train_fraction_on_arrays_is_stratified(tmp_path):
    from dali_mixup.pipelines.arrays import digits_split

    cfg = train.TrainConfig(arrays="digits", train_fraction=0.1, subset_seed=5, epochs=1,
                            batch_size=32, width=8, out=str(tmp_path), progress=False,
                            eval_robustness=True, noise_sigmas=(0.0,), fgsm_eps=(0.0, 8.0))
    res = train.run(cfg)
    yt = digits_split()[1]
    assert res["num_train"] == len(train.stratified_subset(yt, 0.1, 5)) == 143
    assert res["robustness"]["count"] == 359
    assert res["robustness"]["noise_acc"][0] == res["final_val_acc"]


WORKER = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    from dali_mixup.pipelines.imagefolder import imagefolder_pipeline

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    pipe, names = imagefolder_pipeline(sys.argv[1], batch_size=4, size=8, gray=True,
                                       mixing="none", shard_id=rank, num_shards=world)
    it = DALIGenericIterator(pipe, names, reader_name="Reader",
                             last_batch_policy=LastBatchPolicy.PARTIAL)
    epochs = []
    for _ in range(2):
        ids = []
        for b in it:
            v = b[0]["images"].reshape(b[0]["images"].shape[0], -1).mean(1) * 127.5 + 127.5
            ids += [int(round(x / 10.0)) - 1 for x in v.tolist()]
        it.reset()
        epochs.append(ids)
    gathered = [None] * world
    dist.all_gather_object(gathered, dict(rank=rank, epochs=epochs))
    if rank == 0:
        json.dump(gathered, open(sys.argv[2], "w"))
    dist.destroy_process_group()
""")


def _torchrun(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node=2"] + args
    r = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_torchrun_two_ranks_read_disjoint_shards(tmp_path):
    data = make_id_folder(tmp_path / "ids")
    (tmp_path / "worker.py").write_text(WORKER)
    _torchrun([str(tmp_path / "worker.py"), data, str(tmp_path / "ids.json")], tmp_path)
    got = json.load(open(tmp_path / "ids.json"))
    assert [g["rank"] for g in got] == [0, 1]
    for e in range(2):
        a, b = got[0]["epochs"][e], got[1]["epochs"][e]
        assert (len(a), len(b)) == (10, 11)
        assert set(a).isdisjoint(b), f"epoch {e}: ranks share samples {set(a) & set(b)}"
        assert sorted(a + b) == list(range(21))
    assert got[0]["epochs"][0] != got[0]["epochs"][1], "reshuffled after the epoch"


def test_torchrun_data_parallel_training(tmp_path, learnable):
    out = tmp_path / "out"
    r = _torchrun(["-m", "dali_mixup.pipelines.train", "--data", learnable, "--val-fraction", "0.25",
                   "--gray", "--size", "8", "--mixing", "k_mixup", "--k", "4", "--epochs", "2",
                   "--batch-size", "4", "--width", "8", "--out", str(out), "--no-progress",
                   "--eval-robustness", "--noise-sigmas", "0", "16", "--fgsm-eps", "0", "8"],
                  tmp_path)
    res = json.load(open(out / "k_mixup" / "results.json"))
    # the robustness sums of the two validation shards add up to every image once
    rob = res["robustness"]
    assert rob["count"] == 12 and sum(rob["bins"]["count"]) == 12
    assert rob["acc"] == rob["noise_acc"][0] == rob["fgsm_acc"][0] == res["final_val_acc"]
    assert res["world_size"] == 2 and res["config"]["mixing"] == "k_mixup"
    # 36 training images: shards of 18, 4 full batches of 4 per rank, 2 ranks
    assert res["steps_per_epoch"] == 4
    assert all(h["train_samples"] == 2 * 4 * 4 for h in res["history"])
    # the two validation shards together hold every validation image exactly once
    assert all(h["val_samples"] == 12 for h in res["history"])
    assert "2 rank(s)" in r.stdout
