"""Citizen reports: the duplicate check ("open reports of this item within 50 m") with a million
past reports, against the same query with its index switched off (the baseline); and Open311
submissions per second with photos, against the same submissions without photos, on a live
uvicorn. Prints ratios and the figures for bench/RESULTS.md.

    .venv/bin/python -m bench.bench_reports [--reports 1000000] [--checks 500] [--seconds 15] [--concurrency 8] [--drop]

Works in its own database `cityops_bench_reports` (the demo city plus generated past reports, kept
between runs unless --drop, so a rerun starts in seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psycopg
from PIL import Image
from psycopg.rows import dict_row

from bench.servers import free_port, running
from gis import migrate, provision
from gis.db import open_connection
from gis.settings import get_settings
from layers.demo.load import load_demo
from ops.open311 import SERVICES
from ops.report_settings import ReportSettings
from ops.reports import nearby_open

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DATABASE = "cityops_bench_reports"

# Past reports, set-wise: one case per report (98 % closed, as the seed city), each at a unit grid's
# point jittered by up to ±40 m, items in turn, spread over the last year.
PAST_CASES_SQL = """
WITH g AS (SELECT array_agg(bgcode ORDER BY bgcode) AS code, array_agg(district_code ORDER BY bgcode) AS district,
                  array_agg(ST_X(ST_PointOnSurface(geom)) ORDER BY bgcode) AS x,
                  array_agg(ST_Y(ST_PointOnSurface(geom)) ORDER BY bgcode) AS y, count(*)::int AS n
           FROM city.unit_grid),
s AS (SELECT i, 1 + ((i::bigint * 7919) %% g.n)::int AS k, now() - make_interval(hours => (i %% 8760)) AS at FROM g, generate_series(1, %(count)s) AS i)
INSERT INTO city.case_file (case_no, kind, event_class_code, district_code, bgcode, source, state, reported_at,
                            filed_at, closed_at, deadline_at, geom)
SELECT 'BENCH' || lpad(s.i::text, 10, '0'), 'event', (%(classes)s::text[])[1 + s.i %% 15], g.district[s.k], g.code[s.k],
       'public', CASE WHEN s.i %% 50 = 0 THEN 'dispatched' ELSE 'closed' END, s.at, s.at,
       CASE WHEN s.i %% 50 = 0 THEN NULL ELSE s.at + interval '3 hours' END, s.at + interval '24 hours',
       ST_SetSRID(ST_MakePoint(g.x[s.k] + (random() - 0.5) * 0.0009, g.y[s.k] + (random() - 0.5) * 0.0007), 4490)
FROM s, g
"""
PAST_REPORTS_SQL = """
INSERT INTO city.citizen_report (token, service_code, event_class_code, case_id, review, description, declared_crs,
                                 geom, public_geom, bgcode, district_code, requested_at, updated_at)
SELECT 'bench-' || f.id, (%(codes)s::text[])[1 + substr(f.case_no, 6)::int %% 15], f.event_class_code, f.id, 'accepted',
       '历史上报', 'wgs84', f.geom, f.geom, f.bgcode, f.district_code, f.reported_at, f.reported_at
