"""Orthophoto upload and `cityops drone ingest`: a COG and a catalogue row, or a 4xx and nothing at all."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from gis.db import open_connection
from tests.conftest import bearer

CITYOPS = [sys.executable, "-m", "api.cli"]


def listing(folder):
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def catalogue_size(client):
    return client.get("/orthophotos").json()["numberReturned"]


def upload(client, key, path, **form):
    with open(path, "rb") as f:
        return client.post("/orthophotos", headers=bearer(key), files={"file": (path.name, f, "image/tiff")},
                           data=form)


def _raster(path, data, transform=None, crs=None):
    kwargs = dict(transform=transform, crs=crs) if crs else {}
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, **kwargs) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def bad_inputs(unchanged_pair, tmp_path_factory):
    _, pair = unchanged_pair
    folder = tmp_path_factory.mktemp("bad")
    whole = pair.before_rgb.read_bytes()
    (folder / "truncated.tif").write_bytes(whole[: len(whole) * 6 // 10])
    (folder / "notes.tif").write_text("this is not a raster\n" * 50)
    texture = np.random.default_rng(1).integers(0, 255, (3, 256, 256), dtype=np.uint8)
    _raster(folder / "plain.tif", texture)
    _raster(folder / "coarse.tif", texture, Affine(50, 0, 618300, 0, -50, 3759960), "EPSG:4548")
    return {
        "truncated.tif": (folder / "truncated.tif", "rgb", "truncated or corrupt"),
        "notes.tif": (folder / "notes.tif", "rgb", "not a raster GDAL can read"),
        "plain.tif": (folder / "plain.tif", "rgb", "no CRS or geotransform"),
        "coarse.tif": (folder / "coarse.tif", "rgb", "ground sample distance 50 m"),
        "dsm_as_rgb": (pair.before_dsm, "rgb", "needs 3 or 4 band(s); this one has 1"),
    }


def test_upload_makes_a_valid_cog_with_footprint_in_4490(client, city_db, keys, unchanged_pair, orthophoto_files):
    spec, pair = unchanged_pair
    answer = upload(client, keys["enforcement"], pair.before_rgb, kind="rgb", captured_on="2026-05-01", name="flight A")
    assert answer.status_code == 201, answer.text
    feature = answer.json()
    props = feature["properties"]
    assert (props["kind"], props["width"], props["band_count"], props["source_crs"]) == (
        "rgb", spec.size_px, 3, "EPSG:4548")
    assert props["gsd_m"] == pytest.approx(spec.gsd_m) and props["captured_on"] == "2026-05-01"
    assert answer.headers["location"].endswith(f"/orthophotos/{feature['id']}")
    assert set(feature["geometry"]) == {"type", "coordinates"}  # RFC 7946: no "crs" member in a geometry
    lon, lat = np.array(feature["geometry"]["coordinates"][0]).mean(axis=0)
    assert lon == pytest.approx(118.28, abs=0.01) and lat == pytest.approx(33.96, abs=0.01)
    with open_connection(city_db) as conn:
        cog_path = conn.execute("SELECT file_path FROM city.orthophoto WHERE id = %s", [feature["id"]]).fetchone()["file_path"]
    assert Path(cog_path).parent == orthophoto_files
    valid, errors, _ = cog_validate(cog_path)
    assert valid, errors
    with rasterio.open(cog_path) as src:
        assert src.overviews(1) and src.crs.to_epsg() == 4548
    assert listing(orthophoto_files / ".staging") == set()  # nothing staged is left: the upload's, or a dead job's


@pytest.mark.parametrize("case", ["truncated.tif", "notes.tif", "plain.tif", "coarse.tif", "dsm_as_rgb"])
def test_bad_upload_is_a_400_and_leaves_nothing_behind(client, keys, bad_inputs, orthophoto_files, case):
    path, kind, reason = bad_inputs[case]
    before_files, before_rows = listing(orthophoto_files), catalogue_size(client)
    answer = upload(client, keys["enforcement"], path, kind=kind)
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["description"]
    assert listing(orthophoto_files) == before_files
    assert catalogue_size(client) == before_rows


def test_upload_needs_an_enforcement_key(client, keys, unchanged_pair):
    _, pair = unchanged_pair
    assert upload(client, "", pair.before_dsm).status_code == 401
    assert upload(client, keys["viewer"], pair.before_dsm, kind="dsm").status_code == 403


def test_cli_ingest_prints_the_id_and_refuses_bad_files_in_one_line(city_db, unchanged_pair, bad_inputs,
                                                                     orthophoto_files):
    _, pair = unchanged_pair
    env = {"CITYOPS_DATABASE_URL": city_db}
    ok = subprocess.run([*CITYOPS, "drone", "ingest", str(pair.after_dsm), "--kind", "dsm", "--captured", "2026-06-01"],
                        capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().isdigit()
    before_files = listing(orthophoto_files)
    bad = subprocess.run([*CITYOPS, "drone", "ingest", str(bad_inputs["truncated.tif"][0])],
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
    assert "truncated" in bad.stderr
    assert listing(orthophoto_files) == before_files


def test_a_16_bit_orthophoto_is_ingested_and_shown_on_the_8_bit_scale(client, keys, unchanged_pair, tmp_path):
    """Some photogrammetry writes 16-bit RGB; the display COG is JPEG, which takes 8 bits (it was written broken)."""
    import io

    import morecantile
    from PIL import Image

    _, pair = unchanged_pair
    with rasterio.open(pair.before_rgb) as src:
        profile, data = src.profile | dict(dtype="uint16", compress="deflate", photometric="RGB"), src.read()
    deep = tmp_path / "sixteen_bit.tif"
    with rasterio.open(deep, "w", **profile) as dst:
        dst.write(data.astype(np.uint16) * 257)
    answer = upload(client, keys["enforcement"], deep, kind="rgb", name="16-bit flight")
    assert answer.status_code == 201, answer.text
    orthophoto = answer.json()
    lon, lat = np.array(orthophoto["geometry"]["coordinates"][0]).mean(axis=0)
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 20)
    png = client.get(f"/orthophotos/{orthophoto['id']}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png")
    assert png.status_code == 200, png.text
    rgba = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGBA"))
    opaque = rgba[..., 3] > 0
    assert opaque.mean() > 0.5
    shown = rgba[opaque][:, :3].astype(float)
    assert len(np.unique(shown, axis=0)) > 50 and 40 < shown.mean() < 220  # the photo, not black, white or flat
