"""Input documents for the tiler tests (functions/tiler/tests), written to
target/fixtures/tiler/inbox/: a 4-page PDF (PyMuPDF), a JPEG photo (Pillow) and a
corrupt PDF. The file names match the keys in events/*.json.

Run: .venv/bin/python scripts/gen_tiler_fixtures.py
"""

import pathlib
import random

import pymupdf
from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "fixtures" / "tiler" / "inbox"

# Page sizes in PDF points: A5 portrait, A5 landscape (wide: padding below, skipped
# sub-images), and a small card, so the tiles differ from page to page.
PAGE_SIZES = [(420, 595), (595, 420), (420, 595), (252, 144)]
JPEG_SIZE = (640, 480)
JPEG_QUALITY = 90
SEED = 20261126


def write_pdf(path: pathlib.Path) -> None:
    doc = pymupdf.open()
    for i, (w, h) in enumerate(PAGE_SIZES):
        page = doc.new_page(width=w, height=h)
        page.insert_text((36, 60), f"Quarterly report, page {i + 1}", fontsize=16)
        for line in range(6):
            y = 90 + line * 18
            if y > h - 20:
                break
            page.insert_text((36, y), f"Line {line + 1}: revenue {1000 + 37 * line + i} units", fontsize=10)
        page.draw_rect(pymupdf.Rect(w * 0.55, h * 0.15, w * 0.9, h * 0.45), color=(0.8, 0.1, 0.1), fill=(0.95, 0.85, 0.2))
    doc.save(path, garbage=4, deflate=True)


def write_jpeg(path: pathlib.Path) -> None:
    img = Image.new("RGB", JPEG_SIZE)
    px = img.load()
    for y in range(JPEG_SIZE[1]):
        for x in range(JPEG_SIZE[0]):
            px[x, y] = (x * 255 // JPEG_SIZE[0], y * 255 // JPEG_SIZE[1], 128)
    draw = ImageDraw.Draw(img)
    draw.ellipse((200, 120, 440, 360), fill=(250, 250, 240), outline=(10, 10, 10), width=4)
    draw.text((40, 40), "RECEIPT 0042", fill=(0, 0, 0))
    img.save(path, "JPEG", quality=JPEG_QUALITY)


def write_corrupt(path: pathlib.Path) -> None:
    rng = random.Random(SEED)
    # A PDF header (so type sniffing says PDF) followed by bytes no parser can use.
    path.write_bytes(b"%PDF-1.7\n" + bytes(rng.randrange(256) for _ in range(2048)))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    write_pdf(OUT / "report scan.pdf")
    write_jpeg(OUT / "photo.jpg")
    write_corrupt(OUT / "corrupt.pdf")
    for f in sorted(OUT.iterdir()):
        print(f"{f.relative_to(ROOT)}: {f.stat().st_size} bytes")


if __name__ == "__main__":
    main()
