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
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

__all__ = ["image_problem", "check_images", "cache_dir"]

#: bump when the checks change: cached results of an older version are not reused
CHECK_VERSION = 1
_TAIL = 1 << 16


def image_problem(path: str) -> str | None:
    """Why ``path`` cannot be decoded as an image (a short phrase), or None when it looks sound."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(16)
            if size == 0:
                return "empty file"
            for magic, check in _FORMATS:
                if head.startswith(magic):
                    try:
                        return check(f, size, head)
                    except (struct.error, IndexError, ValueError):  # a field cut short
                        return f"truncated or corrupt {check.__name__[1:].upper()} header"
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    return f"not an image: unknown format (first bytes {head[:8].hex(' ')})"


# ----------------------------------------------------------------------------- JPEG

# start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames)
_SOF = {m for m in range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}


def _jpeg(f, size: int, head: bytes) -> str | None:
    pos, frame = 2, False
    while True:
        f.seek(pos)
        b = f.read(2)
        if len(b) < 2:
            return "truncated JPEG: the file ends in the header, before the image data"
        if b[0] != 0xFF:
            return f"corrupt JPEG header: no marker at byte {pos} (found 0x{b[0]:02x})"
        m = b[1]
        while m == 0xFF:  # fill bytes before a marker
            pos += 1
            c = f.read(1)
            if not c:
                return "truncated JPEG: the file ends in the header, before the image data"
            m = c[0]
        pos += 2
        if m == 0x01 or 0xD0 <= m <= 0xD7:  # markers without a segment
            continue
        if m in (0x00, 0xD8):
            return f"corrupt JPEG header: unexpected marker 0x{m:02x} at byte {pos - 2}"
        if m == 0xD9:
            return "corrupt JPEG: end of image before any image data"
        seg = f.read(2)
        if len(seg) < 2:
            return "truncated JPEG: the file ends in the header, before the image data"
        (length,) = struct.unpack(">H", seg)
        if length < 2:
            return f"corrupt JPEG header: segment 0xFF{m:02X} of length {length} at byte {pos - 2}"
        if pos + length > size:
            return (f"truncated JPEG: header segment 0xFF{m:02X} at byte {pos - 2} runs past the "
                    f"end of the file ({size} bytes)")
        if m in _SOF:
            body = f.read(length - 2)
            if len(body) < 6:
                return "corrupt JPEG frame header: too short"
            precision, height, width, ncomp = struct.unpack(">BHHB", body[:6])
            if width == 0 or not 1 <= ncomp <= 4 or precision not in (8, 12, 16) \
                    or length != 8 + 3 * ncomp:
                return (f"corrupt JPEG frame header: {width}x{height}, {ncomp} components, "
                        f"{precision}-bit")
            frame = True
        elif m == 0xDA:
            if not frame:
                return "corrupt JPEG: start of scan before the frame header"
            ns = f.read(1)
            if not ns or not 1 <= ns[0] <= 4 or length != 6 + 2 * ns[0]:
                return "corrupt JPEG scan header"
            return _jpeg_end(f, pos + length, size)
        pos += length


def _jpeg_end(f, data_start: int, size: int) -> str | None:
    """An end-of-image marker (FF D9) after the scan: near the end of the file (the common
    case, read from the last 64 KiB) or anywhere after the scan (data appended after it)."""
    if size - data_start < 2:
        return "truncated JPEG: no image data after the scan header"
    start = max(data_start, size - _TAIL)
    f.seek(start)
    if b"\xff\xd9" in f.read():
        return None
    f.seek(data_start)
    last = b""
    while chunk := f.read(1 << 20):
        if b"\xff\xd9" in last + chunk:
            return None
        last = chunk[-1:]
    return "truncated JPEG: no end-of-image marker (FF D9) after the image data"


# ----------------------------------------------------------------------------- PNG

_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _png(f, size: int, head: bytes) -> str | None:
    f.seek(8)
    ihdr = f.read(25)
    if len(ihdr) < 25:
        return "truncated PNG: the file ends in the IHDR chunk"
    length, ctype = struct.unpack(">I4s", ihdr[:8])
    if ctype != b"IHDR" or length != 13:
        return "corrupt PNG: the first chunk is not a 13-byte IHDR"
    (crc,) = struct.unpack(">I", ihdr[21:25])
    if zlib.crc32(ihdr[4:21]) != crc:
        return "corrupt PNG: IHDR checksum mismatch"
    width, height, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", ihdr[8:21])
    if not (0 < width < 2 ** 31 and 0 < height < 2 ** 31) or depth not in _PNG_DEPTHS.get(color, ()) \
            or comp != 0 or filt != 0 or interlace > 1:
        return (f"corrupt PNG header: {width}x{height}, bit depth {depth}, colour type {color}")
    pos, data = 33, False
    while True:
        f.seek(pos)
        h = f.read(8)
        if len(h) < 8:
            return "truncated PNG: the file ends before the IEND chunk"
        length, ctype = struct.unpack(">I4s", h)
        if not ctype.isalpha():
            return f"corrupt PNG: invalid chunk type at byte {pos}"
        if pos + 12 + length > size:
            return f"truncated PNG: chunk {ctype.decode()} at byte {pos} runs past the end of the file"
        if ctype == b"IDAT":
            data = True
        elif ctype == b"IEND":
            return None if data else "corrupt PNG: no image data (IDAT) before IEND"
        pos += 12 + length


# ----------------------------------------------------------------------------- others


def _bmp(f, size: int, head: bytes) -> str | None:
    f.seek(0)
    h = f.read(30)
    if len(h) < 26:
        return "truncated BMP header"
    (offset,) = struct.unpack("<I", h[10:14])
    (dib,) = struct.unpack("<I", h[14:18])
    if dib == 12:
        width, height, _, bpp = struct.unpack("<HHHH", h[18:26])
        comp = 0
    else:
        if dib < 40 or len(h) < 30:
            return f"corrupt BMP header (DIB header size {dib})"
        width, height, _, bpp = struct.unpack("<iiHH", h[18:30])
        f.seek(30)
        (comp,) = struct.unpack("<I", f.read(4) or b"\0\0\0\0")
    if width <= 0 or height == 0 or bpp not in (1, 2, 4, 8, 16, 24, 32) or offset >= size:
        return f"corrupt BMP header: {width}x{height}, {bpp} bits per pixel, data at {offset}"
    if comp == 0:
        row = ((width * bpp + 31) // 32) * 4
        if offset + row * abs(height) > size:
            return f"truncated BMP: {width}x{abs(height)} pixels need {offset + row * abs(height)} " \
                   f"bytes, the file has {size}"
    return None


def _tiff(f, size: int, head: bytes) -> str | None:
    endian = "<" if head[:2] == b"II" else ">"
    (ifd,) = struct.unpack(endian + "I", head[4:8])
    if not 8 <= ifd <= size - 2:
        return f"corrupt TIFF header: first directory at byte {ifd} of {size}"
    f.seek(ifd)
    (n,) = struct.unpack(endian + "H", f.read(2))
    if n == 0 or ifd + 2 + 12 * n > size:
        return "truncated TIFF: the first image directory runs past the end of the file"
    entries = {}
    for i in range(n):
        tag, typ, count, value = struct.unpack(endian + "HHI4s", f.read(12))
        entries[tag] = (typ, count, value)

    def values(tag):
        """The SHORT / LONG values of one directory entry (inline or at their offset)."""
        if tag not in entries:
            return []
        typ, count, raw = entries[tag]
        code, width = {3: ("H", 2), 4: ("I", 4)}.get(typ, (None, 0))
        if code is None:
            raise ValueError(f"TIFF tag {tag} of type {typ}")
        if count * width <= 4:
            return list(struct.unpack(endian + code * count, raw[:count * width]))
        (at,) = struct.unpack(endian + "I", raw)
        if at + count * width > size:
            raise ValueError("TIFF values past the end")
        f.seek(at)
        return list(struct.unpack(endian + code * count, f.read(count * width)))

    # strips (273 offsets, 279 byte counts) or tiles (324, 325): the image data lies in the file
    for offs, counts in ((273, 279), (324, 325)):
        o, c = values(offs), values(counts)
        if o and len(o) == len(c) and max(a + b for a, b in zip(o, c)) > size:
            return (f"truncated TIFF: image data up to byte {max(a + b for a, b in zip(o, c))}, "
                    f"the file has {size}")
    return None


def _webp(f, size: int, head: bytes) -> str | None:
    (riff,) = struct.unpack("<I", head[4:8])
    if head[8:12] != b"WEBP":
        return "not an image: a RIFF file that is not WebP"
    if riff + 8 > size:
        return f"truncated WebP: the header announces {riff + 8} bytes, the file has {size}"
    if head[12:16] not in (b"VP8 ", b"VP8L", b"VP8X"):
        return "corrupt WebP: unknown first chunk"
    return None


def _pnm(f, size: int, head: bytes) -> str | None:
    f.seek(0)
    text = f.read(1024)
    kind = text[1:2]
    fields, i = [], 2
    want = 2 if kind in (b"1", b"4") else 3
    while len(fields) < want and i < len(text):
        c = text[i:i + 1]
        if c == b"#":
            while i < len(text) and text[i:i + 1] not in (b"\n", b"\r"):
                i += 1
        elif c.isdigit():
            j = i
            while j < len(text) and text[j:j + 1].isdigit():
                j += 1
            fields.append(int(text[i:j]))
            i = j
            continue
        elif not c.isspace():
            return "corrupt PNM header"
        i += 1
    if len(fields) < want or fields[0] == 0 or fields[1] == 0 or (want == 3 and not 0 < fields[2] < 65536):
        return "corrupt PNM header"
    if kind in (b"5", b"6"):
        need = fields[0] * fields[1] * (3 if kind == b"6" else 1) * (2 if fields[2] > 255 else 1)
        if i + 1 + need > size:
            return f"truncated PNM: {fields[0]}x{fields[1]} pixels need {need} bytes of data"
    return None


def _jp2(f, size: int, head: bytes) -> str | None:
    return None if size > 64 else "truncated JPEG 2000 file"


_FORMATS = (
    (b"\xff\xd8", _jpeg),
    (b"\x89PNG\r\n\x1a\n", _png),
    (b"BM", _bmp),
    (b"II*\x00", _tiff),
    (b"MM\x00*", _tiff),
    (b"RIFF", _webp),
    *((b"P" + k, _pnm) for k in (b"1", b"2", b"3", b"4", b"5", b"6")),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", _jp2),
    (b"\xff\x4f\xff\x51", _jp2),
)


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
