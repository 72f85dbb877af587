"""The structure of an image file, read without decoding its pixels: why a decoder would fail.

:func:`stream_problem` tells the format by the content (not the extension), then checks

* JPEG: the start-of-image marker, every header segment up to the start of scan (lengths
  inside the file, a frame header with sane sizes and 1-4 components), and an end-of-image
  marker after the scan (a truncated file has none);
* PNG: the signature, the IHDR chunk (its CRC, sizes, bit depth and colour type), every
  chunk's length inside the file, image data and the IEND chunk (truncation);
* BMP, TIFF, WebP, PNM, JPEG 2000: the header's fields and the sizes they announce.

Used on files (:mod:`dali_mixup.tools.filecheck`) and on archive members (WebDataset shards).
"""
from __future__ import annotations

import struct
import zlib

__all__ = ["stream_problem"]

_TAIL = 1 << 16


def stream_problem(f, size: int) -> str | None:
    """Why the image in the binary file object ``f`` (``size`` bytes, positioned at its start)
    cannot be decoded (a short phrase), or None when it looks sound."""
    head = f.read(16)
    if size == 0:
        return "empty file"
    for magic, check in _FORMATS:
        if head.startswith(magic):
            try:
                return check(f, size, head)
            except (struct.error, IndexError, ValueError):  # a field cut short
                return f"truncated or corrupt {check.__name__[1:].upper()} header"
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
