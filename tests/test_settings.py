"""Every tunable is a described field of a settings class of its package, and the README's
configuration table lists each one with its environment variable."""

from __future__ import annotations

import re

from api.security_settings import SecuritySettings
from api.settings import ServerSettings
from drone.settings import DroneSettings
from gis.limits import LimitSettings
from gis.settings import PROJECT_ROOT, JobSettings, Settings, settings_of
from layers.settings import ExportSettings
from ops.report_settings import ReportSettings
from ops.settings import OpsSettings
from tiles.settings import TileSettings

CONCERNS = (Settings, JobSettings, ExportSettings, LimitSettings, ServerSettings, SecuritySettings, TileSettings,
            DroneSettings, OpsSettings, ReportSettings)


def test_every_setting_is_described_and_in_the_readme_table():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(CITYOPS_[A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    fields = {}
    for concern in CONCERNS:
        prefix = concern.model_config["env_prefix"].upper()
        for name, field in concern.model_fields.items():
            assert field.description, f"{concern.__name__}.{name} has no description"
            fields[prefix + name.upper()] = concern
    missing = set(fields) - listed
    assert not missing, f"README's configuration table lacks {sorted(missing)}"


def test_settings_come_from_the_environment_once(monkeypatch):
    settings_of.cache_clear()
    monkeypatch.setenv("CITYOPS_TILE_CACHE_MB", "7")
    try:
        assert settings_of(TileSettings).tile_cache_mb == 7
        monkeypatch.setenv("CITYOPS_TILE_CACHE_MB", "8")
        assert settings_of(TileSettings).tile_cache_mb == 7  # read once per process
    finally:
        settings_of.cache_clear()
