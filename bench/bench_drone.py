"""Benchmark of drone change detection on SYNTHETIC pairs (there is no real drone pair with truth offline).

Two parts, each pair generated once into bench/out/ under a key of EVERY generator parameter
(tests/support/drone_scenes.SceneSpec.key), so a changed parameter never reuses a stale pair:

- conditions: each condition of drone_scenes.CONDITIONS on its own and all at once, on held-out
  seeds, with DSMs and RGB-only: object F1 (IoU >= 0.5), false candidates on the no-change pair,
  registration residual (reported and true), refusals;
- speed: at each --sizes, in a fresh child process, a plain block-wise read of the inputs, then
  detection with DSMs (--rgb-only: without); ratio detect/read and peak RSS. With --ingested the inputs are first
  written as ingest writes its analysis COGs (RGB with an internal mask), what a real job reads.

    python -m bench.bench_drone --condition-size 1000 --seeds 2 --sizes 5000 [--held-out fresh]
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

import rasterio

from drone.errors import DroneError
from drone.ingest import _write_cog
from drone.pipeline import GDAL_CACHE_MB, detect_changes
from tests.support.drone_scenes import (BLIND_2026_11_30_SEEDS, CONDITIONS, CRS_EPSG, FRESH_HELD_OUT_SEEDS, HARD_CASES,
                                       HELD_OUT_SEEDS, LATE_HELD_OUT_SEEDS, TUNING_SEEDS, SceneSpec, scene_spec,
                                       write_scene_pair)
from tests.support.drone_scoring import object_scores, registration_error_px

OUT = Path(__file__).parent / "out"


def cached_pair(spec: SceneSpec):
    folder = OUT / f"drone_{spec.key()}"
    if not (folder / "pair.pkl").exists():
        pair = write_scene_pair(folder, spec)
        (folder / "pair.pkl").write_bytes(pickle.dumps(pair))
    return folder, pickle.loads((folder / "pair.pkl").read_bytes())


def plain_read_seconds(paths: list[Path]) -> float:
    """Decode every block of every input once, sequentially: the floor any detection has to pay."""
    start = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
        for path in paths:
            with rasterio.open(path) as src:
                for _, window in src.block_windows(1):
                    src.read(window=window)
    return time.perf_counter() - start


def run_condition(name: str, seed: int, size: int, changes: bool = True) -> dict:
    spec = scene_spec(name, size_px=size, seed=seed, plant_changes=changes)
    folder, pair = cached_pair(spec)
    row = {"condition": name if changes else f"no change ({name})", "seed": seed, "truth": len(pair.truth)}
    for mode in ("dsm", "rgb"):
        dsm = (pair.before_dsm, pair.after_dsm) if mode == "dsm" else (None, None)
        try:
            result = detect_changes(pair.before_rgb, pair.after_rgb, *dsm, change_map_path=folder / f"cm_{mode}.tif")
        except DroneError as exc:
            row[mode] = {"refused": str(exc)}
            continue
        s = object_scores([c.geometry for c in result.candidates], pair.truth, ignore=pair.ignore)
        reg = result.registration
        true_error = None
        if spec.after_epsg == CRS_EPSG:
            true_error = float(registration_error_px(reg.correction, pair.true_correction, pair.overlap.bounds,
                                                     reg.pixel_size_m).max())
        row[mode] = dict(tp=s.true_positives, fp=s.false_positives, fn=s.false_negatives, f1=round(s.f1, 3),
                         residual_px=round(reg.residual_px, 3), true_error_px=true_error and round(true_error, 3),
                         overlap=round(reg.overlap_share, 2), inliers=f"{reg.inliers}/{reg.tie_points}")
    return row


def as_ingested(path: Path, kind: str) -> Path:
    """The analysis COG ingest would write of `path` (made once, next to it)."""
    target = path.with_name(f"ingested_{path.name}")
    if not target.exists():
        _write_cog(str(path), target, kind)
    return target


def measure_speed(size: int, ingested: bool, rgb_only: bool) -> dict:
    """Runs in a child process so peak RSS belongs to this size alone."""
    _, pair = cached_pair(scene_spec("all", size_px=size, gsd_m=0.05, seed=HELD_OUT_SEEDS[0], overlap_shift=0.0,
                                     after_gsd_m=0.05))
    inputs = [pair.before_rgb, pair.after_rgb, pair.before_dsm, pair.after_dsm]
    if ingested:
        inputs = [as_ingested(path, kind) for path, kind in zip(inputs, ("rgb", "rgb", "dsm", "dsm"))]
    if rgb_only:
        inputs = inputs[:2]
    read_s = plain_read_seconds(inputs)
    start = time.perf_counter()
    result = detect_changes(*inputs, change_map_path=pair.before_rgb.parent / "cm_speed.tif")
    detect_s = time.perf_counter() - start
    s = object_scores([c.geometry for c in result.candidates], pair.truth, ignore=pair.ignore)
    return dict(size_px=size, read_s=round(read_s, 2), detect_s=round(detect_s, 2), ratio=round(detect_s / read_s, 2),
                f1=round(s.f1, 3), residual_px=round(result.registration.residual_px, 3),
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def pool_all(seeds, size: int) -> None:
    """Each all-conditions pair holds only 1-3 new structures in its overlap: pooled over many seeds."""
    totals = {"dsm": [0, 0, 0], "rgb": [0, 0, 0]}
    for seed in seeds:
        row = run_condition("all", seed, size)
        for mode, total in totals.items():
            m = row[mode]
            if "refused" not in m:
                total[0], total[1], total[2] = total[0] + m["tp"], total[1] + m["fp"], total[2] + m["fn"]
            print(f"all seed {seed} {mode}: {_cell(m)}", flush=True)
    for mode, (tp, fp, fn) in totals.items():
        print(f"pooled {mode}: TP {tp} FP {fp} FN {fn} F1 {2 * tp / max(1, 2 * tp + fp + fn):.3f}")


HARD_CASE_SEEDS = {"tuning": TUNING_SEEDS, "declared": HELD_OUT_SEEDS, "blind": BLIND_2026_11_30_SEEDS}


def hard_cases(seeds, size: int, condition: str) -> None:
    """Each RGB-only hard case of drone_scenes.HARD_CASES on its own, RGB-only, pooled over `seeds`.

    Per case: the case's own objects (new roofs of that kind found at IoU >= 0.5, or distractors that
    became a candidate) and the pair's object scores overall.
    """
    print(f"| hard case ({condition}, {size} px, seeds {seeds[0]}-{seeds[-1]}) | case objects | found / reported "
          "| all new structures TP/FP/FN | F1 |")
    print("|---|---|---|---|---|")
    for case in HARD_CASES:
        counts = {}
        tp = fp = fn = 0
        for seed in seeds:
            folder, pair = cached_pair(scene_spec(condition, size_px=size, seed=seed, hard_cases=(case,)))
            result = detect_changes(pair.before_rgb, pair.after_rgb, change_map_path=folder / "cm_rgb.tif")
            detected = [c.geometry for c in result.candidates]
            s = object_scores(detected, pair.truth, ignore=pair.ignore)
            tp, fp, fn = tp + s.true_positives, fp + s.false_positives, fn + s.false_negatives
            for name, footprints in pair.hard.items():
                total, hit = counts.get(name, (0, 0))
                if name.endswith("_distractors"):
                    hits = sum(any(d.intersects(f) for d in detected) for f in footprints)
                else:
                    hits = object_scores(detected, footprints).true_positives
                counts[name] = (total + len(footprints), hit + hits)
        for name, (total, hit) in counts.items():
            print(f"| {case} | {name} | {hit} / {total} | {tp}/{fp}/{fn} | {2 * tp / max(1, 2 * tp + fp + fn):.3f} |",
                  flush=True)


def _cell(m: dict) -> str:
    if "refused" in m:
        return "REFUSED"
    return f"{m['f1']:.2f} ({m['tp']}/{m['fp']}/{m['fn']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--condition-size", type=int, default=1000, help="before raster side for the condition table")
    parser.add_argument("--seeds", type=int, default=2, help="held-out seeds per condition")
    parser.add_argument("--sizes", type=int, nargs="*", default=[5000], help="sides for the speed runs")
    parser.add_argument("--held-out", choices=("declared", "fresh", "late"), default="declared",
                        help="seed set of the table: HELD_OUT_SEEDS (100-119) or FRESH_HELD_OUT_SEEDS (200-219, "
                             "declared before the RGB-only detector was tuned again) or LATE_HELD_OUT_SEEDS (300-319)")
    parser.add_argument("--pool-all", type=int, nargs=2, metavar=("FROM", "TO"),
                        help="instead of the table: the all-conditions pair on seeds FROM..TO, F1 pooled")
    parser.add_argument("--ingested", action="store_true",
                        help="speed runs on the inputs as ingest writes them (analysis COGs with internal masks)")
    parser.add_argument("--hard-cases", choices=tuple(HARD_CASE_SEEDS),
                        help="instead of the table: the RGB-only hard cases on TUNING_SEEDS, HELD_OUT_SEEDS or "
                             "BLIND_2026_11_30_SEEDS (run once, for the final figures); --seeds of them")
    parser.add_argument("--hard-condition", default="baseline", choices=tuple(CONDITIONS),
                        help="condition the hard cases are painted on")
    parser.add_argument("--rgb-only", action="store_true",
                        help="speed runs on the two orthophotos alone (no DSMs): the plain read is of those two")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_speed(args.child, args.ingested, args.rgb_only)))
        return
    if args.hard_cases:
        hard_cases(HARD_CASE_SEEDS[args.hard_cases][:args.seeds], args.condition_size, args.hard_condition)
        return
    if args.pool_all:
        pool_all(range(args.pool_all[0], args.pool_all[1] + 1), args.condition_size)
        return
    print("| condition | seed | truth | F1 with DSM (TP/FP/FN) | F1 RGB-only (TP/FP/FN) | residual px (DSM/RGB) "
          "| true error px | overlap | inliers |")
    print("|---|---|---|---|---|---|---|---|---|")
    seeds = {"declared": HELD_OUT_SEEDS, "fresh": FRESH_HELD_OUT_SEEDS, "late": LATE_HELD_OUT_SEEDS}[args.held_out]
    rows = [(name, seed, True) for name in CONDITIONS for seed in seeds[:args.seeds]]
    rows += [("all", seed, False) for seed in seeds[10:10 + args.seeds]]
    rows += [("sun", seed, False) for seed in seeds[10:10 + args.seeds]]
    for name, seed, changes in rows:
        r = run_condition(name, seed, args.condition_size, changes)
        d, g = r["dsm"], r["rgb"]
        res = "/".join(str(m.get("residual_px", "-")) for m in (d, g))
        print(f"| {r['condition']} | {seed} | {r['truth']} | {_cell(d)} | {_cell(g)} | {res} | "
              f"{d.get('true_error_px', '-')} | {d.get('overlap', '-')} | {d.get('inliers', '-')} |", flush=True)
    for size in args.sizes:
        child = subprocess.run([sys.executable, "-m", "bench.bench_drone", "--child", str(size),
                                *(["--ingested"] if args.ingested else []), *(["--rgb-only"] if args.rgb_only else [])],
                               capture_output=True, text=True, check=True)
        row = json.loads(child.stdout.strip().splitlines()[-1])
        inputs = ("RGB only" if args.rgb_only else "DSM") + (", ingested COGs" if args.ingested else "")
        print(f"speed {size}x{size} px (all conditions, {inputs}): read {row['read_s']} s, detect {row['detect_s']} s, "
              f"ratio {row['ratio']}, peak RSS {row['peak_rss_mb']} MB, F1 {row['f1']}, "
              f"residual {row['residual_px']} px", flush=True)


if __name__ == "__main__":
    main()