FROM city.case_file f WHERE f.case_no LIKE 'BENCH%%'
"""


def prepare(count: int) -> str:
    settings = get_settings()
    provision.start_server(settings)
    info = provision.create_database(settings, DATABASE)
    migrate.upgrade(info)
    with open_connection(info) as conn:
        if not conn.execute("SELECT count(*) AS n FROM city.unit_grid").fetchone()["n"]:
            print("loading the demo city …", flush=True)
            load_demo(conn, scale=1)
            conn.commit()
        have = conn.execute("SELECT count(*) AS n FROM city.citizen_report WHERE token LIKE 'bench-%'").fetchone()["n"]
        if have != count:
            started = time.perf_counter()
            print(f"generating {count:,} past reports and their cases (set-wise) …", flush=True)
            conn.execute("DELETE FROM city.citizen_report WHERE token LIKE 'bench-%'")
            conn.execute("DELETE FROM city.case_file WHERE case_no LIKE 'BENCH%'")
            codes = [s.code for s in SERVICES]
            classes = [s.event_class_code for s in SERVICES]
            conn.execute("SELECT setseed(0.18)")
            conn.execute(PAST_CASES_SQL, {"count": count, "classes": classes})
            print(f"  cases written in {time.perf_counter() - started:,.0f} s", flush=True)
            conn.execute(PAST_REPORTS_SQL, {"codes": codes})
            conn.commit()
            print(f"  reports written in {time.perf_counter() - started:,.0f} s", flush=True)
        conn.execute("ANALYZE city.citizen_report")
        conn.execute("ANALYZE city.case_file")
        conn.commit()
    return info


def _probes(info: str, checks: int) -> list[tuple[str, float, float]]:
    """Where citizens submit: near past reports (within ~30 m), each with its item."""
    with open_connection(info) as conn:
        rows = conn.execute("SELECT service_code, ST_X(geom) AS x, ST_Y(geom) AS y FROM city.citizen_report "
                            "TABLESAMPLE SYSTEM (1) REPEATABLE (7) LIMIT %s", [checks]).fetchall()
    rng = np.random.default_rng(3)
    return [(r["service_code"], r["x"] + rng.uniform(-3e-4, 3e-4), r["y"] + rng.uniform(-2.5e-4, 2.5e-4)) for r in rows]


async def _timed_checks(info: str, probes: list, *, index: bool) -> tuple[np.ndarray, int]:
    settings = ReportSettings()
    times, found = [], 0
    async with await psycopg.AsyncConnection.connect(info, row_factory=dict_row, autocommit=True) as conn:
        if not index:
            await conn.execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
        for code, x, y in probes:
            started = time.perf_counter()
            found += len(await nearby_open(conn, code, x, y, settings, "http://bench/media"))
            times.append((time.perf_counter() - started) * 1000)
    return np.array(times), found


def duplicate_check(info: str, checks: int) -> None:
    probes = _probes(info, checks)
    with open_connection(info) as conn:
        total = conn.execute("SELECT count(*) AS n FROM city.citizen_report").fetchone()["n"]
    ours, found = asyncio.run(_timed_checks(info, probes, index=True))
    baseline, found_baseline = asyncio.run(_timed_checks(info, probes[:5], index=False))
    print(f"\nduplicate check, {total:,} past reports, {len(probes)} checks ({found} open duplicates suggested):")
    print(f"  indexed:  p50 {np.percentile(ours, 50):6.2f} ms  p95 {np.percentile(ours, 95):6.2f} ms  max {ours.max():6.2f} ms")
    print(f"  baseline (no index, {len(baseline)} checks): p50 {np.percentile(baseline, 50):8.1f} ms  "
          f"→ {np.percentile(baseline, 50) / np.percentile(ours, 50):,.0f}× slower")
    print(f"  target p95 < 100 ms: {'met' if np.percentile(ours, 95) < 100 else 'NOT met'}")


def _phone_photo() -> bytes:
    """A 4000×3000 photo with texture, as a phone takes it (≈2–3 MB JPEG)."""
    rng = np.random.default_rng(5)
    small = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((4000, 3000), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def submissions(info: str, seconds: float, concurrency: int, workers: int) -> None:
    with open_connection(info) as conn:
        points = conn.execute("SELECT ST_X(ST_PointOnSurface(geom)) AS x, ST_Y(ST_PointOnSurface(geom)) AS y "
                              "FROM city.unit_grid ORDER BY md5(bgcode) LIMIT 2000").fetchall()
    photo = _phone_photo()
    port = free_port()
    env = {"CITYOPS_DATABASE_URL": info, "CITYOPS_REPORTS_DEVICE_LIMIT": "1000000", "CITYOPS_REPORTS_IP_LIMIT": "1000000"}
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--log-level", "warning",
               "--workers", str(workers), "--port", str(port)]
    with running("cityops-reports", command, env, port, log_dir=OUT) as base:
        print(f"\nOpen311 submissions, {concurrency} clients, {workers} workers, {seconds:.0f} s each "
              f"(photo {len(photo) / 1e6:.1f} MB, 4000×3000):")
        rates = {}
        for label, with_photo in (("without photo", False), ("with photo", True)):
            counter = {"ok": 0, "errors": 0}
            lock = threading.Lock()
            stop = time.monotonic() + seconds

            def client(worker: int) -> None:
                with httpx.Client(timeout=60) as http:
                    i = worker
                    while time.monotonic() < stop:
                        p = points[i % len(points)]
                        i += concurrency
                        files = [("media", ("p.jpg", photo, "image/jpeg"))] if with_photo else None
                        service = SERVICES[i % len(SERVICES)]
                        required = {f"attribute[{a.code}]": a.values[0][0] for a in service.attributes if a.required}
                        response = http.post(f"{base}/open311/v2/requests.json", files=files, data={
                            "service_code": service.code, "lat": str(p["y"]), "long": str(p["x"]),
                            "description": "bench", **required})
                        with lock:
                            if response.status_code == 200:
                                counter["ok"] += 1
                            else:
                                counter["errors"] += 1
                                counter.setdefault("first_error", response.text[:200])

            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(client, range(concurrency)))
            elapsed = time.perf_counter() - started
            rates[label] = counter["ok"] / elapsed
            print(f"  {label:<14} {rates[label]:7.1f} submissions/s  ({counter['ok']:,} accepted, {counter['errors']} errors)"
                  + (f"; first error: {counter['first_error']}" if counter["errors"] else ""))
        print(f"  photos cost: {rates['with photo'] / max(rates['without photo'], 1e-9):.2f}× the rate without; target 200/s with photos: "
              f"{'met' if rates['with photo'] >= 200 else 'NOT met'} on this machine ({os.cpu_count()} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--drop", action="store_true", help="drop the bench database at the end")
    args = parser.parse_args()
    info = prepare(args.reports)
    duplicate_check(info, args.checks)
    submissions(info, args.seconds, args.concurrency, args.workers)
    if args.drop:
        provision.drop_database(get_settings(), DATABASE)


if __name__ == "__main__":
    main()
