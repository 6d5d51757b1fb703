#!/usr/bin/env python3
"""Reference renders of the PDF corpus by PyMuPDF (MuPDF), for engine/core/tests/documents.rs.

  .venv/bin/python scripts/make_document_fixtures.py

Writes target/fixtures/documents/: corpus.json (per file, each page's size in
points after crop box and /Rotate) and <file>.p<N>.png (the page rendered by
MuPDF with its long side REFERENCE_LONG_SIDE px, white background). The Rust
test renders the same pages with hayro and compares.
"""
import json
from pathlib import Path

import pymupdf

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "corpus"
OUT = ROOT / "target" / "fixtures" / "documents"
# Long side of the reference renders: enough to see layout, small enough to stay fast.
REFERENCE_LONG_SIDE = 256


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    index = {}
    for pdf in sorted(CORPUS.glob("*.pdf")):
        doc = pymupdf.open(pdf)
        pages = []
        for n, page in enumerate(doc):
            w, h = page.rect.width, page.rect.height
            scale = REFERENCE_LONG_SIDE / max(w, h)
            pix = page.get_pixmap(matrix=pymupdf.Matrix(scale, scale), alpha=False)
            pix.save(OUT / f"{pdf.name}.p{n}.png")
            pages.append({"size_points": [w, h], "render_px": [pix.width, pix.height]})
        index[pdf.name] = pages
    (OUT / "corpus.json").write_text(json.dumps({"long_side": REFERENCE_LONG_SIDE, "files": index}, indent=1))
    print(f"wrote {sum(len(p) for p in index.values())} reference pages of {len(index)} files to {OUT}")


if __name__ == "__main__":
    main()
