"""ONNX Runtime int8 anchor for SegFormer-B0/B2 (issue 20; own code).

Rebuilds the fp32 anchor models of ../shared/anchors exactly as its export_onnx.py does (models.py,
torch.manual_seed(0), then segformer_b0 and segformer_b2 in that order, each followed by its torch.randn input;
ONNX opset 13, TorchScript exporter), checks the rebuilt input/output against the anchor's saved
<name>.in.f32 / <name>.out.f32 when given, and quantizes each model with onnxruntime.quantization:
static, QDQ format, per-channel weights (QInt8), QUInt8 activations, MinMax calibration over the CamVid
calibration images (the 40 PNGs of ../shared/data/camvid-calib/images, resized bilinearly to 512x512,
scaled to [0,1], ImageNet mean/std, NCHW float32). ORT's quant_pre_process (symbolic shape inference and
basic graph optimisation) runs first, as ORT recommends for quantize_static.

Needs python3 with torch, onnx, onnxruntime (>= 1.16), numpy and pillow. The project machine has no python
onnx/onnxruntime, so it runs on the device machine; the ONNX files are plain CPU models. Run from the repo root:
  python3 benchmarks/ort_int8/quantize_anchor.py --anchors ANCHORS_DIR --calib IMAGES_DIR \
      [--ref DIR_WITH_in_out_f32] --out OUT_DIR [--models segformer_b2 segformer_b0] [--split-mib 15]
Writes OUT_DIR/<name>_int8.onnx (split into <name>_int8.onnx.part-aa, -ab, ... when larger than --split-mib;
reassemble with `cat <name>_int8.onnx.part-* > <name>_int8.onnx`), OUT_DIR/summary.json (sizes, sha256,
quantized op counts, check vs torch, a 2-thread ORT-python fp32-vs-int8 timing used only as a sanity check).
Timing that is reported is taken on the project machine with onnxruntime-node (benchmarks/compare_anchors.sh
with ORT_INT8=1), which also holds the commands to copy the inputs for the device and reassemble the output.
"""
import argparse
import collections
import hashlib
import json
import os
import sys
import time

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
EXPORT_ORDER = ["segformer_b0", "segformer_b2"]  # export_onnx.py's default order under one manual_seed(0)


def load_image(path, size=512):
    from PIL import Image
    im = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    x = np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0
    return ((x - MEAN) / STD)[None].astype(np.float32)


class CamVidReader:
    """onnxruntime.quantization CalibrationDataReader over a folder of images."""

    def __init__(self, folder, input_name):
        self.files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                            if f.lower().endswith((".png", ".jpg", ".jpeg")))
        if not self.files:
            raise SystemExit(f"no calibration images in {folder}")
        self.input_name = input_name
        self.data = [load_image(f) for f in self.files]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.data):
            return None
        self.i += 1
        return {self.input_name: self.data[self.i - 1]}

    def rewind(self):
        self.i = 0


def export_fp32(anchors, names, work, ref):
    """Rebuild the anchor's torch models in export_onnx.py's seed order and export the requested ones."""
    import torch
    sys.path.insert(0, anchors)
    import models
    info = {}
    torch.manual_seed(0)
    for name in EXPORT_ORDER:
        ctor, shape = models.MODELS[name]
        m = ctor().eval()
        x = torch.randn(*shape)
        if name not in names:
            continue
        path = os.path.join(work, f"{name}.onnx")
        with torch.no_grad():
            kw = dict(opset_version=13, input_names=["input"], output_names=["output"], do_constant_folding=True)
            try:
                torch.onnx.export(m, x, path, dynamo=False, **kw)   # the TorchScript exporter, as the anchor
            except TypeError:                                         # torch without the dynamo flag
                torch.onnx.export(m, x, path, **kw)
            y = m(x)
        xin, yout = x.numpy().astype(np.float32), y.numpy().astype(np.float32)
        d = {"fp32_onnx_bytes": os.path.getsize(path), "torch": torch.__version__}
        if ref:
            fi, fo = os.path.join(ref, f"{name}.in.f32"), os.path.join(ref, f"{name}.out.f32")
            if os.path.exists(fi):
                d["input_vs_anchor_max_abs"] = float(np.abs(np.fromfile(fi, np.float32) - xin.ravel()).max())
            if os.path.exists(fo):
                d["torch_out_vs_anchor_max_abs"] = float(np.abs(np.fromfile(fo, np.float32) - yout.ravel()).max())
        xin.tofile(os.path.join(work, f"{name}.in.f32"))
        yout.tofile(os.path.join(work, f"{name}.out.f32"))
        info[name] = d
        print(name, "fp32 export:", json.dumps(d), flush=True)
    return info


def op_counts(path):
    """Op types of a model; which op types consume a DequantizeLinear output (i.e. were quantized)."""
    import onnx
    g = onnx.load(path, load_external_data=False).graph
    producer = {o: n.op_type for n in g.node for o in n.output}
    ops = collections.Counter(n.op_type for n in g.node)
    quantized = collections.Counter()
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any(producer.get(i) == "DequantizeLinear" for i in n.input):
            quantized[n.op_type] += 1
    return {"ops": dict(ops.most_common()), "quantized_ops": dict(quantized.most_common())}


