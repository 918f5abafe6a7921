"""Drone detection on REAL imagery: figures per case of tests/support/real_scenes.py (test support).

The before epoch is a real Landsat 7 crop (fetched once from the pinned `localtileserver==1.0.0`
wheel into .cache/testdata/), the after epoch the same real image through known acquisition effects,
with a 0.1 m GSD pretended (see tests/support/real_scenes.py). Per case, a no-change pair and one
with SYNTHETIC roofs: the true registration error (and before correction), the detector's residual,
tie points, candidates and object F1; then, with SYNTHETIC roofs only, the roof colours README lists as
missed without a DSM (KNOWN_MISSES: measured, not a target).

    .venv/bin/python -m bench.bench_drone_real
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tests.support.real_scenes import CASES, KNOWN_MISSES, run_case


def main() -> None:
    print("| case | pair | true error px (uncorrected) | residual px | inliers/ties | overlap | candidates "
          "| TP/FP/FN | F1 | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in (CASES | KNOWN_MISSES).items():
            for plant in (False, True) if name in CASES else (True,):
                folder = Path(tmp) / f"{name}_{plant}"
                started = time.perf_counter()
                f = run_case(case, folder, plant)
                seconds = time.perf_counter() - started
                pair = "synthetic roofs" if plant else "no change"
                if f["refused"]:
                    print(f"| {name} | {pair} | refused: {f['refused']} |||||||| {seconds:.1f} |")
                    continue
                s = f["scores"]
                print(f"| {name} | {pair} | {f['true_error_px']:.3f} ({f['uncorrected_error_px']:.0f}) "
                      f"| {f['residual_px']:.3f} | {f['inliers']}/{f['tie_points']} | {f['overlap_share']:.2f} "
                      f"| {f['candidates']} | {s.true_positives}/{s.false_positives}/{s.false_negatives} "
                      f"| {s.f1:.2f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
