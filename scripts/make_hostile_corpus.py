#!/usr/bin/env python3
"""Generates the hostile corpus: documents built to exhaust a renderer's memory, CPU or
stack (engine/core/tests/hostile_isolation.rs, scripts/e2e/serve_e2e.py). Nothing large is
committed; every file is made here, deterministically, into target/hostile/ (~30 MB).

  flate_bomb_{20k,40k,100k}.pdf  one 8-bit gray image XObject of N x N zeros, Flate
  lzw_bomb_40k.pdf               the same through LZWDecode (EarlyChange 1)
  runlength_bomb_20k.pdf         the same through RunLengthDecode
  jpx_huge.pdf                   a JPXDecode image whose codestream declares 100000^2
  jbig2_huge.pdf                 a JBIG2Decode image whose page and region declare 2^31-1 x 100000
  inline_bomb.pdf                an inline image (BI ... ID ... EI) of 40000^2 zeros, Flate
  recursive_form.pdf             a Form XObject that draws itself
  nested_forms.pdf               5000 Form XObjects, each drawing the next
  million_ops.pdf                a content stream of 3,000,000 path operators
  deep_nesting.pdf               an array nested 100,000 deep in the page dictionary
  page_tree_cycle.pdf            a page tree whose Kids lead back to the root
  tiff_huge.tif                  a TIFF whose page declares 100000 x 100000 RGB pixels

Usage: make_hostile_corpus.py [--out DIR]
"""

import argparse
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_hostile_samples import make_pdf  # noqa: E402  (the one PDF writer of the scripts)


def pdf(objects, root=1):
    """A PDF from `objects` (bytes bodies, object 1..n) with a correct xref table."""
    return make_pdf(objects, root)


def stream(dictionary: bytes, data: bytes) -> bytes:
    return b"<< " + dictionary + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def one_page(content: bytes, resources: bytes = b"<< >>", extra=(), page_extra: bytes = b""):
    """Catalog, pages, one page drawing `content`; `extra` objects follow as 5, 6, ..."""
    return pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources " + resources
        + b" /Contents 4 0 R " + page_extra + b">>",
        stream(b"", content),
        *extra,
    ])


def zeros_deflated(n: int) -> bytes:
    """zlib stream of n zero bytes, made in chunks (n may be 10 GB)."""
    c = zlib.compressobj(9)
    chunk = bytes(1 << 24)
    parts = []
    left = n
    while left:
        k = min(left, len(chunk))
        parts.append(c.compress(chunk[:k]))
        left -= k
    parts.append(c.flush())
    return b"".join(parts)


def image_page(side: int, filt: bytes, data: bytes, decode_parms: bytes = b"") -> bytes:
    img = stream(b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                 b"/BitsPerComponent 8 /Filter %s %s" % (side, side, filt, decode_parms), data)
    return one_page(b"q 612 0 0 792 0 0 cm /Im0 Do Q", b"<< /XObject << /Im0 5 0 R >> >>", [img])


def lzw_zeros(n: int) -> bytes:
    """LZW (PDF LZWDecode, EarlyChange 1) of n zero bytes.

    On a run of zeros the dictionary grows as "00", "000", ...: after a clear, the first
    code is the literal 0 and the k-th (k >= 2) is 256 + k, covering k zeros, each one
    entry the decoder has not made yet (the KwKwK case). Widths follow the decoder's table
    length; the table is cleared before it outgrows 12 bits."""
    bits, nbits, out = 0, 0, bytearray()

    def put(code, width):
        nonlocal bits, nbits
        bits = (bits << width) | code
        nbits += width
        while nbits >= 8:
            nbits -= 8
            out.append((bits >> nbits) & 0xFF)
        bits &= (1 << nbits) - 1

    left, width = n, 9
    put(256, width)  # clear
    while left > 0:
        length, width, run = 258, 9, 1
        while left > 0 and length < 4093:
            k = min(run, left)  # a shorter tail is an entry made earlier
            put(0 if k == 1 else 256 + k, width)
            if run > 1:
                length += 1  # the decoder adds an entry for every code after the first
            if length + 1 >= (1 << width) and width < 12:
                width += 1
            left -= k
            run += 1
        if left > 0:
            put(256, width)  # clear; widths restart at 9
    put(257, width)  # EOD
    if nbits:
        out.append((bits << (8 - nbits)) & 0xFF)
    return bytes(out)


def lzw_decode(data: bytes) -> bytes:
    """A plain LZWDecode (EarlyChange 1), to check lzw_zeros on a small case."""
    table = [bytes([i]) for i in range(256)] + [b"", b""]
    width, pos, prev, out = 9, 0, None, bytearray()
    nbits_total = len(data) * 8
    while pos + width <= nbits_total:
        code = int.from_bytes(data, "big") >> (nbits_total - pos - width) & ((1 << width) - 1)
        pos += width
        if code == 256:
            table, width, prev = table[:258], 9, None
            continue
        if code == 257:
            break
        entry = table[code] if code < len(table) else prev + prev[:1]
        out += entry
        if prev is not None:
            table.append(prev + entry[:1])
        prev = entry
        if len(table) + 1 >= (1 << width) and width < 12:
            width += 1
    return bytes(out)


def runlength_zeros(n: int) -> bytes:
    runs, rest = divmod(n, 128)
    data = bytes([129, 0]) * runs
    if rest:
        data += bytes([257 - rest, 0])
    return data + b"\x80"


