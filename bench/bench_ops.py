"""Sensor readings through the API at 10× the city's rate (6,371 covers once a minute ≈ 106/s → 1,060/s)
with reading-to-alarm latency, beside a baseline in the same run: the same readings COPYed straight
into the readings table (no HTTP, no validation, no rules). Prints ratios; figures go to bench/RESULTS.md.

    .venv/bin/python bench/bench_ops.py [--seconds 15] [--rate 1060] [--batch 106]

Needs the demo city in the configured database (`cityops demo`). Each second one cover's tilt
breaches for two readings in one batch (the displacement rule holds for 2 readings), so an alarm and
a case are committed with that batch: its response time is the reading-to-alarm latency.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import psycopg
from psycopg.rows import dict_row

from bench.servers import free_port, running
from gis.db import conninfo, open_connection
from gis.keys import Principal, create_key
from gis.settings import get_settings, settings_of
from ops import readings
from ops.settings import OpsSettings

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
NORMAL = {"tilt_deg": 2.0, "lid_open": 0.0, "water_level_cm": 8.0, "methane_ppm": 40.0, "battery_pct": 90.0, "signal_dbm": -80.0}


def streams(info: str) -> tuple[list[tuple[int, str]], list[int]]:
    with open_connection(info) as conn:
        rows = conn.execute("SELECT id, observed_property FROM city.datastream ORDER BY objcode, observed_property").fetchall()
        tilts = conn.execute("SELECT d.id FROM city.datastream d JOIN city.manhole_sensor s USING (objcode) "
                             "WHERE d.observed_property = 'tilt_deg' AND s.state = 'normal' "
                             "AND NOT EXISTS (SELECT 1 FROM city.alarm a WHERE a.objcode = s.objcode AND a.status <> 'cleared') "
                             "ORDER BY random() LIMIT 500").fetchall()
    return [(r["id"], r["observed_property"]) for r in rows], [r["id"] for r in tilts]


def batch_of(all_streams, offset: int, size: int, at: datetime, breach: int | None) -> list[dict]:
    chosen = [all_streams[(offset + i) % len(all_streams)] for i in range(size)]
    body = [{"Datastream": {"@iot.id": sid}, "components": ["phenomenonTime", "result"],
             "dataArray": [[at.isoformat(), NORMAL[prop]]]} for sid, prop in chosen]
    if breach is not None:
        body.append({"Datastream": {"@iot.id": breach}, "components": ["phenomenonTime", "result"],
                     "dataArray": [[(at - timedelta(seconds=1)).isoformat(), 25.0], [at.isoformat(), 26.0]]})
    return body


async def paced(base: str, key: str, all_streams, breaching: list[int], seconds: float, rate: int, size: int) -> dict:
    interval = size / rate
    latencies, alarm_latencies, sent = [], [], 0
    async with httpx.AsyncClient(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
        async def post(body, is_alarm):
            nonlocal sent
            started = time.perf_counter()
            response = await client.post("/sta/v1.1/CreateObservations", json=body)
            response.raise_for_status()
            elapsed = time.perf_counter() - started
            (alarm_latencies if is_alarm else latencies).append(elapsed)
            sent += sum(len(b["dataArray"]) for b in body)

        tasks, begin, k = [], time.perf_counter(), 0
        batches_per_s = max(1, round(1 / interval))
        while time.perf_counter() - begin < seconds:
            breach = breaching[k // batches_per_s % len(breaching)] if k % batches_per_s == 0 else None
            tasks.append(asyncio.create_task(post(batch_of(all_streams, k * size, size, datetime.now(timezone.utc), breach), breach is not None)))
            k += 1
            await asyncio.sleep(max(0.0, begin + k * interval - time.perf_counter()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    return {"rate": sent / elapsed, "p95": float(np.percentile(latencies, 95)), "alarm_p95": float(np.percentile(alarm_latencies, 95)),
            "alarm_max": max(alarm_latencies), "alarms": len(alarm_latencies)}


def direct_ingest(info: str, all_streams, batches: int, size: int) -> dict:
    """The same pipeline (validation, COPY, latest values, rules) called in-process on one connection:
    what the API adds on top is HTTP, JSON and the scheduler of a loaded machine."""
    async def run() -> list[float]:
        async with await psycopg.AsyncConnection.connect(info, row_factory=dict_row, autocommit=True) as conn:
            principal = Principal(key_id=0, label="bench", role="device", districts=())
            times = []
            for k in range(batches):
                body = batch_of(all_streams, (k + 7919) * size, size, datetime.now(timezone.utc), None)
                started = time.perf_counter()
                await readings.ingest(conn, principal, readings.parse_batches(body), settings_of(OpsSettings))
                times.append(time.perf_counter() - started)
            return times
    times = asyncio.run(run())
    return {"rate": size * len(times) / sum(times), "p95": float(np.percentile(times, 95))}


def copy_baseline(info: str, all_streams, readings: int) -> float:
    at = datetime.now(timezone.utc)
    with open_connection(info) as conn:
        started = time.perf_counter()
        with conn.cursor().copy("COPY city.sensor_reading (datastream_id, phenomenon_time, result) FROM STDIN") as copy:
            for i in range(readings):
                sid, prop = all_streams[i % len(all_streams)]
                copy.write_row((sid, at + timedelta(microseconds=i), NORMAL[prop]))  # one reading per stream and time
        elapsed = time.perf_counter() - started
        conn.rollback()
    return readings / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rate", type=int, default=1060)
    parser.add_argument("--batch", type=int, default=106)
    args = parser.parse_args()
    info = conninfo(get_settings())
    with open_connection(info) as conn:
        key, _ = create_key(conn, "device", [], "bench_ops")
        conn.commit()
    all_streams, breaching = streams(info)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--log-level", "warning", "--port", str(port)]
    with running("cityops", command, {"CITYOPS_DATABASE_URL": info}, port, log_dir=OUT) as base:
        result = asyncio.run(paced(base, key, all_streams, breaching, args.seconds, args.rate, args.batch))
    direct = direct_ingest(info, all_streams, 100, args.batch)
    baseline = copy_baseline(info, all_streams, int(args.rate * args.seconds))
    print(f"readings through the API: {result['rate']:,.0f}/s (asked {args.rate:,}/s, batches of {args.batch}) "
          f"p95 batch {result['p95'] * 1000:.0f} ms")
    print(f"reading-to-alarm (alarm and case committed with the batch): p95 {result['alarm_p95'] * 1000:.0f} ms, "
          f"max {result['alarm_max'] * 1000:.0f} ms over {result['alarms']} alarms")
    print(f"the same pipeline in-process, one connection, sequential: {direct['rate']:,.0f} readings/s, "
          f"p95 batch {direct['p95'] * 1000:.0f} ms")
    print(f"baseline raw COPY into city.sensor_reading: {baseline:,.0f}/s; API pipeline uses "
          f"{args.rate / baseline:.1%} of raw COPY capacity at the asked rate")


if __name__ == "__main__":
    main()
