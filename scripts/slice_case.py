#!/usr/bin/env python3
"""Keep the first ITEMS batch items of every tensor of a safetensors file (stdlib only).

The reference cases (`case_camvid_val2.safetensors`: `pixel_values` [2,3,360,480] F32,
`logits` [2,11,90,120] F32, `prediction` [2,360,480] I32) hold independent batch items, so the
first item of each tensor is a contiguous prefix of its row-major bytes and the slice is exact.
The `images` metadata entry (comma-separated names, one per item) is cut to match.

    python3 scripts/slice_case.py \
        ../shared/models/segformer-b0-camvid/case_camvid_val2.safetensors \
        data/models/segformer-b0-camvid/case_camvid_val1.safetensors
"""

import argparse
import json
import struct
import sys

DTYPE_SIZE = {
    "F64": 8, "I64": 8, "U64": 8,
    "F32": 4, "I32": 4, "U32": 4,
    "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "I8": 1, "U8": 1, "BOOL": 1,
}


def fail(msg):
    sys.exit("slice_case.py: " + msg)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        fail(f"'{path}' is {len(raw)} bytes, too short for a safetensors header")
    (hlen,) = struct.unpack("<Q", raw[:8])
    if hlen > len(raw) - 8:
        fail(f"'{path}': header length {hlen} exceeds the file size {len(raw)}")
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    return header, raw[8 + hlen:]


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def slice_file(src, dst, items):
    header, data = read_safetensors(src)
    meta = header.pop("__metadata__", None)
    out_header = {}
    chunks = []
    offset = 0
    # Keep the source's tensor order (safetensors writers sort by name; so does this file).
    for name, e in header.items():
        shape, dtype = e["shape"], e["dtype"]
        if dtype not in DTYPE_SIZE:
            fail(f"'{src}': tensor '{name}' has unknown dtype {dtype}")
        if not shape or shape[0] < items:
            fail(f"'{src}': tensor '{name}' has shape {shape}, needs at least {items} batch items")
        begin, end = e["data_offsets"]
        if end - begin != numel(shape) * DTYPE_SIZE[dtype]:
            fail(f"'{src}': tensor '{name}' size does not match dtype {dtype} x shape {shape}")
        new_shape = [items] + list(shape[1:])
        nbytes = numel(new_shape) * DTYPE_SIZE[dtype]
        chunks.append(data[begin:begin + nbytes])  # row-major: the first items are a prefix
        out_header[name] = {"dtype": dtype, "shape": new_shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if meta is not None:
        meta = dict(meta)
        if "images" in meta:
            names = meta["images"].split(",")
            if len(names) < items:
                fail(f"'{src}': metadata 'images' names {len(names)} images, expected at least {items}")
            meta["images"] = ",".join(names[:items])
        out_header = {"__metadata__": meta, **out_header}
    text = json.dumps(out_header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 8)  # align the data section to 8 bytes
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="input safetensors file")
    p.add_argument("dst", help="output safetensors file")
    p.add_argument("--items", type=int, default=1, help="batch items to keep (default 1)")
    a = p.parse_args()
    if a.items < 1:
        fail(f"--items must be >= 1, got {a.items}")
    slice_file(a.src, a.dst, a.items)


if __name__ == "__main__":
    main()
