"""The ready-made pipelines (CPU): outputs, mixing consistency, sharding, last-batch policies."""
from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch
from PIL import Image

from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from dali_mixup.pipelines import common
from dali_mixup.pipelines.arrays import arrays_pipeline, digits_split
from dali_mixup.pipelines.imagefolder import (imagefolder_pipeline, load_imagefolders, scan_imagefolder,
                                   split_imagefolder)
from dali_mixup.pipelines.models import SmallCNN, build_model, resnet18

pytestmark = pytest.mark.dali

N_PER_CLASS = 7
NUM_CLASSES = 3
N = N_PER_CLASS * NUM_CLASSES  # 21: odd, so shards and batches do not divide it


# ----------------------------------------------------------------------------- mixing names


def test_mixings_are_named_as_the_operators():
    import dali_mixup.fn as mfn

    assert set(common.MIXINGS) == {"none", *mfn.__all__}
    for name in common.MIXINGS:
        assert common.canonical_mixing(name) == name


@pytest.mark.parametrize("old,new", [("kmixup", "k_mixup"), ("zeta", "zeta_mixup"), ("mixup_cutmix", "mix")])
def test_earlier_mixing_names_are_accepted_and_stored_as_the_new_ones(old, new):
    """Scripts and saved results configs may carry the earlier spellings."""
    from dali_mixup.pipelines.train import TrainConfig, build_parser

    assert common.MIXING_ALIASES[old] == new
    assert common.MixConfig(mixing=old).mixing == new
    assert TrainConfig(mixing=old).mixing == new  # TrainConfig(**saved["config"])
    assert build_parser().parse_args(["--mixing", old]).mixing == new
    assert common.mixing_arg(old) == new


def test_unknown_mixing_names_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match=r"mixing must be one of none, mixup, k_mixup, zeta_mixup, "
                                         r"cutmix, mix \(or an alias: kmixup, zeta, mixup_cutmix\), got 'puzzlemix'"):
        common.MixConfig(mixing="puzzlemix")
    with pytest.raises(argparse.ArgumentTypeError, match="mixing must be one of"):
        common.mixing_arg("puzzlemix")


def make_folder(root, n_per_class=N_PER_CLASS, num_classes=NUM_CLASSES, size=8):
    """Constant gray images, value 10 * (sample id + 1): the id survives crop, flip, resize."""
    sid = 0
    for c in range(num_classes):
        os.makedirs(os.path.join(root, f"class_{c}"), exist_ok=True)
        for i in range(n_per_class):
            sid += 1
            Image.fromarray(np.full((size, size), 10 * sid, np.uint8), mode="L").save(
                os.path.join(root, f"class_{c}", f"{i:02d}.png"))
    return str(root)


def sample_ids(images: torch.Tensor) -> list[int]:
    """Invert the gray normalisation ((v - 127.5) / 127.5) back to sample ids (0-based)."""
    v = images.reshape(images.shape[0], -1).mean(1) * 127.5 + 127.5
    return [int(round(x / 10.0)) - 1 for x in v.tolist()]


def class_of(sid: int) -> int:
    return sid // N_PER_CLASS


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("tiny"))


def run_epochs(pipe, names, policy, epochs=2, reader=True):
    it = DALIGenericIterator(pipe, names, reader_name="Reader" if reader else None,
                             last_batch_policy=policy)
    out = []
    for _ in range(epochs):
        out.append([{k: v.clone() for k, v in b[0].items()} for b in it])
        it.reset()
    return out


# ----------------------------------------------------------------------------- image folders


