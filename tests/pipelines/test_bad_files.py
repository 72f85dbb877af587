"""Bad image files are named before DALI sees them (no crash), on files written by Pillow."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from jpeg_folders import TRAIN_ARGS, results_of, write_jpegs
from PIL import Image

from dali_mixup.tools import filecheck
from dali_mixup.tools.filecheck import check_images, explain_decode_error, image_problem
from dali_mixup.tools.layout import DataError, open_dataset
from dali_mixup.pipelines import train

ABC = ("ant", "bee", "cat")


def encoded(fmt: str, mode: str = "RGB", size=(20, 12), **kw) -> bytes:
    rng = np.random.default_rng(0)
    shape = (size[1], size[0]) + ((len(mode),) if mode in ("RGB", "RGBA") else ())
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    img = Image.fromarray(arr, mode="L" if mode in ("L", "P") else mode)
    if mode == "P":
        img = img.convert("P")
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "camera maker"  # Make
    exif[0x0110] = "camera model"  # Model
    return exif


def _big_endian_tiff() -> bytes:
    """A Motorola-order (MM) TIFF: 8-bit gray, one strip, written by hand."""
    w, h = 6, 4
    pixels = bytes(range(w * h))
    entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 3, 1, h), (279, 4, 1, w * h)]
    out = b"MM\x00*" + (8).to_bytes(4, "big") + len(entries).to_bytes(2, "big")
    for tag, typ, count, value in entries:
        v = value.to_bytes(2, "big") + b"\x00\x00" if typ == 3 else value.to_bytes(4, "big")
        out += tag.to_bytes(2, "big") + typ.to_bytes(2, "big") + count.to_bytes(4, "big") + v
    return out + bytes(4) + pixels


SOUND = {
    "baseline.jpg": lambda: encoded("JPEG", quality=90),
    "progressive.jpg": lambda: encoded("JPEG", progressive=True),
    "gray.jpg": lambda: encoded("JPEG", "L"),
    "exif.jpg": lambda: encoded("JPEG", exif=_exif()),
    "rgb.png": lambda: encoded("PNG"),
    "rgba.png": lambda: encoded("PNG", "RGBA"),
    "gray.png": lambda: encoded("PNG", "L"),
    "palette.png": lambda: encoded("PNG", "P"),
    "interlaced.png": lambda: encoded("PNG", optimize=False, interlace=1),
    "a.bmp": lambda: encoded("BMP"),
    "a.tif": lambda: encoded("TIFF"),
    "lzw.tif": lambda: encoded("TIFF", compression="tiff_lzw"),
    "big_endian.tif": lambda: _big_endian_tiff(),
    "lossy.webp": lambda: encoded("WEBP"),
    "lossless.webp": lambda: encoded("WEBP", lossless=True),
    "a.ppm": lambda: encoded("PPM"),
    "a.pgm": lambda: encoded("PPM", "L"),
    "png_named.jpg": lambda: encoded("PNG"),  # the content decides, as for the decoder
}


@pytest.mark.parametrize("name", sorted(SOUND))
def test_images_pillow_writes_pass_and_decode(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(SOUND[name]())
    assert image_problem(str(p)) is None
    with Image.open(p) as im:  # and they are indeed decodable
        im.load()


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_are_rejected(tmp_path, seed):
    rng = np.random.default_rng(seed)
    p = tmp_path / "x.jpg"
    p.write_bytes(rng.bytes(int(rng.integers(1, 5000))))
    assert image_problem(str(p)) is not None
    # behind a JPEG start-of-image marker as well: the marker sequence does not parse
    p.write_bytes(b"\xff\xd8" + rng.bytes(int(rng.integers(0, 5000))))
    assert image_problem(str(p)) is not None


@pytest.mark.parametrize("name", ["baseline.jpg", "progressive.jpg", "rgb.png", "palette.png",
                                  "a.bmp", "a.tif", "big_endian.tif", "lossy.webp", "a.ppm"])
def test_every_truncation_is_caught(tmp_path, name):
    """Each proper prefix of a sound file (0 to n - 1 bytes) is reported."""
    data = SOUND[name]()
    p = tmp_path / name
    missed = []
    for n in range(len(data)):
        p.write_bytes(data[:n])
        if image_problem(str(p)) is None:
            missed.append(n)
    assert missed == [], f"{name}: prefixes of {missed[:5]}... bytes of {len(data)} pass"


def test_corrupt_headers_are_named(tmp_path):
    png = bytearray(SOUND["rgb.png"]())
    png[20] ^= 0x01  # a bit of the IHDR height: the CRC no longer matches
    (tmp_path / "crc.png").write_bytes(bytes(png))
    assert image_problem(str(tmp_path / "crc.png")) == "corrupt PNG: IHDR checksum mismatch"
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert image_problem(str(tmp_path / "empty.jpg")) == "empty file"
    jpg = SOUND["baseline.jpg"]()
    (tmp_path / "cut.jpg").write_bytes(jpg[:len(jpg) // 2])
    assert image_problem(str(tmp_path / "cut.jpg")).startswith("truncated JPEG")
    # data appended after the end-of-image marker is fine (the decoder stops at the marker)
    (tmp_path / "tail.jpg").write_bytes(jpg + bytes(200_000))
    assert image_problem(str(tmp_path / "tail.jpg")) is None


def folder_with(tmp_path, bad_name: str, bad: bytes) -> str:
    root = write_jpegs(tmp_path / "d", ABC, 8)
    with open(os.path.join(root, "bee", bad_name), "wb") as f:
        f.write(bad)
    return root


def test_train_stops_on_a_random_bytes_jpg_and_names_it(tmp_path, capsys):
    root = folder_with(tmp_path, "noise.jpg", np.random.default_rng(7).bytes(4096))
    rc = train.main(["--data", root, *TRAIN_ARGS, "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[0].startswith("dali-mixup train: error: 1 of the 25 image files cannot be decoded")
    assert err.splitlines()[1] == (f"  {root}/bee/noise.jpg: not an image: unknown format "
                                   f"(first bytes {np.random.default_rng(7).bytes(8).hex(' ')})")


def test_train_command_on_a_random_bytes_jpg_exits_2_without_a_crash(tmp_path):
    root = folder_with(tmp_path, "noise.jpg", np.random.default_rng(8).bytes(4096))
    r = subprocess.run([sys.executable, "-m", "dali_mixup.tools.cli", "train", "--data", root,
                        *TRAIN_ARGS, "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert f"{root}/bee/noise.jpg: not an image" in r.stderr and "Traceback" not in r.stderr


def test_skip_bad_images_trains_without_them(tmp_path, capsys):
    root = folder_with(tmp_path, "noise.jpg", np.random.default_rng(9).bytes(4096))
    rc = train.main(["--data", root, *TRAIN_ARGS, "--out", str(tmp_path / "out"),
                     "--skip-bad-images"])
    assert rc == 0
    res = results_of(tmp_path / "out")
    assert res["num_train"] + res["num_val"] == 24  # the 24 sound images, not the 25th
    cap = capsys.readouterr()
    assert f"  {root}/bee/noise.jpg: not an image" in cap.err
    assert "1 bad files left out" in cap.out


def test_truncated_jpeg_is_named_before_training(tmp_path, capsys):
    jpg = SOUND["baseline.jpg"]()
    root = folder_with(tmp_path, "cut.jpg", jpg[:len(jpg) * 2 // 3])
    rc = train.main(["--data", root, *TRAIN_ARGS, "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert (f"  {root}/bee/cut.jpg: truncated JPEG: no end-of-image marker (FF D9) after the "
            f"image data") in err.splitlines()


def test_decoder_error_during_training_names_the_file(tmp_path, capsys):
    """With the check skipped, DALI meets the truncated file: the error still names it."""
    jpg = open(write_jpegs(tmp_path / "one", ("x",), 1, size=64) + "/x/000.jpg", "rb").read()
    root = write_jpegs(tmp_path / "d", ABC, 2)
    for c in ABC:  # every image truncated: the first batch meets one
        for f in os.listdir(os.path.join(root, c)):
            with open(os.path.join(root, c, f), "wb") as fh:
                fh.write(jpg[:len(jpg) // 2])
    rc = train.main(["--data", root, *TRAIN_ARGS, "--out", str(tmp_path / "out"),
                     "--no-check-images", "--batch-size", "2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "the image decoder failed" in err
    assert any(ln.startswith(f"  {root}/") and ln.endswith(".jpg: named by the decoder")
               for ln in err.splitlines()), err


def test_explain_decode_error_checks_the_files_when_the_decoder_names_none(tmp_path):
    root = folder_with(tmp_path, "noise.jpg", b"\x00" * 100)
    files = sorted(str(p) for p in (tmp_path / "d").rglob("*.jpg"))
    msg = explain_decode_error(RuntimeError("nvImageCodec failure: '#4'"), files)
    assert msg.splitlines()[0].startswith("the image decoder failed (nvImageCodec failure: '#4') on 1 file(s)")
    assert msg.splitlines()[1].startswith(f"  {root}/bee/noise.jpg: not an image")
    assert explain_decode_error(RuntimeError("x"), files[:3]) is None  # nothing to name


def test_check_is_cached_per_folder(tmp_path, monkeypatch):
    root = folder_with(tmp_path, "noise.jpg", b"not a picture")
    files = sorted(str(p) for p in (tmp_path / "d").rglob("*.jpg"))
    calls = []
    real = filecheck.image_problem
    monkeypatch.setattr(filecheck, "image_problem", lambda p: calls.append(p) or real(p))
    expected = {f"{root}/bee/noise.jpg": "not an image: unknown format (first bytes 6e 6f 74 20 61 20 70 69)"}
    assert check_images(files) == expected and len(calls) == 25
    calls.clear()
    assert check_images(files) == expected and calls == []  # nothing read again
    # a changed file: only its folder is read again
    changed = os.path.join(root, "ant", "000.jpg")
    with open(changed, "ab") as f:
        f.write(b"\x00")
    assert check_images(files) == expected
    assert sorted(calls) == sorted(f for f in files if f.startswith(os.path.join(root, "ant") + os.sep))
    calls.clear()
    assert check_images(files, cache=False) == expected and len(calls) == 25


def test_no_check_images_does_not_read_the_files(tmp_path, monkeypatch):
    root = folder_with(tmp_path, "noise.jpg", b"not a picture")

    def fail(*a, **k):
        raise AssertionError("checked")

    monkeypatch.setattr(filecheck, "check_images", fail)
    lay = open_dataset(root, check_images=False, log=None)
    assert len(lay.train) + len(lay.val) == 25
    with pytest.raises(AssertionError, match="checked"):
        open_dataset(root, log=None)


def test_bad_file_left_out_can_empty_a_class(tmp_path):
    root = write_jpegs(tmp_path / "d", ABC, 3)
    for f in os.listdir(os.path.join(root, "cat")):
        with open(os.path.join(root, "cat", f), "wb") as fh:
            fh.write(b"junk")
    with pytest.raises(DataError, match="3 of the 9 image files cannot be decoded"):
        open_dataset(root, log=None, warn=None)
    lay = open_dataset(root, skip_bad_images=True, log=None, warn=None)
    assert lay.classes == ("ant", "bee") and len(lay.left_out) == 3


def test_preview_decoder_error_names_the_file(tmp_path, capsys):
    from dali_mixup.pipelines import preview

    jpg = SOUND["baseline.jpg"]()
    root = write_jpegs(tmp_path / "d", ABC, 2)
    for c in ABC:
        for f in os.listdir(os.path.join(root, c)):
            with open(os.path.join(root, c, f), "wb") as fh:
                fh.write(jpg[:len(jpg) // 2])
    rc = preview.main([root, "--no-check-images", "--size", "8", "--batch-size", "6",
                       "--out", str(tmp_path / "p.png")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "dali-mixup preview: error: the image decoder failed" in err
    # cut in the header: the decoder names no file, the re-check finds them
    named = [ln for ln in err.splitlines() if ln.startswith(f"  {root}/")]
    assert named and all(".jpg: truncated JPEG: header segment" in ln for ln in named), err
