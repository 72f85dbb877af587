"""WebDataset tar shards through DALI's ``fn.readers.webdataset``: brace patterns and folders,
class ids read from ``.cls``, named errors for bad archives, disjoint shards per rank, and
``dali-mixup train`` from shards."""
from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from dali_mixup.pipelines import train
from dali_mixup.pipelines.webdataset import (ShardError, expand_braces, is_webdataset,
                                             open_webdataset, resolve_shards, scan_shards)

pytestmark = pytest.mark.dali


def jpeg_bytes(level, size=12, rgb=False):
    img = np.full((size, size, 3) if rgb else (size, size), level, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, mode="RGB" if rgb else "L").save(buf, "JPEG", quality=95)
    return buf.getvalue()


def add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder, prefix, n_shards, per_shard, num_classes=3, start=0, newline=False):
    """``folder/prefix-000.tar`` ...: sample ``i`` (``start`` + running number) is a flat gray
    JPEG of level ``8 * (i + 1)`` with class ``i % num_classes`` in ``.cls`` (text)."""
    os.makedirs(folder, exist_ok=True)
    i = start
    for s in range(n_shards):
        with tarfile.open(os.path.join(folder, f"{prefix}-{s:03d}.tar"), "w") as t:
            for _ in range(per_shard):
                add(t, f"sample{i:05d}.jpg", jpeg_bytes(8 * (i + 1)))
                add(t, f"sample{i:05d}.cls", (f"{i % num_classes}" + ("\n" if newline else "")).encode())
                i += 1
    return str(folder)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """4 training shards of 6 samples (24, 3 classes), 1 validation shard of 6."""
    root = tmp_path_factory.mktemp("wds")
    write_shards(root / "train", "train", 4, 6, newline=True)
    write_shards(root / "val", "val", 1, 6, start=24)
    return root


def test_brace_patterns_folders_and_class_ids(shards, tmp_path):
    assert expand_braces("a/t-{08..11}.tar") == ["a/t-08.tar", "a/t-09.tar", "a/t-10.tar", "a/t-11.tar"]
    assert expand_braces("{x,y}-{1..2}") == ["x-1", "x-2", "y-1", "y-2"]
    pattern = str(shards / "train" / "train-{000..003}.tar")
    assert resolve_shards(pattern) == resolve_shards(str(shards / "train"))
    assert is_webdataset(pattern) and is_webdataset(str(shards)) and is_webdataset(str(shards / "train"))
    assert not is_webdataset(str(tmp_path))
    os.makedirs(tmp_path / "imgs" / "cat")  # an image folder with an archive beside its classes
    (tmp_path / "imgs" / "backup.tar").write_bytes(b"")
    assert not is_webdataset(str(tmp_path / "imgs"))
    train_s, val_s = open_webdataset(str(shards))  # train/ + val/ subfolders
    assert len(train_s) == 24 and train_s.counts == (6, 6, 6, 6) and len(val_s) == 6
    assert list(train_s.labels) == [i % 3 for i in range(24)]
    with pytest.raises(ShardError, match=r"2 of 6 shard\(s\) do not exist \(first: .*train-004\.tar\)"):
        resolve_shards(str(shards / "train" / "train-{000..005}.tar"))
    with pytest.raises(ShardError, match="need validation shards: give --val-data"):
        open_webdataset(str(shards / "train"))


def test_class_ids_are_read_in_the_graph(tmp_path):
    """``.cls`` text -> int32 id inside the DALI graph, for ids of 1 to 7 digits."""
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    from dali_mixup.pipelines.webdataset import webdataset_pipeline

    ids = [0, 7, 10, 99, 305, 4096, 1234567, 42]
    with tarfile.open(tmp_path / "ids.tar", "w") as t:
        for j, c in enumerate(ids):
            add(t, f"s{j}.jpg", jpeg_bytes(100))
            add(t, f"s{j}.cls", (str(c) + ("\n" if j % 2 else "")).encode())
    s = scan_shards([str(tmp_path / "ids.tar")])
    assert list(s.labels) == ids
    pipe, names = webdataset_pipeline(s, batch_size=8, size=8, training=False, num_classes=1234568)
    batch = next(iter(DALIGenericIterator(pipe, names, reader_name="Reader")))[0]
    assert batch["labels"].reshape(-1).tolist() == ids


