"""Checks a document's archive files with tools nobody here wrote (called by
engine/archive/tests/formats.rs; usable by hand on any case file it writes).

    check_archives.py case.json

case.json: {"original": path, "kind": "pdf"|"tiff"|"jpeg"|..., "pdf"|"hocr"|"alto"|"txt": path,
"xsd": path, "pages": [{"index", "failed", "text", "size_pixels", "size_points",
"lines": [{"text", "points": [x1,y1,x2,y2], "pixels": [...], "confidence": 0..1 or null}]}]}

- PDF: `qpdf --check` passes; `pdffonts` lists the text font with a ToUnicode map;
  `pdftotext -bbox-layout` (poppler) gives every line's text with its box within 2 pt;
  a failed page has none of them; for a PDF upload the original file is a byte prefix
  of the new one and every original page's content streams and images are the same
  objects with byte-identical raw data (read by PyMuPDF); for an image upload each page
  shows one image of the upload's size, a JPEG byte for byte.
- hOCR: `hocr-check` (hocr-tools) and `hocr-spec` (kba/hocr-spec-python) pass; lines,
  boxes and confidences (`x_wconf`, 0-100) read back with lxml.
- ALTO: valid against the ALTO v4.4 XSD (xmlschema); lines, boxes and confidences (`WC`,
  0-1) read back through xmlschema's decoder.
- TXT: pages split on form feeds give each page's text.
Exits non-zero with every failure listed.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pymupdf as fitz
from lxml import etree, html
import xmlschema

failures = []


def fail(msg):
    failures.append(msg)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def as_list(x):
    """xmlschema's decoder gives one child as itself, several as a list."""
    return x if isinstance(x, list) else [x]


def near(a, b, tol):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def words_in_box(line, words):
    """The words of `line`, in order, are pdftotext words inside the line's box (2 pt),
    among any of the upload's own words there, and the words found span the box (2 pt)."""
    x1, y1, x2, y2 = line["points"]
    inside = [(t, b) for t, b in words
              if b[0] >= x1 - 2 and b[1] >= y1 - 2 and b[2] <= x2 + 2 and b[3] <= y2 + 2]
    inside.sort(key=lambda w: w[1][0])
    chosen, rest = [], iter(inside)
    for want in line["text"].split():
        for t, b in rest:
            if t == want:
                chosen.append(b)
                break
        else:
            return False
    union = [min(b[0] for b in chosen), min(b[1] for b in chosen),
             max(b[2] for b in chosen), max(b[3] for b in chosen)]
    return near(union, line["points"], 2.0)


