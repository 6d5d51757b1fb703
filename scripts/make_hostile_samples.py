#!/usr/bin/env python3
"""Makes the small document samples under tests/data/ (run once; the outputs are committed).

  .venv/bin/python scripts/make_hostile_samples.py

formats/  one file per decoding path (TIFF multi-page and G4 fax, PNG 16-bit /
          palette+tRNS / gray+alpha, JPEG with EXIF orientation 6, CMYK JPEG,
          WebP lossless+alpha and lossy, PDFs whose page is one image in each
          scan filter: DCT, JPX, CCITT G4, JBIG2 (MMR), Flate with /Rotate 90 and
          a crop box),
          each with `<name>.expected.png`: the upright RGB page as PIL decodes it
          (alpha composited on white by PIL), or for the PDFs the embedded image
          decoded by PIL. Every PDF sample is also rendered with PyMuPDF here and
          must match its expected image, so the samples are checked by two
          implementations nobody here wrote.
hostile/  inputs that must be refused with a typed error.

Deterministic (fixed seeds) except hostile/encrypted.pdf, whose AES salts are random.
"""
import io
import random
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ROOT / "tests" / "data" / "formats"
HOSTILE = ROOT / "tests" / "data" / "hostile"
CORPUS = ROOT / "tests" / "data" / "corpus"


def pattern(w, h, seed, mode="RGB"):
    """A test card: four coloured quadrants (orientation is visible), a gradient, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (220, 30, 30)
    img[: h // 2, w // 2 :] = (30, 200, 40)
    img[h // 2 :, : w // 2] = (30, 40, 210)
    img[h // 2 :, w // 2 :] = (x[h // 2 :, w // 2 :, None] * 255 // max(w - 1, 1)).astype(np.uint8)
    img[h // 4 : h // 4 + 2, :] = rng.integers(0, 256, (2, w, 3), dtype=np.uint8)
    out = Image.fromarray(img, "RGB")
    return out.convert(mode) if mode != "RGB" else out


def save_expected(name, rgb):
    assert rgb.mode == "RGB"
    rgb.save(FORMATS / f"{name}.expected.png")


def on_white(img):
    rgba = img.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_16bit_rgb(arr16):
    """PIL cannot write 16-bit RGB; write the PNG by hand (PNG spec, colour type 2, depth 16)."""
    h, w, _ = arr16.shape
    raw = b"".join(b"\0" + arr16[r].astype(">u2").tobytes() for r in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(raw, 9))
        + png_chunk(b"IEND", b"")
    )


def make_pdf(objects, root=1, trailer_extra=b""):
    """Serialises numbered objects (1..n) with a classic xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        root,
        trailer_extra,
        xref,
    )
    return bytes(out)


def stream(dict_body, data):
    return b"<< %s /Length %d >>\nstream\n" % (dict_body, len(data)) + data + b"\nendstream"


def image_page_pdf(img_dict, img_data, w, h, page_extra=b""):
    """One page of w x h points whose content draws the image over the whole media box."""
    content = b"q %d 0 0 %d 0 0 cm /Im0 Do Q" % (w, h)
    return make_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] %s/Resources << /XObject << /Im0 5 0 R >> >> /Contents 4 0 R >>"
            % (w, h, page_extra),
            stream(b"", content),
            stream(b"/Type /XObject /Subtype /Image /Width %d /Height %d " % img_dict[0] + img_dict[1], img_data),
        ]
    )


def check_with_mupdf(name, pdf_bytes, expected, tol):
    """Renders page 0 with PyMuPDF at 72 dpi and compares with the expected image."""
    import pymupdf

    doc = pymupdf.open(stream=pdf_bytes, filetype="pdf")
    pix = doc[0].get_pixmap(dpi=72, alpha=False)
    got = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, pix.n)[..., :3]
    exp = np.asarray(expected)
    assert got.shape == exp.shape, (name, got.shape, exp.shape)
    d = np.abs(got.astype(int) - exp.astype(int))
    diff = d.mean()
    print(f"  {name}: per-row mean diff {np.round(d.mean(axis=(1, 2)), 1).tolist()}") if diff > tol else None
    assert diff <= tol, f"{name}: PyMuPDF differs from the expected image by {diff:.2f} on average"
    print(f"  {name}: PyMuPDF agrees (mean abs diff {diff:.2f})")


def g4_strip(bilevel):
    """CCITT G4 data of a mode-1 image: libtiff (via PIL) writes it as one strip."""
    buf = io.BytesIO()
    bilevel.save(buf, "TIFF", compression="group4", tiffinfo={278: bilevel.height})
    tif = Image.open(io.BytesIO(buf.getvalue()))
    offsets, counts = tif.tag_v2[273], tif.tag_v2[279]
    assert len(offsets) == 1, "expected a single strip"
    photometric = tif.tag_v2[262]
    data = buf.getvalue()[offsets[0] : offsets[0] + counts[0]]
    return data, photometric