def test_bad_archives_are_named(tmp_path):
    cases = {}
    (tmp_path / "junk.tar").write_bytes(b"\x00not a tar" * 100)
    cases["junk.tar"] = "not a readable tar archive"
    with tarfile.open(tmp_path / "nocls.tar", "w") as t:
        add(t, "a.jpg", jpeg_bytes(5))
    cases["nocls.tar"] = "sample 'a' has no .cls"
    with tarfile.open(tmp_path / "badcls.tar", "w") as t:
        add(t, "a.jpg", jpeg_bytes(5))
        add(t, "a.cls", b"cat")
    cases["badcls.tar"] = "a.cls holds b'cat'; expected a class id as decimal text"
    with tarfile.open(tmp_path / "badimg.tar", "w") as t:
        add(t, "a.jpg", np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
        add(t, "a.cls", b"1")
    cases["badimg.tar"] = "a.jpg: not an image"
    with tarfile.open(tmp_path / "noimg.tar", "w") as t:
        add(t, "a.txt", b"hello")
        add(t, "a.cls", b"1")
    cases["noimg.tar"] = "sample 'a' has no image"
    for name, says in cases.items():
        with pytest.raises(ShardError) as e:
            scan_shards([str(tmp_path / name)])
        assert str(tmp_path / name) in str(e.value) and says in str(e.value), str(e.value)


def ids_by_rank(spec, val, world=2, epochs=3, **kw):
    """Sample ids (from the gray level) each rank's training loader reads, per epoch."""
    out = []
    for rank in range(world):
        cfg = train.TrainConfig(data=spec, val_data=val, gray=True, size=6, batch_size=4,
                                crop_scale=(0.5, 1.0), seed=1, progress=False, out="", **kw)
        it = train.Loaders(cfg, rank, world, 0).train_it
        per_epoch = []
        for _ in range(epochs):
            ids = []
            for b in it:
                x = b[0]["images"]
                levels = x.reshape(x.shape[0], -1).mean(1) * 127.5 + 127.5
                ids += [int(round(v / 8.0)) - 1 for v in levels.tolist()]
            it.reset()
            per_epoch.append(ids)
        out.append(per_epoch)
    return out


def test_two_ranks_read_disjoint_parts_covering_the_shards_every_epoch(shards):
    """24 samples in 4 archives, 2 ranks, batches of 4: in each epoch the ranks' samples are
    disjoint and together all 24; the order changes between epochs (archives reshuffled with
    the shared reader seed, samples within the rank's buffer)."""
    got = ids_by_rank(str(shards / "train" / "train-{000..003}.tar"),
                      str(shards / "val" / "val-000.tar"))
    for e in range(3):
        a, b = got[0][e], got[1][e]
        assert len(a) == len(b) == 12
        assert sorted(a + b) == list(range(24)), f"epoch {e}"
    assert got[0][0] != got[0][1] or got[0][1] != got[0][2]


def test_train_from_shards(shards, tmp_path, capsys):
    """``dali-mixup train --data 'train-{000..003}.tar' --val-data ...``: 3 classes of RGB
    JPEGs told apart by colour, k-mixup, learns; the validation pass sees each sample once."""
    root = tmp_path / "rgb"
    os.makedirs(root)
    rng = np.random.default_rng(0)
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    for split, n_shards, per in (("train", 3, 16), ("val", 1, 12)):
        for s in range(n_shards):
            with tarfile.open(root / f"{split}-{s:03d}.tar", "w") as t:
                for j in range(per):
                    c = j % 3
                    img = np.clip(np.asarray(colours[c]) + rng.normal(0, 30, (16, 16, 3)), 0, 255)
                    buf = io.BytesIO()
                    Image.fromarray(img.astype(np.uint8)).save(buf, "JPEG", quality=90)
                    add(t, f"{split}{s}_{j:03d}.jpg", buf.getvalue())
                    add(t, f"{split}{s}_{j:03d}.cls", str(c).encode())
    rc = train.main(["--data", str(root / "train-{000..002}.tar"), "--val-data",
                     str(root / "val-000.tar"), "--size", "8", "--mixing", "k_mixup", "--k", "2",
                     "--epochs", "4", "--batch-size", "8", "--width", "8", "--optimizer", "adamw",
                     "--lr", "0.02", "--torch-threads", "1", "--out", str(tmp_path / "runs"),
                     "--name", "wds", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "WebDataset, train 48 samples in 3 shard(s), val 12 samples in 1 shard(s), 3 classes" in out
    res = json.load(open(tmp_path / "runs" / "wds" / "results.json"))
    assert res["num_train"] == 48 and res["steps_per_epoch"] == 6 and res["classes"] == ["0", "1", "2"]
    assert all(h["val_samples"] == 12 for h in res["history"])
    assert res["best_val_acc"] > 0.8
