"""What mixing does with a reader's padded last batch (pad_last_batch=True).

The reader pads the last batch of an epoch with copies of the shard's last sample, and the
operators mix the whole padded batch: a real sample of that batch may take a padded copy as its
partner, so its soft label can include the class of the shard's last sample (twice as likely as
for another sample). ``LastBatchPolicy.DROP`` (the ready-made training pipelines' default) never
yields that batch; ``PARTIAL`` yields its real samples, possibly mixed with a padded copy;
``FILL`` also yields the padded copies themselves.
"""
from __future__ import annotations

import numpy as np
import pytest

from nvidia.dali import fn, pipeline_def
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

import dali_mixup.fn as mfn


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("pad")
    for i in range(10):  # 10 files, batch 4: the third batch holds 2 real samples and 2 copies
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        Image.fromarray(np.full((4, 4, 3), 20 * i, np.uint8)).save(root / f"c{i % 2}" / f"{i}.png")
    return str(root)


def _iterator(folder, seed, policy):
    @pipeline_def(batch_size=4, num_threads=1, device_id=None, seed=seed)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=folder, pad_last_batch=True, name="Reader")
        img = fn.decoders.image(jpegs)
        mixed, soft, partner, lam = mfn.mixup(img, labels, num_classes=2, return_info=True)
        return img, mixed, soft, partner

    return DALIGenericIterator(pipe(), ["img", "mixed", "soft", "partner"], reader_name="Reader",
                               last_batch_policy=policy, auto_reset=False)


@pytest.mark.parametrize("policy,sizes", [(LastBatchPolicy.DROP, [4, 4]),
                                          (LastBatchPolicy.PARTIAL, [4, 4, 2]),
                                          (LastBatchPolicy.FILL, [4, 4, 4])])
def test_padded_partners(folder, policy, sizes):
    padded_partner_seen = 0
    for seed in range(12):
        batches = [b[0] for b in _iterator(folder, seed, policy)]
        assert [len(b["img"]) for b in batches] == sizes
        if policy == LastBatchPolicy.DROP:
            continue
        last = batches[-1]
        img, mixed, partner = last["img"].numpy(), last["mixed"].numpy(), last["partner"].numpy()
        for i in range(2):  # the real samples of the padded batch
            if partner[i] >= 2:  # a padded copy: it holds the shard's last sample
                padded_partner_seen += 1
                assert np.all(mixed[i] >= np.minimum(img[i], img[1]) - 1e-3)
                assert np.all(mixed[i] <= np.maximum(img[i], img[1]) + 1e-3)
        if policy == LastBatchPolicy.FILL:
            np.testing.assert_array_equal(img[2], img[1])
            np.testing.assert_array_equal(img[3], img[1])
    if policy != LastBatchPolicy.DROP:
        assert padded_partner_seen > 0
