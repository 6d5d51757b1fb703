"""Uploads and schema for the archive-format tests (engine/archive/tests): a 3-page TIFF
and a JPEG made with PIL from the MuPDF renders of corpus pages (target/fixtures/documents),
and the published ALTO v4.4 XSD, taken from a PyPI wheel that ships it (htrflow), since
this machine reaches no other registry.

Writes target/fixtures/archive/{scan.tiff, photo.jpg, alto-4-4.xsd, xlink.xsd}.
"""
import pathlib
import subprocess
import sys
import zipfile

from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "target/fixtures/documents"
OUT = ROOT / "target/fixtures/archive"
CACHE = ROOT / "target/cache/pip"
# (wheel, its file name glob, member, file written): the ALTO XSD, and the LoC xlink
# schema it imports (http://www.loc.gov/standards/xlink/xlink.xsd), shipped by OCR-D.
SCHEMAS = [
    ("htrflow==0.2.6", "htrflow-0.2.6-*.whl", "htrflow/serialization/schemas/alto-4-4.xsd", "alto-4-4.xsd"),
    ("ocrd==3.13.3", "ocrd-3.13.3-*.whl", "ocrd_validators/xlink.xsd", "xlink.xsd"),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    # The renders are small; four times their size gives letter-sized pages at 150 dpi.
    frames = [Image.open(DOCS / f"mattsnotes.pdf.p{i}.png").convert("RGB") for i in range(3)]
    frames = [f.resize((f.width * 4, f.height * 4), Image.BICUBIC) for f in frames]
    # Grey, RGB, grey: both colour spaces of the image path.
    frames[0] = frames[0].convert("L")
    frames[2] = frames[2].convert("L")
    frames[0].save(OUT / "scan.tiff", save_all=True, append_images=frames[1:],
                   compression="tiff_deflate", dpi=(150, 150))
    Image.open(DOCS / "earnings.pdf.p0.png").convert("RGB").save(
        OUT / "photo.jpg", quality=85, dpi=(200, 200))
    for requirement, pattern, member, name in SCHEMAS:
        target = OUT / name
        if target.exists():
            continue
        CACHE.mkdir(parents=True, exist_ok=True)
        if not list(CACHE.glob(pattern)):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "-d", str(CACHE), requirement], check=True)
        with zipfile.ZipFile(next(CACHE.glob(pattern))) as z:
            target.write_bytes(z.read(member))
    print(f"archive fixtures in {OUT}")


if __name__ == "__main__":
    main()