def formats():
    FORMATS.mkdir(parents=True, exist_ok=True)
    # Multi-page TIFF: RGB, gray and RGBA pages (deflate), 150 dpi.
    p0, p1 = pattern(64, 48, 1), pattern(40, 30, 2, "L")
    p2 = pattern(24, 36, 3).convert("RGBA")
    p2.putalpha(Image.linear_gradient("L").resize((24, 36)))
    p0.save(FORMATS / "multipage.tif", save_all=True, append_images=[p1, p2], compression="tiff_adobe_deflate", dpi=(150, 150))
    for i, frame in enumerate([p0, p1, p2]):
        save_expected(f"multipage.p{i}", on_white(frame))
    # Fax: two bilevel CCITT G4 pages at 204 x 196 dpi (fine-mode fax).
    fax = [pattern(96, 64, 4, "L").point(lambda v: 255 if v > 100 else 0).convert("1"), pattern(80, 40, 5, "L").convert("1")]
    fax[0].save(FORMATS / "fax_g4.tif", save_all=True, append_images=fax[1:], compression="group4", dpi=(204, 196))
    for i, frame in enumerate(fax):
        save_expected(f"fax_g4.p{i}", frame.convert("RGB"))
    # PNG 16-bit RGB (hand-written), palette with a transparent index, gray+alpha at 300 dpi.
    rng = np.random.default_rng(6)
    arr16 = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    (FORMATS / "rgb16.png").write_bytes(png_16bit_rgb(arr16))
    save_expected("rgb16", Image.open(FORMATS / "rgb16.png").convert("RGB"))
    pal = pattern(32, 24, 7).quantize(colors=16, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal.save(FORMATS / "palette.png", transparency=0)
    save_expected("palette", on_white(Image.open(FORMATS / "palette.png")))
    la = pattern(30, 20, 8, "L").convert("LA")
    la.putalpha(Image.linear_gradient("L").rotate(90).resize((30, 20)))
    la.save(FORMATS / "gray_alpha.png", dpi=(300, 300))
    save_expected("gray_alpha", on_white(Image.open(FORMATS / "gray_alpha.png")))
    # JPEG, 64 x 32 stored, EXIF orientation 6 (display rotated 90 degrees clockwise -> 32 x 64).
    exif = Image.Exif()
    exif[0x0112] = 6
    pattern(64, 32, 9).save(FORMATS / "exif_orient6.jpg", quality=95, exif=exif.tobytes())
    save_expected("exif_orient6", ImageOps.exif_transpose(Image.open(FORMATS / "exif_orient6.jpg")).convert("RGB"))
    # CMYK JPEG (PIL writes Adobe APP14, inverted CMYK as Photoshop does).
    pattern(40, 24, 10).convert("CMYK").save(FORMATS / "cmyk.jpg", quality=95)
    save_expected("cmyk", Image.open(FORMATS / "cmyk.jpg").convert("RGB"))
    # WebP lossless with alpha, and lossy.
    wa = pattern(28, 20, 11).convert("RGBA")
    wa.putalpha(Image.linear_gradient("L").resize((28, 20)))
    wa.save(FORMATS / "lossless_alpha.webp", lossless=True)
    save_expected("lossless_alpha", on_white(Image.open(FORMATS / "lossless_alpha.webp")))
    pattern(48, 32, 12).save(FORMATS / "lossy.webp", quality=90)
    save_expected("lossy", Image.open(FORMATS / "lossy.webp").convert("RGB"))

    # PDFs: one image per scan filter, drawn 1 point per image pixel.
    img = pattern(64, 48, 13)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, subsampling=0)  # 4:4:4: no chroma upsampling to disagree on
    dct = image_page_pdf(((64, 48), b"/ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode"), buf.getvalue(), 64, 48)
    exp = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    check_with_mupdf("dct.pdf", dct, exp, 3.0)
    (FORMATS / "dct.pdf").write_bytes(dct)
    save_expected("dct", exp)

    buf = io.BytesIO()
    img.save(buf, "JPEG2000", irreversible=False)  # lossless 5/3 wavelet
    jpx = image_page_pdf(((64, 48), b"/Filter /JPXDecode"), buf.getvalue(), 64, 48)
    exp = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    check_with_mupdf("jpx.pdf", jpx, exp, 1.0)
    (FORMATS / "jpx.pdf").write_bytes(jpx)
    save_expected("jpx", exp)

    bilevel = pattern(96, 64, 14, "L").point(lambda v: 255 if v > 100 else 0).convert("1")
    data, photometric = g4_strip(bilevel)
    # A TIFF with photometric 0 (WhiteIsZero) stores fax-white runs as 0 bits, which PDF's
    # CCITT filter shows as white when BlackIs1 is false; any other photometric is the
    # inverse. check_with_mupdf below confirms the choice against PIL's decode.
    black_is_1 = b"false" if photometric == 0 else b"true"
    parms = b"/DecodeParms << /K -1 /Columns 96 /Rows 64 /BlackIs1 %s >>" % black_is_1
    ccitt = image_page_pdf(((96, 64), b"/ColorSpace /DeviceGray /BitsPerComponent 1 /Filter /CCITTFaxDecode " + parms), data, 96, 64)
    exp = bilevel.convert("RGB")
    check_with_mupdf("ccitt.pdf", ccitt, exp, 1.0)
    (FORMATS / "ccitt.pdf").write_bytes(ccitt)
    save_expected("ccitt", exp)

    # JBIG2 (embedded stream, ITU T.88 annex D.3): a page information segment and an
    # immediate lossless generic region coded with MMR (T.88 6.2.6: T.6 coding, the same
    # as G4, where a 1 pixel is black). PIL's G4 strip codes its 1 bits (white, with
    # photometric BlackIsZero) as fax-black runs, so the region is coded from the
    # inverted image: its 1 bits are then the black pixels.
    assert photometric == 1, "expected PIL to write BlackIsZero G4"
    mmr, _ = g4_strip(ImageOps.invert(bilevel.convert("L")).convert("1"))

    def segment(number, kind, payload):
        # number, flags (type, 1-byte page association), no referred-to segments, page 1, length
        return struct.pack(">IBBBI", number, kind, 0, 1, len(payload)) + payload

    page_info = struct.pack(">IIIIBH", 96, 64, 0, 0, 0, 0)
    region = struct.pack(">IIIIB", 96, 64, 0, 0, 0) + bytes([0b0000_0001]) + mmr  # MMR = 1
    jbig2_data = segment(0, 48, page_info) + segment(1, 38, region)
    jbig2 = image_page_pdf(
        ((96, 64), b"/ColorSpace /DeviceGray /BitsPerComponent 1 /Filter /JBIG2Decode"), jbig2_data, 96, 64
    )
    check_with_mupdf("jbig2.pdf", jbig2, exp, 1.0)
    (FORMATS / "jbig2.pdf").write_bytes(jbig2)
    save_expected("jbig2", exp)

    # Flate RGB, page rotated 90 degrees clockwise, cropped to the left 40 x 36 points
    # starting 4 points up: the expected page is the crop, rotated clockwise.
    raw = np.asarray(img).tobytes()
    flate = image_page_pdf(
        ((64, 48), b"/ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode"),
        zlib.compress(raw, 9),
        64,
        48,
        page_extra=b"/Rotate 90 /CropBox [0 4 40 40] ",
    )
    # PDF y grows upwards: crop box y 4..40 is image rows 48-40=8 .. 48-4=44.
    exp = img.crop((0, 8, 40, 44)).transpose(Image.Transpose.ROTATE_270)
    check_with_mupdf("flate_rotate_crop.pdf", flate, exp, 1.0)
    (FORMATS / "flate_rotate_crop.pdf").write_bytes(flate)
    save_expected("flate_rotate_crop", exp)


