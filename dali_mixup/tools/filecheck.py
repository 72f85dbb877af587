"""A fast check of image files before training: a file the decoder cannot read is named here,
before DALI sees it (a file of random bytes named ``.jpg`` can crash a decoder process).

:func:`image_problem` reads a file's structure, not its pixels: the format is told by the
content (not the extension), then

* JPEG: the start-of-image marker, every header segment up to the start of scan (lengths
  inside the file, a frame header with sane sizes and 1-4 components), and an end-of-image
  marker after the scan (a truncated file has none);
* PNG: the signature, the IHDR chunk (its CRC, sizes, bit depth and colour type), every
  chunk's length inside the file, image data and the IEND chunk (truncation);
* BMP, TIFF, WebP, PNM, JPEG 2000: the header's fields and the sizes they announce.

:func:`check_images` runs it over many files in threads and caches the result per folder
(a folder's entry is keyed by the path, size and modification time of each of its files, so
an unchanged folder costs one ``stat`` per file on the next run).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

from .imageformat import stream_problem

__all__ = ["image_problem", "check_images", "cache_dir"]

#: bump when the checks change: cached results of an older version are not reused
CHECK_VERSION = 1


def image_problem(path: str) -> str | None:
    """Why ``path`` cannot be decoded as an image (a short phrase), or None when it looks sound
    (:func:`dali_mixup.tools.imageformat.stream_problem` on the file)."""
    try:
        with open(path, "rb") as f:
            return stream_problem(f, os.path.getsize(path))
    except OSError as e:
        return f"cannot read: {e.strerror or e}"


# ----------------------------------------------------------------------------- many files


def cache_dir() -> str:
    """Where the per-folder results live: ``$DALI_MIXUP_CACHE/image-check``, else
    ``$XDG_CACHE_HOME/dali-mixup/image-check`` (``~/.cache`` when unset)."""
    base = os.environ.get("DALI_MIXUP_CACHE")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache"), "dali-mixup")
    return os.path.join(base, "image-check")


def _entry_path(folder: str) -> str:
    return os.path.join(cache_dir(), hashlib.sha256(folder.encode()).hexdigest()[:32] + ".json")


def _stat_folder(folder: str, names: list[str]):
    """``(key, stat failures)`` of one folder's files: the key hashes path, size and mtime."""
    h = hashlib.sha256(f"{CHECK_VERSION}\0{folder}".encode())
    failed = {}
    for name in names:
        try:
            st = os.stat(os.path.join(folder, name))
            h.update(f"\0{name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
        except OSError as e:
            failed[os.path.join(folder, name)] = f"cannot read: {e.strerror or e}"
    return h.hexdigest(), failed


def _cached(folder: str, key: str):
    try:
        with open(_entry_path(folder)) as f:
            entry = json.load(f)
        if entry.get("key") == key:
            return {os.path.join(folder, n): why for n, why in entry["bad"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def _store(folder: str, key: str, bad: dict):
    """Write one folder's entry (atomically; a cache that cannot be written is skipped)."""
    path = _entry_path(folder)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"folder": folder, "key": key,
                       "bad": {os.path.basename(p): why for p, why in bad.items()}}, f)
        os.replace(tmp, path)
    except OSError:
        pass


def check_images(files, *, threads: int | None = None, cache: bool = True) -> dict:
    """``{path: reason}`` of the files :func:`image_problem` finds bad (empty: all sound).

    Runs in ``threads`` threads (default: ``min(32, 4 * CPUs)``; the work is mostly waiting
    for the disk). With ``cache``, folders whose files are unchanged since their last check
    (same names, sizes and modification times) are not read again.
    """
    files = [os.path.abspath(os.fspath(p)) for p in files]
    if not files:
        return {}
    threads = threads or min(32, 4 * (os.cpu_count() or 1))
    folders: dict = {}
    for p in files:
        folders.setdefault(os.path.dirname(p), []).append(os.path.basename(p))
    bad: dict = {}
    todo: list = []  # (folder, key, paths) to read
    with ThreadPoolExecutor(max_workers=threads) as pool:
        if cache:
            keyed = list(pool.map(lambda kv: _stat_folder(*kv), folders.items()))
            for (folder, names), (key, failed) in zip(folders.items(), keyed):
                hit = None if failed else _cached(folder, key)
                if hit is not None:
                    bad.update(hit)
                else:
                    todo.append((folder, key, [os.path.join(folder, n) for n in names]))
        else:
            todo = [(folder, None, [os.path.join(folder, n) for n in names])
                    for folder, names in folders.items()]
        paths = [p for _, _, ps in todo for p in ps]
        chunk = max(1, min(256, len(paths) // (4 * threads) or 1))
        pieces = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
        results = {}
        for part in pool.map(lambda ps: [(p, image_problem(p)) for p in ps], pieces):
            results.update(part)
    for folder, key, ps in todo:
        found = {p: results[p] for p in ps if results[p] is not None}
        bad.update(found)
        if key is not None:
            _store(folder, key, found)
    return bad


def explain_decode_error(error: BaseException, files, *, full_decode_limit: int = 20000):
    """A one-paragraph message naming the file(s) behind a decoder ``error`` raised while
    reading ``files``, or None when none can be named.

    The decoder's own message is searched for a path of ``files`` first; otherwise the files
    are checked again (:func:`check_images`, without the cache) and, for up to
    ``full_decode_limit`` files, decoded with Pillow.
    """
    text = str(error)
    files = [os.fspath(f) for f in files]
    known = set(files)
    named = sorted(known & set(re.findall(r"[^\s'\"]+", text)))
    if not named and len(files) <= full_decode_limit:  # paths with spaces
        named = sorted(f for f in known if f in text)
    reasons = {f: "named by the decoder" for f in named}
    if not reasons:
        reasons = check_images(files, cache=False)
    if not reasons and len(files) <= full_decode_limit:
        reasons = _pillow_failures(files)
    if not reasons:
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = next((ln for key in ("failed to decode", "failure", "decode") for ln in lines
                  if key in ln.lower()), "")
    listing = "\n".join(f"  {p}: {why}" for p, why in sorted(reasons.items()))
    return (f"the image decoder failed ({first or type(error).__name__}) on "
            f"{len(reasons)} file(s); leave them out (remove them, or check the images and pass "
            f"--skip-bad-images):\n{listing}")


def _pillow_failures(files) -> dict:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with the train extra
        return {}

    def one(p):
        try:
            with Image.open(p) as im:
                im.load()
            return None
        except Exception as e:  # Pillow raises many kinds on bad data
            return f"Pillow cannot decode it either: {e}"

    with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:
        return {p: why for p, why in zip(files, pool.map(one, files)) if why}