def check_pdf(case):
    path = case["pdf"]
    r = run(["qpdf", "--check", path])
    if r.returncode != 0:
        fail(f"qpdf --check failed ({r.returncode}): {r.stdout[-800:]} {r.stderr[-800:]}")
    r = run(["pdffonts", path])
    font_rows = [l for l in r.stdout.splitlines() if "SphinxGlyphless" in l]
    if not font_rows:
        fail(f"pdffonts does not list the text font:\n{r.stdout}")
    for row in font_rows:
        # columns: name, type, encoding, emb, sub, uni, object number, generation
        cols = row.split()
        if cols[-3] != "yes":
            fail(f"pdffonts: text font without ToUnicode: {row}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bbox.html"
        r = run(["pdftotext", "-bbox-layout", path, str(out)])
        if r.returncode != 0:
            fail(f"pdftotext failed: {r.stderr}")
            return
        tree = etree.parse(str(out), etree.HTMLParser(encoding="utf-8"))
    found, words = [], []  # per page: [(text, box)] of lines, of words
    for page in tree.iter("page"):
        lines, page_words = [], []
        for line in page.iter("line"):
            ws = list(line.iter("word"))
            page_words += [(w.text or "", [float(w.get(k)) for k in ("xmin", "ymin", "xmax", "ymax")]) for w in ws]
            text = " ".join(w.text or "" for w in ws)
            box = [float(line.get(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            lines.append((text, box))
        found.append(lines)
        words.append(page_words)
    if len(found) != len(case["pages"]):
        fail(f"pdftotext sees {len(found)} pages, expected {len(case['pages'])}")
        return
    # Born-digital uploads have text of their own, which pdftotext may group into one
    # line with ours; there every word of a line must be found inside its box instead.
    has_text = case["kind"] == "pdf" and run(["pdftotext", case["original"], "-"]).stdout.strip() != ""
    for page in case["pages"]:
        got = found[page["index"]]
        if page["failed"]:
            ours = {l["text"] for p in case["pages"] for l in p["lines"]}
            stray = [t for t, _ in got if t in ours]
            if stray:
                fail(f"failed page {page['index']} has text {stray}")
            continue
        for line in page["lines"]:
            match = [b for t, b in got if t == line["text"]]
            if any(near(b, line["points"], 2.0) for b in match):
                continue
            if has_text and words_in_box(line, words[page["index"]]):
                continue
            if not match:
                fail(f"page {page['index']}: line {line['text']!r} not recovered; pdftotext lines: {[t for t, _ in got][:40]}")
            else:
                fail(f"page {page['index']}: line {line['text']!r} box {match} != {line['points']} (2 pt)")
    original = Path(case["original"]).read_bytes()
    new = Path(path).read_bytes()
    if case["kind"] == "pdf":
        if not new.startswith(original):
            fail("the original PDF is not a byte prefix of the searchable PDF")
        a, b = fitz.open(case["original"]), fitz.open(path)
        for i in range(len(a)):
            pa, pb = a[i], b[i]
            kept = set(pb.get_contents())
            for x in pa.get_contents():
                if x not in kept:
                    fail(f"page {i}: original content stream {x} is not on the new page")
                elif a.xref_stream_raw(x) != b.xref_stream_raw(x):
                    fail(f"page {i}: content stream {x} differs")
            images_b = {img[0] for img in pb.get_images(full=True)}
            for img in pa.get_images(full=True):
                x = img[0]
                if x not in images_b:
                    fail(f"page {i}: image {x} is not on the new page")
                elif a.xref_stream_raw(x) != b.xref_stream_raw(x):
                    fail(f"page {i}: image {x} differs")
    else:
        b = fitz.open(path)
        if len(b) != len(case["pages"]):
            fail(f"{len(b)} PDF pages for {len(case['pages'])} images")
        for page in case["pages"]:
            imgs = b[page["index"]].get_images(full=True)
            if len(imgs) != 1:
                fail(f"page {page['index']}: {len(imgs)} images")
                continue
            x, w, h = imgs[0][0], imgs[0][2], imgs[0][3]
            if [w, h] != page["size_pixels"]:
                fail(f"page {page['index']}: image {w}x{h}, upload {page['size_pixels']}")
            rect = b[page["index"]].rect
            if not near([rect.width, rect.height], page["size_points"], 0.05):
                fail(f"page {page['index']}: page {rect.width}x{rect.height} pt, expected {page['size_points']}")
            if case["kind"] == "jpeg" and b.xref_stream_raw(x) != original:
                fail("the JPEG is not embedded byte for byte")


def check_hocr(case):
    path = case["hocr"]
    bin_dir = Path(sys.executable).parent
    r = run([str(bin_dir / "hocr-spec"), path])
    if r.returncode != 0 or "[ERROR]" in r.stdout:
        fail(f"hocr-spec rejects the hOCR ({r.returncode}): {r.stdout[-1500:]} {r.stderr[-1500:]}")
    # hocr-check's overlap checks compare the lines of ALL pages with each other (its
    # per-page XPath is absolute), so it checks the pages hocr-split cuts out, one by one.
    with tempfile.TemporaryDirectory() as tmp:
        pattern = str(Path(tmp) / "page-%04d.hocr")
        r = run([str(bin_dir / "hocr-split"), path, pattern])
        if r.returncode != 0:
            fail(f"hocr-split failed: {r.stderr[-800:]}")
        for page in sorted(Path(tmp).glob("page-*.hocr")):
            r = run([str(bin_dir / "hocr-check"), str(page)])
            if r.returncode != 0 or "not ok" in r.stdout:
                fail(f"hocr-check rejects {page.name}: {r.stdout[-1500:]} {r.stderr[-800:]}")
    doc = html.parse(path)
    pages = doc.xpath("//*[@class='ocr_page']")
    if len(pages) != len(case["pages"]):
        fail(f"hOCR has {len(pages)} pages, expected {len(case['pages'])}")
        return
    for page, el in zip(case["pages"], pages):
        title = el.get("title")
        lines = el.xpath(".//*[@class='ocr_line']")
        if page["failed"]:
            if not el.get("data-sphinx-error") or lines:
                fail(f"hOCR failed page {page['index']} not marked: {title}")
            continue
        w, h = page["size_pixels"]
        if f"bbox 0 0 {w} {h}" not in title:
            fail(f"hOCR page {page['index']} bbox: {title}")
        got = []
        for line in lines:
            props = dict(p.strip().split(" ", 1) for p in line.get("title").split(";"))
            conf = float(props["x_wconf"]) if "x_wconf" in props else None
            got.append((line.text_content(), [float(v) for v in props["bbox"].split()], conf))
        want = [(l["text"], l["pixels"], l.get("confidence")) for l in page["lines"]]
        if len(got) != len(want):
            fail(f"hOCR page {page['index']}: {len(got)} lines, expected {len(want)}")
        for (gt, gb, gc), (wt, wb, wc) in zip(got, want):
            if gt != wt or not near(gb, wb, 1.0):
                fail(f"hOCR page {page['index']}: {gt!r} {gb} != {wt!r} {wb}")
            if (gc is None) != (wc is None) or (wc is not None and abs(gc - 100 * wc) > 0.5):
                fail(f"hOCR page {page['index']}: {gt!r} x_wconf {gc} for confidence {wc}")


def check_alto(case):
    # The XSD imports the LoC xlink schema from loc.gov: the copy beside it (fixtures).
    xlink = Path(case["xsd"]).parent / "xlink.xsd"
    schema = xmlschema.XMLSchema(case["xsd"], locations={"http://www.w3.org/1999/xlink": str(xlink)})
    errors = list(schema.iter_errors(case["alto"]))
    for e in errors[:5]:
        fail(f"ALTO invalid: {e.reason} at {e.path}")
    if errors:
        return
    data = schema.to_dict(case["alto"])
    pages = as_list(data["Layout"]["Page"])
    if len(pages) != len(case["pages"]):
        fail(f"ALTO has {len(pages)} pages")
        return
    for page, el in zip(case["pages"], pages):
        if page["failed"]:
            if el.get("@QUALITY") != "Missing" or not el.get("@QUALITY_DETAIL"):
                fail(f"ALTO failed page {page['index']} not marked: {el}")
            continue
        if [el["@WIDTH"], el["@HEIGHT"]] != page["size_pixels"]:
            fail(f"ALTO page {page['index']} size {el['@WIDTH']}x{el['@HEIGHT']}")
        got = []
        for block in as_list(el["PrintSpace"].get("TextBlock", [])):
            for line in as_list(block["TextLine"]):
                s = as_list(line["String"])[0]
                got.append((s["@CONTENT"], [s["@HPOS"], s["@VPOS"], s["@HPOS"] + s["@WIDTH"],
                                            s["@VPOS"] + s["@HEIGHT"]], s.get("@WC")))
        want = [(l["text"], l["pixels"], l.get("confidence")) for l in page["lines"]]
        if len(got) != len(want):
            fail(f"ALTO page {page['index']}: {len(got)} lines, expected {len(want)}")
        for (gt, gb, gc), (wt, wb, wc) in zip(got, want):
            if gt != wt or not near(gb, wb, 0.02):
                fail(f"ALTO page {page['index']}: {gt!r} {gb} != {wt!r} {wb}")
            if (gc is None) != (wc is None) or (wc is not None and abs(float(gc) - wc) > 0.006):
                fail(f"ALTO page {page['index']}: {gt!r} WC {gc} for confidence {wc}")


def check_txt(case):
    pages = Path(case["txt"]).read_text(encoding="utf-8").split("\f")
    if len(pages) != len(case["pages"]):
        fail(f"txt has {len(pages)} pages")
        return
    for page, got in zip(case["pages"], pages):
        want = "" if page["failed"] else page["text"].rstrip() + "\n"
        if got != want:
            fail(f"txt page {page['index']}: {got!r} != {want!r}")


def main():
    case = json.loads(Path(sys.argv[1]).read_text())
    for key, check in (("pdf", check_pdf), ("hocr", check_hocr), ("alto", check_alto), ("txt", check_txt)):
        if key in case:
            check(case)
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print(f"ok: {', '.join(k for k in ('pdf', 'hocr', 'alto', 'txt') if k in case)}")


if __name__ == "__main__":
    main()
