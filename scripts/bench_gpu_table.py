"""The markdown table of a `scripts/bench-gpu.sh run`, from the files it leaves in DIR.

    python3 scripts/bench_gpu_table.py DIR

DIR holds meta.json (date, card, new tokens per page, $ per GPU-hour), ours.jsonl
(engine/worker/examples/bench_gpu.rs), hf.jsonl (scripts/bench_gpu_reference.py) and,
when a part was stopped at its time budget or failed, cut.txt (scripts/bench-gpu.sh).
Lines a run cut short did not write are left out of the table (a missing hf.jsonl:
no peer columns), so a partial run still gives what it measured.
"""

import json
import sys
from pathlib import Path


def lines(path):
    """The JSON lines of path that are whole (a killed run may leave half a line)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def main(folder):
    meta = json.loads((folder / "meta.json").read_text())
    runs, peers = {}, {}
    for r in lines(folder / "ours.jsonl"):
        runs.setdefault(r["mode"], {})[r["batch"]] = r
    for r in lines(folder / "hf.jsonl"):
        peers.setdefault(r["peer"], {})[r["batch"]] = r
    enc = peers.pop("encoders", {})
    price = float(meta["price"])

    def usd(ms):
        return ms / 1000 / 3600 * price * 1e6

    print(f"### {meta['date']}: {meta['card']}, {meta['new']} new tokens per page, "
          f"${price}/GPU-hour\n")
    head = ["ours", "batch", "ours ms/page (end to end)", "ours LLM tokens/s", "ours $/M pages"]
    head += [c for p in peers for c in (f"{p} ms/page", f"{p} tokens/s", f"ours vs {p}")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * (5 + 3 * len(peers)))
    for mode, ours in runs.items():
        for b in sorted(ours):
            o = ours[b]
            ms = 1000 / o["pages_per_s"]
            llm_tps = o["generated"] / (o["prefill_s"] + o["decode_s"])
            cells = [mode, f"{b}", f"{ms:.1f}", f"{llm_tps:.0f}", f"{usd(ms):.1f}"]
            for p in peers.values():
                h = p.get(b)
                cells += ([f"{h['ms_per_page']:.1f}", f"{h['tokens_per_s']:.0f}",
                           f"{h['ms_per_page'] / ms:.2f}x"] if h else ["", "", ""])
            print("| " + " | ".join(cells) + " |")
    if enc and runs:
        first = next(iter(runs.values()))
        print("\n| batch | ours encoders ms/page | timm ConvNeXt-XXL + transformers DINOv2-g "
              "ms/page | ours vs peer |")
        print("|---|---|---|---|")
        for b in sorted(first):
            e = enc.get(b)
            mine = 1000 * first[b]["encode_s"] / b
            if e:
                print(f"| {b} | {mine:.1f} | {e['ms_per_page']:.1f} | "
                      f"{e['ms_per_page'] / mine:.2f}x |")
    for mode, ours in runs.items():
        print(f"\nPhases of ours, {mode} (s): " + "; ".join(
            f"batch {b}: encode {o['encode_s']:.2f}, prefill {o['prefill_s']:.2f}, "
            f"decode {o['decode_s']:.2f}, "
            f"host {o['wall_s'] - o['encode_s'] - o['prefill_s'] - o['decode_s']:.2f}"
            for b, o in sorted(ours.items())))

    def compare(a, b, what):
        x, y = runs[a], runs[b]
        same = [n for n in sorted(x) if n in y and x[n]["digest"] == y[n]["digest"]]
        differ = [n for n in sorted(x) if n in y and x[n]["digest"] != y[n]["digest"]]
        return (f"{what}: every page's text the same as {b} at batch {same}"
                + (f"; DIFFERENT at batch {differ}" if differ else ""))

    if "graphs" in runs:
        steps = {b: o["graph_replays"] for b, o in sorted(runs["graphs"].items())}
        print(f"\nCUDA graphs: decode steps replayed {steps}"
              + ("; " + compare("graphs", "static", "replays") if "static" in runs else ""))
    if "static" in runs and "eager" in runs:
        print("\n" + compare("static", "eager",
                             "Static shapes (widths rounded up, bf16 sums over more columns)"))
    cut = folder / "cut.txt"
    if cut.exists() and cut.read_text().strip():
        print("\nCut short or failed (the rows above are what was measured): "
              + "; ".join(line for line in cut.read_text().splitlines() if line) + ".")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
