"""Benchmark of drone change detection on SYNTHETIC pairs (there is no real drone pair with truth offline).

For each size: write the pair once (kept under bench/out/), then in a fresh child process time a
plain block-wise read of the inputs, run detection with DSMs and RGB-only, and report object F1
(IoU >= 0.5), registration residual (reported and true), peak RSS and detection/read time.

    python -m bench.bench_drone --sizes 1000 5000 20000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import rasterio

from tests.support.drone_scoring import object_scores, registration_error_px
from drone.pipeline import GDAL_CACHE_MB, detect_changes
from tests.support.drone_scenes import SceneSpec, write_scene_pair

OUT = Path(__file__).parent / "out"


def plain_read_seconds(paths: list[Path]) -> float:
    """Decode every block of every input once, sequentially: the floor any detection has to pay."""
    start = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
        for path in paths:
            with rasterio.open(path) as src:
                for _, window in src.block_windows(1):
                    src.read(window=window)
    return time.perf_counter() - start


def measure(size: int) -> dict:
    """Runs in a child process so peak RSS belongs to this size alone."""
    folder = OUT / f"drone_{size}"
    meta = json.loads((folder / "pair.json").read_text())
    truth = [__import__("shapely").geometry.shape(f["geometry"])
             for f in json.loads((folder / "synthetic_truth.geojson").read_text())["features"]]
    rgb = [folder / "synthetic_before_rgb.tif", folder / "synthetic_after_rgb.tif"]
    dsm = [folder / "synthetic_before_dsm.tif", folder / "synthetic_after_dsm.tif"]
    row = {"size_px": size, "truth": len(truth)}
    for mode, inputs in (("dsm", rgb + dsm), ("rgb", rgb)):
        read_s = plain_read_seconds(inputs)
        start = time.perf_counter()
        result = detect_changes(*inputs, change_map_path=folder / f"change_{mode}.tif")
        detect_s = time.perf_counter() - start
        scores = object_scores([c.geometry for c in result.candidates], truth)
        with rasterio.open(rgb[0]) as src:
            true_error = registration_error_px(result.registration.correction,
                                               rasterio.Affine(*meta["true_correction"]), src.bounds, 0.05)
        row[mode] = dict(f1=round(scores.f1, 3), precision=round(scores.precision, 3), recall=round(scores.recall, 3),
                         candidates=len(result.candidates), residual_px=round(result.registration.residual_px, 3),
                         true_error_max_px=round(float(true_error.max()), 3), read_s=round(read_s, 2),
                         detect_s=round(detect_s, 2), ratio=round(detect_s / read_s, 2))
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return row


def ensure_pair(size: int) -> None:
    folder = OUT / f"drone_{size}"
    if (folder / "pair.json").exists():
        return
    start = time.perf_counter()
    pair = write_synthetic_pair(folder, SyntheticPairSpec(size_px=size, seed=size))
    (folder / "pair.json").write_text(json.dumps({
        "true_correction": list(pair.true_correction)[:6], "generate_s": round(time.perf_counter() - start, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    for size in args.sizes:
        ensure_pair(size)
        child = subprocess.run([sys.executable, "-m", "bench.bench_drone", "--child", str(size)],
                               capture_output=True, text=True, check=True)
        row = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{size}x{size} px ({row['truth']} planted): peak RSS {row['peak_rss_mb']} MB")
        for mode in ("dsm", "rgb"):
            m = row[mode]
            print(f"  {mode:3}: F1 {m['f1']:.3f} (P {m['precision']:.3f} R {m['recall']:.3f}, {m['candidates']} found) "
                  f"residual {m['residual_px']:.3f} px, true error max {m['true_error_max_px']:.3f} px, "
                  f"read {m['read_s']} s, detect {m['detect_s']} s, ratio {m['ratio']}")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
