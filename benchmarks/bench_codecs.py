"""Codec benchmarks (PERFORMANCE.md): each figure is a ratio to ndarray.copy() of the same
11.2M float32 array, timed side by side (interleaved repeats, median of each). The codecs
split their work over threads (fedsim.codecs.parallel, FEDSIM_CODEC_THREADS); each figure's
raw data also has the same codec on one thread, timed in the same rounds.

    python benchmarks/bench_codecs.py [--quick] [--json PATH]

``run(quick)`` returns {figure: {"value": float, "target": str, "raw": {...}}}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from fedsim.codecs import pack_message, parallel, parse_codec, wire_bytes

N_PARAMS = 11_173_962  # ResNet-18 (CIFAR stem, 10 classes)


def resnet18_shapes(num_classes: int = 10) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of torchvision's ResNet-18 with a 3x3 stem: 62 tensors, 11.17M values."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 3, 3)}

    def bn(prefix: str, c: int) -> None:
        shapes[f"{prefix}.weight"] = (c,)
        shapes[f"{prefix}.bias"] = (c,)

    bn("bn1", 64)
    cin = 64
    for layer, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            shapes[f"{p}.conv1.weight"] = (cout, cin, 3, 3)
            bn(f"{p}.bn1", cout)
            shapes[f"{p}.conv2.weight"] = (cout, cout, 3, 3)
            bn(f"{p}.bn2", cout)
            if block == 0 and cin != cout:
                shapes[f"{p}.downsample.0.weight"] = (cout, cin, 1, 1)
                bn(f"{p}.downsample.1", cout)
            cin = cout
    shapes["fc.weight"] = (num_classes, 512)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def _ratio(fn, x: np.ndarray, repeats: int) -> dict:
    """Median time of fn() over median time of x.copy(), measured interleaved; fn runs with
    the codec's threads (fedsim.codecs.parallel) and, in the same rounds, with one thread."""
    many = parallel.threads()
    fn()  # warm up (allocator, caches, the thread pool)
    x.copy()
    t_fn, t_one, t_copy = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x.copy()
        t1 = time.perf_counter()
        fn()
        t2 = time.perf_counter()
        parallel.set_threads(1)
        fn()
        t3 = time.perf_counter()
        parallel.set_threads(many)
        t_copy.append(t1 - t0)
        t_fn.append(t2 - t1)
        t_one.append(t3 - t2)
    med_fn, med_copy = statistics.median(t_fn), statistics.median(t_copy)
    return {
        "value": med_fn / med_copy,
        "raw": {
            "median_s": med_fn,
            "memcpy_median_s": med_copy,
            "threads": many,
            "one_thread_median_s": statistics.median(t_one),
            "one_thread_ratio": statistics.median(t_one) / med_copy,
            "repeats": repeats,
            "n": x.size,
        },
    }


def wire_efficiency() -> dict:
    """Real wire bytes of a 4-bit ResNet-18 update over the ideal bits/8 plus float32 scales."""
    rng = np.random.default_rng(0)
    codec = parse_codec("q4")
    shapes = resnet18_shapes()
    records = []
    ideal = 0.0
    for name, shape in sorted(shapes.items()):
        x = rng.standard_normal(shape, dtype=np.float32)
        rec, _ = codec.encode(name, x, rng)
        records.append(rec)
        ideal += x.size * 4 / 8 + 8  # 4 bits per value, float32 lo and step per tensor
    frames = pack_message("update", {"round": 1, "sender": 1}, records)
    real = wire_bytes(frames)
    return {
        "value": real / ideal,
        "raw": {
            "wire_bytes": real,
            "ideal_bytes": ideal,
            "tensors": len(shapes),
            "frames": len(frames),
        },
    }


def run(quick: bool = False) -> dict[str, dict]:
    repeats = 5 if quick else 21
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N_PARAMS, dtype=np.float32)
    q4 = parse_codec("q4")
    q4s = parse_codec("q4:stochastic")
    ef = parse_codec("ef(topk:0.01)")
    rec, _ = q4.encode("x", x, rng)
    residual = {"residual": (rng.standard_normal(N_PARAMS, dtype=np.float32) * 0.1)}
    figures = {
        "encode_q4_vs_memcpy": (lambda: q4.encode("x", x, rng), "<= 2.5"),
        "decode_q4_vs_memcpy": (lambda: q4.decode(rec), "<= 2.5"),
        "encode_q4_stochastic_vs_memcpy": (lambda: q4s.encode("x", x, rng), "<= 5.0"),
        "encode_top1pct_ef_vs_memcpy": (lambda: ef.encode("x", x, rng, residual), "<= 12.0"),
    }
    out = {}
    for name, (fn, target) in figures.items():
        out[name] = {**_ratio(fn, x, repeats), "target": target}
    out["wire_efficiency"] = {**wire_efficiency(), "target": "<= 1.01"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args()
    results = run(args.quick)
    for name, r in results.items():
        one = r["raw"].get("one_thread_ratio")
        extra = f"   ({r['raw']['threads']} threads; one thread {one:.3f})" if one else ""
        print(f"{name:34s} {r['value']:8.3f}   target {r['target']}{extra}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
