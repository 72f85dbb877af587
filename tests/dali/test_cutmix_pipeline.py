"""CutMix and mix in DALI pipelines: equal to the array layer on replayed draws, chained with
zeta-mixup, with extra tensors and masks, and the pipeline's layout checks."""
from __future__ import annotations

import numpy as np
import pytest

import dali_mixup as dm
from dali_mixup import kmixup as km
from dali_mixup.core.draws import MixDraws

from conftest import run_dali

SEED = 31


def _replay_mix_draws(sizes, mixup_alpha, cutmix_alpha, max_bs):
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=max_bs, num_threads=1, device_id=None, seed=1, prefetch_queue_depth=1)
    def pipe():
        n = fn.external_source(name="n")
        return fn.random.uniform(range=[0.0, 1.0], shape=[8], dtype=types.FLOAT64, seed=SEED), n

    p = pipe()
    p.build()
    out = []
    for b in sizes:
        p.feed_input("n", [np.zeros(1, np.uint8)] * b)
        v = np.stack([np.array(t) for t in p.run()[0]])
        out.append(MixDraws(u=v[:, :2], lam=km.beta_quantile(mixup_alpha or 1.0, v[:, 2]),
                               lam_cut=km.beta_quantile(cutmix_alpha or 1.0, v[:, 3]),
                               box=v[:, 4:6], coin=v[:, 6:8]))
    return out


@pytest.mark.parametrize("kw", [dict(mixup_alpha=0.0, cutmix_alpha=1.0),
                                dict(mixup_alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, lam_mode="sample", prob=0.8),
                                dict(mixup_alpha=1.0, cutmix_alpha=1.0, k=3, lam_mode="block")])
def test_mix_pipeline_equals_array_layer(kw, rng):
    import dali_mixup.fn as mfn

    sizes = [12, 5, 1, 12]
    batches = [([rng.integers(0, 256, size=(7, 9, 3), dtype=np.uint8) for _ in range(b)],
                [np.array([rng.integers(0, 4)], np.int32) for _ in range(b)]) for b in sizes]
    seg = None

    def graph(x, y):
        nonlocal seg
        m = fn_cast(x)
        return mfn.mix(x, y, num_classes=4, return_info=True, seed=SEED, masks=[m], **kw)

    def fn_cast(x):
        from nvidia.dali import fn, types

        return fn.cast(x[:, :, 0:1] // 64, dtype=types.UINT8)

    outs, _ = run_dali(graph, batches, batch_size=12, layout="HWC")
    for (imgs, labels), out, d in zip(batches, outs, _replay_mix_draws(sizes, kw["mixup_alpha"], kw["cutmix_alpha"], 12)):
        x = np.stack(imgs)
        seg = (x[..., 0:1] // 64).astype(np.uint8)
        ref = dm.mix(x, np.stack(labels), num_classes=4, layout="HWC", draws=d, masks=[seg], **kw)
        got_img, got_lab, got_mask, partner, lam = out
        np.testing.assert_array_equal(np.stack(partner), ref.partner)
        np.testing.assert_allclose(np.stack(lam), ref.lam, rtol=1e-6)
        np.testing.assert_allclose(np.stack(got_img), ref.images, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(np.stack(got_lab), ref.labels, atol=1e-6)
        np.testing.assert_array_equal(np.stack(got_mask), ref.masks[0])


def test_cutmix_then_zeta_in_one_pipeline(rng):
    """The zeta paper's Table 5 setting: CutMix followed by zeta-mixup; soft labels flow through."""
    import dali_mixup.fn as mfn

    imgs = [rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8) for _ in range(10)]
    labels = [np.array([i % 4], np.int32) for i in range(10)]

    def graph(x, y):
        x, y = mfn.cutmix(x, y, num_classes=4)
        return mfn.zeta_mixup(x, y, gamma=(1.72865, 4.0))

    (out,), _ = run_dali(graph, [(imgs, labels)], layout="HWC")
    soft = np.stack(out[1])
    np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-5)
    assert np.all(np.stack(out[0]) <= 255.0 + 1e-3) and np.all(np.stack(out[0]) >= -1e-3)


def test_k_mixup_masks_and_extra_in_a_pipeline(rng):
    import dali_mixup.fn as mfn

    imgs = [rng.normal(size=(4, 4, 3)).astype(np.float32) for _ in range(8)]
    labels = [np.array([0], np.int32)] * 8

    def graph(x, y):
        from nvidia.dali import fn, types

        seg = fn.cast(x[:, :, 0:1] > 0, dtype=types.UINT8)
        out = mfn.k_mixup(x, y, k=2, num_classes=1, lam_mode="sample", extra=[x * 2.0], masks=[seg],
                          return_info=True)
        return out + (seg,)

    (out,), _ = run_dali(graph, [(imgs, labels)], layout="HWC")
    img, _, ext, msk, partner, lam, seg = (np.stack(o) for o in out)
    np.testing.assert_allclose(ext, 2 * img, rtol=1e-6)
    dom = np.where(lam >= 0.5, np.arange(8), partner)
    np.testing.assert_array_equal(msk, seg[dom])


def test_mix_needs_a_layout(rng):
    import dali_mixup.fn as mfn

    imgs = [np.zeros((4, 4, 3), np.uint8)] * 2
    with pytest.raises(RuntimeError, match=r"cutmix: argument 'images' expected images with a layout"):
        run_dali(lambda x, y: mfn.cutmix(x, y, num_classes=1), [(imgs, [np.array([0], np.int32)] * 2)],
                 layout="")


def test_zeta_extra_and_masks_in_a_pipeline(rng):
    import dali_mixup.fn as mfn

    imgs = [rng.normal(size=(4, 4, 3)).astype(np.float32) for _ in range(8)]
    labels = [np.array([0], np.int32)] * 8

    def graph(x, y):
        from nvidia.dali import fn, types

        seg = fn.cast(x[:, :, 0:1] > 0, dtype=types.UINT8)
        return mfn.zeta_mixup(x, y, T=3, num_classes=1, extra=[x * 3.0], masks=[seg], return_info=True) + (seg,)

    (out,), _ = run_dali(graph, [(imgs, labels)], layout="HWC")
    img, _, ext, msk, index, weights, seg = (np.stack(o) for o in out)
    x = np.stack(imgs)
    np.testing.assert_allclose(img, np.einsum("bt,bthwc->bhwc", weights, x[index]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ext, 3 * img, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(msk, seg)


def test_cutmix_masks_must_share_the_images_layout_in_a_pipeline(rng):
    x = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    imgs = [np.ascontiguousarray(a.transpose(1, 2, 0)) for a in x]
    from nvidia.dali import fn, types

    import dali_mixup.fn as mfn

    def graph(img, lab):
        mask = fn.cast(img[:, :, 0] > 0, dtype=types.UINT8)  # HW, not HWC
        return mfn.cutmix(img, lab, num_classes=1, masks=[mask])

    with pytest.raises(RuntimeError, match=r"cutmix: argument 'masks\[0\]' expected samples with the images'"):
        run_dali(graph, [(imgs, [np.array([0], np.int32)] * 4)], layout="HWC")
