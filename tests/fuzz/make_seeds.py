#!/usr/bin/env python3
"""Builds the seed corpora under tests/fuzz/corpus/<target>/ from the real files: the shared
fixtures and models (../shared), the bundled model (data/models), and CamVid frames and labels.
Every seed stays small (< 64 KiB; most < 4 KiB) so the fuzzers mutate quickly.

Usage: python3 tests/fuzz/make_seeds.py [--shared DIR] [--jpeg-tool build-fuzz/seed_jpeg]
Standard library only. Without --jpeg-tool the JPEG seeds already in the corpus are kept as they are.
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
LIMIT = 64 * 1024


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < LIMIT, (target, name, len(data))
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------------ safetensors
def st_read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return header, data


def st_bytes(header, blobs, pad=True):
    """header: name -> {dtype, shape}; blobs: name -> bytes. Offsets laid out in name order."""
    h, off = {}, 0
    for k in sorted(blobs):
        h[k] = dict(header[k], data_offsets=[off, off + len(blobs[k])])
        off += len(blobs[k])
    if "__metadata__" in header:
        h["__metadata__"] = header["__metadata__"]
    text = json.dumps(h, separators=(",", ":"))
    if pad:
        text += " " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + b"".join(blobs[k] for k in sorted(blobs))


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def safetensors_seeds(shared):
    files = sorted(
        os.path.join(dp, f)
        for base in (os.path.join(shared, "fixtures"), os.path.join(ROOT, "data", "models"))
        for dp, _, fs in os.walk(base)
        for f in fs
        if f.endswith(".safetensors")
    )
    for path in files:
        header, data = st_read(path)
        stem = os.path.basename(os.path.dirname(path)) + "_" + os.path.basename(path)[: -len(".safetensors")]
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}

        def blob(k):
            b, e = tensors[k]["data_offsets"]
            return data[b:e]

        # 1. A valid file of the smallest real tensors (every dtype the file has), real bytes.
        small = sorted(tensors, key=lambda k: (tensors[k]["data_offsets"][1] - tensors[k]["data_offsets"][0], k))
        pick, total = [], 0
        for k in small:
            size = tensors[k]["data_offsets"][1] - tensors[k]["data_offsets"][0]
            if len(pick) >= 6 or total + size > 2048:
                break
            pick.append(k)
            total += size
        if pick:
            write("safetensors", stem + "_small.safetensors", st_bytes(header, {k: blob(k) for k in pick}))
        # 2. The larger tensors cut to their first elements (the real dtype and leading values).
        big = [k for k in small if k not in pick][:4]
        if big:
            hdr, blobs = dict(header), {}
            for k in big:
                t = tensors[k]
                esize = (tensors[k]["data_offsets"][1] - tensors[k]["data_offsets"][0]) // max(numel(t["shape"]), 1)
                keep = min(numel(t["shape"]), 16)
                hdr[k] = {"dtype": t["dtype"], "shape": [keep]}
                blobs[k] = blob(k)[: keep * esize]
            write("safetensors", stem + "_cut.safetensors", st_bytes(hdr, blobs))
        # 3. The real header with the data section truncated (a refused file: offsets past the end).
        n = struct.unpack("<Q", open(path, "rb").read(8))[0]
        raw = open(path, "rb").read(8 + n + 256)
        if len(raw) < LIMIT:
            write("safetensors", stem + "_truncated.safetensors", raw)

    # 4. Every dtype once, values from a real bias (b0 decode head), unpadded header.
    header, data = st_read(os.path.join(shared, "fixtures", "segformer-b0", "model.safetensors"))
    t = header["decode_head.classifier.bias"]
    vals = struct.unpack("<%df" % numel(t["shape"]), data[t["data_offsets"][0] : t["data_offsets"][1]])[:4]

    def f16(x):
        return struct.pack("<e", x)

    def bf16(x):
        return struct.pack("<f", x)[2:]

    ints = [1, -2, 3, 127]
    kinds = {
        "F64": b"".join(struct.pack("<d", v) for v in vals),
        "F32": b"".join(struct.pack("<f", v) for v in vals),
        "F16": b"".join(f16(v) for v in vals),
        "BF16": b"".join(bf16(v) for v in vals),
        "I64": b"".join(struct.pack("<q", v) for v in ints),
        "I32": b"".join(struct.pack("<i", v) for v in ints),
        "I16": b"".join(struct.pack("<h", v) for v in ints),
        "I8": b"".join(struct.pack("<b", v) for v in ints),
        "U64": b"".join(struct.pack("<Q", abs(v)) for v in ints),
        "U32": b"".join(struct.pack("<I", abs(v)) for v in ints),
        "U16": b"".join(struct.pack("<H", abs(v)) for v in ints),
        "U8": bytes(abs(v) for v in ints),
        "BOOL": bytes([1, 0, 1, 1]),
    }
    hdr = {"__metadata__": {"format": "pt"}}
    blobs = {}
    for dt, b in kinds.items():
        hdr["t_" + dt.lower()] = {"dtype": dt, "shape": [2, 2]}
        blobs["t_" + dt.lower()] = b
    write("safetensors", "all_dtypes.safetensors", st_bytes(hdr, blobs, pad=False))
    hdr = {"scalar": {"dtype": "F32", "shape": []}, "empty": {"dtype": "F32", "shape": [0, 3]}}
    write("safetensors", "scalar_and_empty.safetensors", st_bytes(hdr, {"scalar": kinds["F32"][:4], "empty": b""}))


# ------------------------------------------------------------------ config, path, lut
def config_seeds(shared):
    seen = set()
    for base in (os.path.join(shared, "fixtures"), os.path.join(shared, "models"), os.path.join(ROOT, "data", "models")):
        for d in sorted(os.listdir(base)):
            p = os.path.join(base, d, "config.json")
            if not os.path.isfile(p):
                continue
            data = open(p, "rb").read()
            # Compact form: the same content, fewer bytes for the mutator to wade through.
            compact = json.dumps(json.loads(data), separators=(",", ":")).encode()
            h = hashlib.sha1(compact).hexdigest()
            if h in seen:
                continue
            seen.add(h)
            write("config", d + ".json", compact)


PATH_TEXTS = [
    "",
    "depths=2,3,5,3 fuse_in=1024 pred_in=768 linear0_in=64 skip=0.1,2.0 propagate=1",
    "depths=1,1,2,2 pred_in=128",
    "depths=1,2,2,2 fuse_in=512 propagate=0",
    "depths=2,2,4,2 skip=2.1 bottleneck_in=1024 fpn_out=256 fpn_in=384 pred_in=256",
    "depths=0,1,6,2 skip=2.5 bottleneck_in=2048 fpn_out=512 fpn_in=1 pred_in=1",
    "depths=2,3,4,2 expand=0.5 width=256,512,768,2048",
    "mid=64,96,192,384",
    "width=128,256,768,2048  depths=2,3,4,2 expand=0.5,0.75,1,0.25",
    "expand=0.001",
]
PATH_JSONS = [
    {"depths": [2, 3, 5, 3], "skip": [[0, 1], [2, 0]], "fuse_in": 1024, "pred_in": 768, "linear0_in": 64,
     "propagate": False},
    {"depths": [2, 2, 4, 2], "skip": [[2, 1], [0, 0]], "bottleneck_in": 1024, "fpn_out": 256, "fpn_in": 384,
     "pred_in": 256},
    {"depths": [2, 3, 4, 2], "expand": [0.5, 0.75, 1.0, 0.25], "width": [128, 256, 768, 2048]},
    {"mid": [32]},
    {},
]


def path_seeds():
    for i, t in enumerate(PATH_TEXTS):
        write("path", "text_%02d.txt" % i, t)
    for i, j in enumerate(PATH_JSONS):
        write("path", "json_%02d.json" % i, json.dumps(j, separators=(",", ":")))


def lut_seeds():
    lut = json.load(open(os.path.join(ROOT, "data", "models", "segformer-b0-camvid", "lut.json")))
    lut.pop("sweep", None)  # 20 KB of sweep report: info the reader keeps but does not check
    entries = lut["entries"]
    cut = dict(lut, entries=[entries[0], entries[len(entries) // 2], entries[-1]])
    write("lut", "segformer-b0-camvid_3.json", json.dumps(cut, separators=(",", ":")))
    minimal = {"format": "drt-lut", "version": 1, "machine": {"cpu": "AMD EPYC", "threads": 2},
               "entries": [{k: entries[0][k] for k in ("model", "path", "macs", "latency_ms", "latency_p95_ms",
                                                         "miou", "miou_normalized", "pareto")}]}
    write("lut", "minimal.json", json.dumps(minimal, separators=(",", ":")))


# ------------------------------------------------------------------ images
def png_read(path):
    """8-bit, non-interlaced grey or RGB PNG -> (width, height, channels, rows)."""
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n"
    i, idat = 8, b""
    while i < len(b):
        n, t = struct.unpack(">I4s", b[i : i + 8])
        body = b[i + 8 : i + 8 + n]
        if t == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (0, 2) and interlace == 0, path
        elif t == b"IDAT":
            idat += body
        i += 12 + n
    c = 1 if ctype == 0 else 3
    raw, stride, rows, prev = zlib.decompress(idat), w * c, [], bytearray(w * c)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - c] if x >= c else 0
            up = prev[x]
            ul = prev[x - c] if x >= c else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + up) & 255
            elif f == 3:
                line[x] = (line[x] + (a + up) // 2) & 255
            elif f == 4:
                p = a + up - ul
                pa, pb, pc = abs(p - a), abs(p - up), abs(p - ul)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else up if pb <= pc else ul)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, c, rows


def png_write(w, h, ctype, depth, rows, palette=None):
    def chunk(t, body):
        return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body) & 0xFFFFFFFF)

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
    if palette:
        out += chunk(b"PLTE", palette)
    raw = b"".join(b"\x00" + r for r in rows)
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def image_seeds(shared, jpeg_tool):
    cam = os.path.join(shared, "data", "camvid")
    frames = sorted(os.listdir(os.path.join(cam, "images")))[:2]
    for n, name in enumerate(frames):
        w, h, c, rows = png_read(os.path.join(cam, "images", name))
        x0, y0, cw, ch = 200 + 40 * n, 150, 24, 16  # road, cars and buildings meet around here
        crop = [r[x0 * 3 : (x0 + cw) * 3] for r in rows[y0 : y0 + ch]]
        stem = name[:-4]
        write("image", stem + "_rgb.png", png_write(cw, ch, 2, 8, crop))
        if n == 0:
            grey = [bytes((r[i] * 299 + r[i + 1] * 587 + r[i + 2] * 114) // 1000 for i in range(0, len(r), 3))
                    for r in crop]
            write("image", stem + "_grey.png", png_write(cw, ch, 0, 8, grey))
            write("image", stem + "_grey_alpha.png",
                  png_write(cw, ch, 4, 8, [bytes(v for p in r for v in (p, 255)) for r in grey]))
            write("image", stem + "_rgba.png",
                  png_write(cw, ch, 6, 8, [b"".join(r[i : i + 3] + b"\xff" for i in range(0, len(r), 3)) for r in crop]))
            write("image", stem + "_rgb16.png",
                  png_write(cw, ch, 2, 16, [bytes(v for p in r for v in (p, p)) for r in crop]))
            # 4-bit palette of 16 grey levels.
            pal = b"".join(bytes((17 * i,) * 3) for i in range(16))
            packed = [bytes(((r[i] >> 4) << 4) | (r[i + 1] >> 4) for i in range(0, len(r), 2)) for r in grey]
            write("image", stem + "_palette4.png", png_write(cw, ch, 3, 4, packed, pal))
        lw, lh, lc, lrows = png_read(os.path.join(cam, "labels", name))
        write("image", stem + "_label.png", png_write(cw, ch, 0, 8, [r[x0 : x0 + cw] for r in lrows[y0 : y0 + ch]]))
        if jpeg_tool:
            for q, chans in ((75, 3), (90, 1)) if n == 0 else ((50, 3),):
                out = os.path.join(HERE, "corpus", "image", "%s_q%d_%s.jpg" % (stem, q, "rgb" if chans == 3 else "grey"))
                subprocess.run([jpeg_tool, os.path.join(cam, "images", name), out, str(x0), str(y0), str(cw), str(ch),
                                str(q), str(chans)], check=True)
                assert os.path.getsize(out) < LIMIT


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.environ.get("DRT_SHARED", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--jpeg-tool", help="build-fuzz/seed_jpeg (cmake --build build-fuzz --target seed_jpeg)")
    args = ap.parse_args()
    for target in ("safetensors", "config", "path", "lut", "image"):
        d = os.path.join(HERE, "corpus", target)
        keep_jpeg = target == "image" and not args.jpeg_tool
        if os.path.isdir(d):
            for f in os.listdir(d):
                if not (keep_jpeg and f.endswith(".jpg")):
                    os.remove(os.path.join(d, f))
    safetensors_seeds(args.shared)
    config_seeds(args.shared)
    path_seeds()
    lut_seeds()
    image_seeds(args.shared, args.jpeg_tool)
    for target in sorted(os.listdir(os.path.join(HERE, "corpus"))):
        d = os.path.join(HERE, "corpus", target)
        sizes = [os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)]
        print("%-12s %3d seeds, %6d bytes, largest %5d" % (target, len(sizes), sum(sizes), max(sizes)))


if __name__ == "__main__":
    sys.exit(main())