def hostile():
    HOSTILE.mkdir(parents=True, exist_ok=True)
    (HOSTILE / "empty.bin").write_bytes(b"")
    (HOSTILE / "random.bin").write_bytes(random.Random(0).randbytes(4096))
    # A real corpus PDF cut in half (as an interrupted upload would be).
    whole = (CORPUS / "small_page_size.pdf").read_bytes()
    (HOSTILE / "truncated.pdf").write_bytes(whole[: len(whole) // 2])
    # A well-formed page tree with no pages.
    (HOSTILE / "no_pages.pdf").write_bytes(
        make_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])
    )
    # One real page, but the page tree root declares 100,000.
    (HOSTILE / "many_pages.pdf").write_bytes(
        make_pdf(
            [
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [3 0 R] /Count 100000 >>",
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>",
            ]
        )
    )
    # Password-protected (AES-256, user password required), written by PyMuPDF.
    import pymupdf

    doc = pymupdf.open()
    doc.new_page(width=100, height=100).insert_text((10, 50), "secret")
    (HOSTILE / "encrypted.pdf").write_bytes(
        doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    )
    # A PNG whose header declares 60,000 x 60,000 RGB pixels, with a tiny IDAT.
    (HOSTILE / "huge_header.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )
    # A page whose content stream has a million fill operations (Flate: ~30 KB on disk).
    ops = b"10 10 3 3 re f\n" * 1_000_000
    (HOSTILE / "slow_page.pdf").write_bytes(
        make_pdf(
            [
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] /Contents 4 0 R >>",
                stream(b"/Filter /FlateDecode", zlib.compress(ops, 9)),
            ]
        )
    )


if __name__ == "__main__":
    formats()
    hostile()
    for d in (FORMATS, HOSTILE):
        for f in sorted(d.iterdir()):
            print(f"{f.relative_to(ROOT)}: {f.stat().st_size} bytes")
    sys.exit(0)
