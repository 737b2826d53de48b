#!/usr/bin/env python3
"""Cut one model's part out of a (hybrid) drt lookup table, to ship the table beside that model.

Keeps the entries of MODEL, recomputes the Pareto front on (latency_ms, miou) among them, keeps only
the front (plus the full path, so the table always holds the reference), renormalizes miou to that
model's full path and sets every entry's model_dir to "." (drt resolves it relative to the LUT's
folder). Everything else (format, version, machine, input, dataset) is copied unchanged, but for
"builds", which keeps MODEL's record only.

usage: scripts/extract_lut.py HYBRID.json MODEL OUT.json
e.g.   scripts/extract_lut.py docs/results/lut_segformer_camvid_hybrid.json segformer-b0-camvid \
           data/models/segformer-b0-camvid/lut.json
"""
import json
import sys


def pareto(entries):
    """Indices of entries no other entry beats on both latency (lower) and mIoU (higher)."""
    order = sorted(range(len(entries)), key=lambda i: (entries[i]["latency_ms"], -entries[i]["miou"]))
    front, best = set(), -1.0
    for i in order:
        if entries[i]["miou"] > best:
            front.add(i)
            best = entries[i]["miou"]
    return front


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    src, model, out = argv[1:]
    try:
        table = json.load(open(src))
    except (OSError, ValueError) as e:
        sys.exit(f"extract_lut: '{src}': {e}")
    entries = [e for e in table.get("entries", []) if e.get("model") == model]
    if not entries:
        models = sorted({e.get("model") for e in table.get("entries", [])})
        sys.exit(f"extract_lut: '{src}' has no entries of model '{model}' (it has: {', '.join(models)})")
    full = [e for e in entries if e.get("path") == "full"]
    if not full:
        sys.exit(f"extract_lut: '{src}' has no 'full' entry of model '{model}' to normalize to")
    ref = full[0]
    front = pareto(entries)
    kept = [e for i, e in enumerate(entries) if i in front or e is ref]
    front_ids = {id(entries[i]) for i in front}
    for e in kept:
        e["pareto"] = id(e) in front_ids
        e["miou_normalized"] = e["miou"] / ref["miou"]
        e["model_dir"] = "."
    kept.sort(key=lambda e: e["latency_ms"])
    table["entries"] = kept
    table["reference"] = {"model": model, "path": "full", "latency_ms": ref["latency_ms"], "miou": ref["miou"]}
    table["extracted_from"] = src
    if isinstance(table.get("builds"), dict):  # how each model was built (engine/lut_build.hpp): this one's
        table["builds"] = {k: v for k, v in table["builds"].items() if k == model}
    with open(out, "w") as f:
        json.dump(table, f, indent=1)
        f.write("\n")
    print(f"{out}: {len(kept)} entries of {model} ({sum(e['pareto'] for e in kept)} on its front), "
          f"{kept[0]['latency_ms']:.1f}-{kept[-1]['latency_ms']:.1f} ms, mIoU {min(e['miou'] for e in kept):.4f}-"
          f"{max(e['miou'] for e in kept):.4f}")


if __name__ == "__main__":
    main(sys.argv)