def test_scan_orders_classes_and_splits_stratified(folder, tmp_path):
    f = scan_imagefolder(folder)
    assert f.classes == ("class_0", "class_1", "class_2")
    assert len(f) == N and f.labels == tuple(sorted(f.labels))
    tr, va = split_imagefolder(f, 0.3, seed=1)
    assert set(tr.files).isdisjoint(va.files) and len(tr) + len(va) == N
    assert sorted(np.bincount(va.labels).tolist()) == [2, 2, 2]
    # DIR/train + DIR/val layout is used as it is
    make_folder(tmp_path / "train")
    make_folder(tmp_path / "val", n_per_class=2)
    tr, va = load_imagefolders(str(tmp_path))
    assert (len(tr), len(va)) == (N, 6) and va.classes == tr.classes


@pytest.mark.parametrize("mixing", ["none", "mixup", "k_mixup", "zeta_mixup"])
def test_training_pipeline_mixes_images_and_labels_consistently(folder, mixing):
    B = 8
    pipe, names = imagefolder_pipeline(folder, batch_size=B, size=12, gray=True, mixing=mixing,
                                       k=4, return_info=True, crop_scale=(0.5, 1.0))
    (batches,) = run_epochs(pipe, names, LastBatchPolicy.DROP, epochs=1)
    assert len(batches) == N // B
    for b in batches:
        x, y, orig = b["images"], b["labels"], b["originals"]
        assert x.shape == (B, 1, 12, 12) and x.dtype == torch.float32
        assert y.shape == (B, NUM_CLASSES) and y.dtype == torch.float32
        torch.testing.assert_close(y.sum(1), torch.ones(B))
        assert (y >= 0).all()
        ids = sample_ids(orig)
        onehot = torch.nn.functional.one_hot(torch.tensor([class_of(i) for i in ids]),
                                             NUM_CLASSES).float()
        if mixing == "none":
            torch.testing.assert_close(x, orig)
            torch.testing.assert_close(y, onehot)
        elif mixing in ("mixup", "k_mixup"):
            p, lam = b["index"].long(), b["weight"].reshape(B, 1)
            assert (p != torch.arange(B)).all(), "disjoint pairing: nobody mixes with itself"
            torch.testing.assert_close(x, lam[:, :, None, None] * orig
                                       + (1 - lam[:, :, None, None]) * orig[p], atol=1e-4,
                                       rtol=1e-4)
            torch.testing.assert_close(y, lam * onehot + (1 - lam) * onehot[p])
        else:
            idx, w = b["index"].long(), b["weight"]
            assert (idx[:, 0] == torch.arange(B)).all()
            torch.testing.assert_close(w.sum(1), torch.ones(B))
            assert (w[:, 0] > 0.5).all(), "gamma=2.8: the sample itself dominates"
            expect = torch.einsum("bt,btchw->bchw", w, orig[idx])
            torch.testing.assert_close(x, expect, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(y, torch.einsum("bt,btc->bc", w, onehot[idx]))


@pytest.mark.parametrize("mixing", ["cutmix", "mix"])
def test_cutmix_pipelines_paste_or_blend_partners(folder, mixing):
    """Every output pixel is the sample's own, its partner's, or (mixup) their blend."""
    B = 8
    pipe, names = imagefolder_pipeline(folder, batch_size=B, size=12, gray=True, mixing=mixing,
                                       return_info=True, crop_scale=(0.5, 1.0))
    (batches,) = run_epochs(pipe, names, LastBatchPolicy.DROP, epochs=1)
    for b in batches:
        x, y, orig = b["images"], b["labels"], b["originals"]
        p, lam = b["index"].long(), b["weight"].reshape(B)
        torch.testing.assert_close(y.sum(1), torch.ones(B))
        ids = sample_ids(orig)
        onehot = torch.nn.functional.one_hot(torch.tensor([class_of(i) for i in ids]),
                                             NUM_CLASSES).float()
        torch.testing.assert_close(y, lam[:, None] * onehot + (1 - lam[:, None]) * onehot[p])
        for i in range(B):
            own = torch.isclose(x[i], orig[i], atol=1e-4)
            partner = torch.isclose(x[i], orig[p[i]], atol=1e-4)
            blend = torch.isclose(x[i], lam[i] * orig[i] + (1 - lam[i]) * orig[p[i]], atol=1e-4)
            if mixing == "cutmix":  # a box: the uncovered fraction is lam
                assert (own | partner).all()
                frac_partner = (partner & ~own).float().mean()
                assert frac_partner <= 1 - lam[i] + 1e-6
            else:
                assert (own | partner).all() or blend.all()


def test_validation_pipeline_reads_every_file_once_unmixed(folder):
    pipe, names = imagefolder_pipeline(folder, batch_size=4, size=8, gray=True, training=False)
    (batches,) = run_epochs(pipe, names, LastBatchPolicy.PARTIAL, epochs=1)
    ids = [i for b in batches for i in sample_ids(b["images"])]
    labels = [int(v) for b in batches for v in b["labels"].reshape(-1)]
    assert sorted(ids) == list(range(N))
    assert ids == list(range(N)), "validation is not shuffled"
    assert labels == [class_of(i) for i in ids]
    assert batches[0]["labels"].dtype == torch.int32


def test_shards_are_disjoint_and_reshuffled_every_epoch(folder):
    per_shard = []
    for sid in range(2):
        pipe, names = imagefolder_pipeline(folder, batch_size=4, size=8, gray=True,
                                           shard_id=sid, num_shards=2)
        epochs = run_epochs(pipe, names, LastBatchPolicy.PARTIAL, epochs=3)
        per_shard.append([[i for b in ep for i in sample_ids(b["images"])] for ep in epochs])
    for e in range(3):
        a, b = per_shard[0][e], per_shard[1][e]
        assert (len(a), len(b)) == (10, 11)  # floor(21 * (i + 1) / 2) - floor(21 * i / 2)
        assert set(a).isdisjoint(b) and sorted(a + b) == list(range(N))
    assert per_shard[0][0] != per_shard[0][1] and per_shard[0][1] != per_shard[0][2]


@pytest.mark.parametrize("policy,sizes", [
    (LastBatchPolicy.PARTIAL, {0: [4, 4, 2], 1: [4, 4, 3]}),
    (LastBatchPolicy.DROP, {0: [4, 4], 1: [4, 4]}),
    (LastBatchPolicy.FILL, {0: [4, 4, 4], 1: [4, 4, 4]}),
])
def test_last_batch_policies_give_the_documented_batch_sizes(folder, policy, sizes):
    """pad_last_batch=True (the default): shard sizes 10 and 11, batch 4 (module docstring)."""
    for sid in range(2):
        pipe, names = imagefolder_pipeline(folder, batch_size=4, size=8, gray=True,
                                           mixing="k_mixup", k=2, shard_id=sid, num_shards=2)
        epochs = run_epochs(pipe, names, policy, epochs=2)
        shard_size = 10 if sid == 0 else 11
        for ep in epochs:
            assert [b["images"].shape[0] for b in ep] == sizes[sid]
            assert all(b["labels"].shape == (b["images"].shape[0], NUM_CLASSES) for b in ep)
        if policy == LastBatchPolicy.FILL:  # filled with copies of the shard's last sample
            val, vnames = imagefolder_pipeline(folder, batch_size=4, size=8, gray=True,
                                               training=False, shard_id=sid, num_shards=2)
            (vb,) = run_epochs(val, vnames, policy, epochs=1)
            ids = [i for b in vb for i in sample_ids(b["images"])]
            real = shard_size % 4
            assert ids[-(4 - real):] == [ids[-(4 - real) - 1]] * (4 - real)
            assert sorted(set(ids)) == sorted(set(ids[:shard_size])) and len(ids) == 12


def test_gpu_request_fails_early_with_a_clear_message(monkeypatch, folder):
    monkeypatch.setattr(common, "_dali_gpu_count", lambda: 0)
    with pytest.raises(common.DeviceError, match="--device cpu"):
        common.resolve_device("gpu")
    with pytest.raises(common.DeviceError, match="needs a CUDA GPU"):
        imagefolder_pipeline(folder, batch_size=4, device="gpu")
    with pytest.raises(ValueError, match="device must be one of"):
        common.resolve_device("tpu")
    assert common.resolve_device("cpu") is None
    with pytest.raises(ValueError, match="mixing must be one of"):
        imagefolder_pipeline(folder, batch_size=4, mixing="puzzlemix")


# ----------------------------------------------------------------------------- arrays


def _array_ids(images):
    return [int(round(v)) for v in images.reshape(images.shape[0], -1)[:, 0].tolist()]


@pytest.mark.parametrize("n", [20, 21])
def test_arrays_pipeline_shards_and_reshuffles_every_epoch(n):
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 4, 4, 1)).copy()
    y = np.arange(n) % 3
    seen = []
    for sid in range(2):
        pipe, names = arrays_pipeline(x, y, batch_size=4, shard_id=sid, num_shards=2)
        it = DALIGenericIterator(pipe, names)
        eps = []
        for _ in range(3):
            batches = [b[0] for b in it]
            it.reset()
            assert [b["images"].shape[0] for b in batches] == [4, 4]  # drop_last: 10 or 11 -> 8
            assert all(b["labels"].shape == (b["images"].shape[0], 3) for b in batches)
            eps.append([i for b in batches for i in _array_ids(b["images"])])
        seen.append(eps)
    for e in range(3):
        # the whole epoch of each shard (dropped tail included) is the source's shard_indices
        a, b = seen[0][e], seen[1][e]
        assert len(set(a)) == 8 and len(set(b)) == 8 and set(a).isdisjoint(b)
    assert seen[0][0] != seen[0][1]
    # full shards: disjoint for n = 20; for n = 21 only the one padding sample repeats
    src = [arrays_pipeline(x, y, batch_size=4, shard_id=s, num_shards=2)[0].epoch_source
           for s in range(2)]
    for e in range(3):
        a, b = (src[s].shard_indices(e).tolist() for s in range(2))
        assert len(a) == len(b) == -(-n // 2)
        assert set(a) | set(b) == set(range(n))
        assert len(set(a) & set(b)) == (0 if n == 20 else 1)


def test_arrays_validation_is_exact_and_unmixed():
    x = np.arange(21, dtype=np.float32)[:, None, None, None] * np.ones((1, 3, 3, 1), np.float32)
    y = np.arange(21) % 3
    ids = []
    for sid in range(2):
        pipe, names = arrays_pipeline(x, y, batch_size=4, training=False, shard_id=sid,
                                      num_shards=2)
        batches = [b[0] for b in DALIGenericIterator(pipe, names)]
        assert [b["images"].shape[0] for b in batches] == ([4, 4, 2] if sid == 0 else [4, 4, 3])
        for b in batches:
            got = _array_ids(b["images"])
            assert b["labels"].reshape(-1).tolist() == [i % 3 for i in got]
            ids += got
    assert sorted(ids) == list(range(21))


def test_digits_split_is_stratified_uint8():
    xt, yt, xv, yv = digits_split(0.2, seed=0)
    assert xt.shape[1:] == (8, 8, 1) and xt.dtype == np.uint8 and xt.max() == 255
    assert len(yt) + len(yv) == 1797
    assert np.all(np.abs(np.bincount(yv) - 0.2 * np.bincount(np.concatenate([yt, yv]))) <= 1)


# ----------------------------------------------------------------------------- models


def test_models_shapes_and_resnet18_size():
    assert SmallCNN(1, 10, 16)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert build_model("resnet18", 3, 10, 32)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    big = resnet18(3, 1000, small_input=False)
    assert sum(p.numel() for p in big.parameters()) == 11_689_512  # ResNet-18 (He et al.)
    assert big(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("vgg", 3, 10, 32)