def jpx_huge() -> bytes:
    # J2K codestream: SOC, SIZ (Xsiz = Ysiz = 100000, one 8-bit component), then garbage.
    siz = struct.pack(">HHIIIIIIIIH", 0xFF51, 41, 100000, 100000, 0, 0, 100000, 100000, 0, 0, 1) + bytes([7, 1, 1])
    code = b"\xff\x4f" + siz + b"\xff\x90" + bytes(64)
    img = stream(b"/Type /XObject /Subtype /Image /Width 100000 /Height 100000 /ColorSpace /DeviceGray "
                 b"/BitsPerComponent 8 /Filter /JPXDecode", code)
    return one_page(b"q 612 0 0 792 0 0 cm /Im0 Do Q", b"<< /XObject << /Im0 5 0 R >> >>", [img])


def jbig2_huge() -> bytes:
    def segment(number, kind, data, page=1):
        return struct.pack(">IBBBI", number, kind, 0, page, len(data)) + data

    page_info = struct.pack(">IIIIBH", 0x7FFFFFFF, 100000, 0, 0, 0, 0)
    region = struct.pack(">IIIIB", 100000, 100000, 0, 0, 0) + bytes([0]) + bytes([3, 0xFF, 0xFD, 0xFF, 2, 0xFE, 0xFE, 0xFE]) + bytes(256)
    data = segment(0, 48, page_info) + segment(1, 38, region) + segment(2, 49, b"")
    img = stream(b"/Type /XObject /Subtype /Image /Width 100000 /Height 100000 /ColorSpace /DeviceGray "
                 b"/BitsPerComponent 1 /Filter /JBIG2Decode", data)
    return one_page(b"q 612 0 0 792 0 0 cm /Im0 Do Q", b"<< /XObject << /Im0 5 0 R >> >>", [img])


def inline_bomb() -> bytes:
    data = zeros_deflated(40000 * 40000)
    content = (b"q 612 0 0 792 0 0 cm BI /W 40000 /H 40000 /BPC 8 /CS /G /F /Fl /L %d ID " % len(data)
               + data + b" EI Q")
    return one_page(content)


def recursive_form() -> bytes:
    form = stream(b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /XObject << /Fm0 5 0 R >> >>",
                  b"0 0 m 1 1 l S /Fm0 Do")
    return one_page(b"/Fm0 Do", b"<< /XObject << /Fm0 5 0 R >> >>", [form])


def nested_forms(depth=5000) -> bytes:
    forms = []
    for i in range(depth):
        me = 5 + i
        if i + 1 < depth:
            forms.append(stream(b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                                b"/Resources << /XObject << /Fm0 %d 0 R >> >>" % (me + 1),
                                b"0.999 0 0 0.999 0 0 cm /Fm0 Do"))
        else:
            forms.append(stream(b"/Type /XObject /Subtype /Form /BBox [0 0 612 792]", b"0 0 m 100 100 l S"))
    return one_page(b"/Fm0 Do", b"<< /XObject << /Fm0 5 0 R >> >>", forms)


def million_ops(n=3_000_000) -> bytes:
    ops = b"".join(b"%d %d m %d %d l S\n" % (i % 600, i % 780, (i * 7) % 600, (i * 13) % 780) for i in range(n // 3))
    data = zlib.compress(ops, 6)
    return pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << >> /Contents 4 0 R >>",
        stream(b"/Filter /FlateDecode", data),
    ])


def deep_nesting(depth=100_000) -> bytes:
    return one_page(b"0 0 m 10 10 l S", page_extra=b"/Deep " + b"[" * depth + b"]" * depth + b" ")


def page_tree_cycle() -> bytes:
    return pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 2 >>",
        b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R 4 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] /Contents 5 0 R >>",
        stream(b"", b"0 0 m 10 10 l S"),
    ])


def tiff_huge() -> bytes:
    # Little-endian TIFF, one IFD: 100000 x 100000 RGB, one strip of 16 bytes.
    entries = [
        (256, 4, 1, 100000), (257, 4, 1, 100000), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, 0), (277, 3, 1, 3), (278, 4, 1, 100000), (279, 4, 1, 16),
    ]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_offset
        if typ == 3:
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + bytes(16)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "hostile")
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    small = 5000
    assert lzw_decode(lzw_zeros(small)) == bytes(small), "LZW encoder self-check"
    assert lzw_decode(lzw_zeros(10_000_000)) == bytes(10_000_000), "LZW encoder self-check (clears)"
    files = {
        "flate_bomb_20k.pdf": lambda: image_page(20000, b"/FlateDecode", zeros_deflated(20000 ** 2)),
        "flate_bomb_40k.pdf": lambda: image_page(40000, b"/FlateDecode", zeros_deflated(40000 ** 2)),
        "flate_bomb_100k.pdf": lambda: image_page(100000, b"/FlateDecode", zeros_deflated(100000 ** 2)),
        "lzw_bomb_40k.pdf": lambda: image_page(40000, b"/LZWDecode", lzw_zeros(40000 ** 2)),
        "runlength_bomb_20k.pdf": lambda: image_page(20000, b"/RunLengthDecode", runlength_zeros(20000 ** 2)),
        "jpx_huge.pdf": jpx_huge,
        "jbig2_huge.pdf": jbig2_huge,
        "inline_bomb.pdf": inline_bomb,
        "recursive_form.pdf": recursive_form,
        "nested_forms.pdf": nested_forms,
        "million_ops.pdf": million_ops,
        "deep_nesting.pdf": deep_nesting,
        "page_tree_cycle.pdf": page_tree_cycle,
        "tiff_huge.tif": tiff_huge,
    }
    for name, make in files.items():
        path = out / name
        if not path.exists():
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(make())
            tmp.replace(path)
        print(f"{name}: {path.stat().st_size:,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