def session(path, threads, optimized_path=None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def time_session(sess, x, reps):
    feeds = {sess.get_inputs()[0].name: x}
    y = sess.run(None, feeds)[0]
    sess.run(None, feeds)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return y, {"min_ms": round(ts[0], 2), "median_ms": round(ts[len(ts) // 2], 2)}


def write_out(src, out, base, split_mib):
    data = open(src, "rb").read()
    res = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "files": []}
    step = split_mib << 20
    if len(data) <= step:
        open(os.path.join(out, base), "wb").write(data)
        res["files"].append(base)
    else:  # same pieces as `split -b <split_mib>M src base.part-`
        for k in range(0, len(data), step):
            j = k // step
            name = f"{base}.part-{chr(97 + j // 26)}{chr(97 + j % 26)}"
            open(os.path.join(out, name), "wb").write(data[k:k + step])
            res["files"].append(name)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--anchors", required=True, help="folder holding the anchors' models.py")
    ap.add_argument("--calib", required=True, help="folder of calibration images")
    ap.add_argument("--ref", help="folder with the anchor's <name>.in.f32/.out.f32 (checked, optional)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/ortq_work")
    ap.add_argument("--models", nargs="+", default=["segformer_b2", "segformer_b0"])
    ap.add_argument("--split-mib", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of the sanity timing")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.work, exist_ok=True)
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
    summary = {"onnxruntime": ort.__version__, "cpu": f"{cpu[0] if cpu else '?'} x{os.cpu_count()}", "models": {}}
    info = export_fp32(a.anchors, a.models, a.work, a.ref)
    for name in a.models:
        s = summary["models"][name] = dict(info[name])
        fp32 = os.path.join(a.work, f"{name}.onnx")
        pre = os.path.join(a.work, f"{name}.pre.onnx")
        q = os.path.join(a.work, f"{name}_int8.onnx")
        t0 = time.time()
        try:
            quant_pre_process(fp32, pre)
        except Exception as e:  # quantize_static works without it, only less well
            print(f"{name}: quant_pre_process failed ({e!r}); quantizing the raw export", flush=True)
            pre, s["pre_process"] = fp32, f"failed: {e!r}"
        reader = CamVidReader(a.calib, "input")
        quantize_static(pre, q, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        s["calib_images"] = len(reader.files)
        s["quantize_s"] = round(time.time() - t0, 1)
        s.update(op_counts(q))
        s["fp32_pre_ops"] = op_counts(pre)["ops"]
        # what ORT's CPU EP runs after its QDQ fusions (optimisation level 'all', as bench_ort.js)
        opt = os.path.join(a.work, f"{name}_int8.opt.onnx")
        session(q, a.threads, opt)
        s["int8_ort_optimized_ops"] = op_counts(opt)["ops"]
        # check and sanity timing (not the reported number)
        x = np.fromfile(os.path.join(a.work, f"{name}.in.f32"), np.float32).reshape(1, 3, 512, 512)
        ref = np.fromfile(os.path.join(a.work, f"{name}.out.f32"), np.float32).reshape(1, 150, 128, 128)
        y32, t32 = time_session(session(fp32, a.threads), x, a.reps)
        y8, t8 = time_session(session(q, a.threads), x, a.reps)
        s["fp32_ort_vs_torch_max_abs"] = float(np.abs(y32 - ref).max())
        s["int8_vs_torch_max_abs"] = float(np.abs(y8 - ref).max())
        s["torch_out_max_abs"] = float(np.abs(ref).max())
        s["int8_vs_torch_rel_l2"] = float(np.linalg.norm(y8 - ref) / np.linalg.norm(ref))
        s["int8_argmax_agreement"] = float((y8.argmax(1) == ref.argmax(1)).mean())
        s[f"ort_python_{a.threads}t_fp32"], s[f"ort_python_{a.threads}t_int8"] = t32, t8
        s["int8_file"] = write_out(q, a.out, f"{name}_int8.onnx", a.split_mib)
        print(name, json.dumps(s), flush=True)
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    for name, s in summary["models"].items():
        print(f"{name}: fp32 {s['fp32_onnx_bytes'] / 2**20:.1f} MiB -> int8 {s['int8_file']['bytes'] / 2**20:.1f} MiB; "
              f"ORT-python {a.threads}T fp32 {s[f'ort_python_{a.threads}t_fp32']} int8 {s[f'ort_python_{a.threads}t_int8']}; "
              f"int8 vs torch max abs {s['int8_vs_torch_max_abs']:.3g} (|ref| {s['torch_out_max_abs']:.3g}), "
              f"argmax agreement {s['int8_argmax_agreement']:.4f}; Q {s['ops'].get('QuantizeLinear', 0)} "
              f"DQ {s['ops'].get('DequantizeLinear', 0)}; quantized {s['quantized_ops']}")


if __name__ == "__main__":
    main()
