"""Mapping files (YAML): how source fields and tags become our columns, layers and class codes.

A mapping either names a file or one shipped in layers/mappings/ ('osm'). Rules compile to SQL
conditions over the staged row's `props` (jsonb); every value is a bound parameter.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gis.errors import InvalidInput

SHIPPED = Path(__file__).resolve().parent.parent / "mappings"
ANY = "*"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    when: dict[str, str | list[str]] = Field(min_length=1, description="tag or field -> value(s), '*' = present")
    layer: str
    class_code: str | None = Field(default=None, alias="class", pattern=r"^[0-9]{4}$")
    source_layer: str | None = Field(default=None, description="only rows of this source layer (e.g. OSM multipolygons)")

    def condition(self) -> sql.Composable:
        parts = [sql.SQL("s.src_layer = {}").format(sql.Literal(self.source_layer))] if self.source_layer else []
        for key, wanted in self.when.items():
            value = sql.SQL("s.props->>{}").format(sql.Literal(key))
            if wanted == ANY:
                parts.append(sql.SQL("{} IS NOT NULL").format(value))
            else:
                options = [wanted] if isinstance(wanted, str) else wanted
                parts.append(sql.SQL("{} = ANY({})").format(value, sql.Literal(options)))
        return sql.SQL(" AND ").join(parts)


class FieldSource(BaseModel):
    """A source field, optionally with a fixed prefix removed (GB/T 2260 codes written '156' + code)."""

    model_config = ConfigDict(extra="forbid")

    field: str
    strip_prefix: str = ""

    def value(self) -> sql.Composable:
        text = sql.SQL("nullif(btrim(s.props->>{}), '')").format(sql.Literal(self.field))
        if not self.strip_prefix:
            return text
        return sql.SQL("CASE WHEN starts_with({t}, {p}) THEN substr({t}, {n}) ELSE {t} END").format(
            t=text, p=sql.Literal(self.strip_prefix), n=sql.Literal(len(self.strip_prefix) + 1))


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_layers: list[str] = Field(default_factory=list, description="GDAL layers to read; empty = the first")
    rules: list[Rule] = Field(default_factory=list)
    columns: dict[str, str | FieldSource] = Field(default_factory=dict, description="our column -> source field")
    set: dict[str, str | int | float | bool] = Field(default_factory=dict, description="our column -> constant")

    @field_validator("columns")
    @classmethod
    def _sources(cls, columns: dict[str, str | FieldSource]) -> dict[str, FieldSource]:
        return {target: FieldSource(field=s) if isinstance(s, str) else s for target, s in columns.items()}

    def field_of(self, column: str) -> str:
        """The source field a column reads (the column's own name unless mapped)."""
        source = self.columns.get(column)
        return source.field if isinstance(source, FieldSource) else column

    def restricted_to(self, layer_id: str | None) -> Mapping:
        """With --layer, only the rules for that layer apply."""
        if layer_id is None or not self.rules:
            return self
        return self.model_copy(update={"rules": [r for r in self.rules if r.layer == layer_id]})

    def with_columns(self, extra: dict[str, str]) -> Mapping:
        return self.model_copy(update={"columns": {**self.columns, **{k: FieldSource(field=v) for k, v in extra.items()}}})


def load_mapping(name_or_path: str | None) -> Mapping:
    if not name_or_path:
        return Mapping()
    path = Path(name_or_path)
    if not path.suffix and (SHIPPED / f"{name_or_path}.yaml").exists():
        path = SHIPPED / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = ", ".join(p.stem for p in SHIPPED.glob("*.yaml"))
        raise InvalidInput(f"mapping {name_or_path!r} is neither a file nor a shipped mapping ({shipped})")
    try:
        return Mapping.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise InvalidInput(f"mapping file {path.name} is not valid: {exc}") from exc


def parse_field_maps(pairs: list[str]) -> dict[str, str]:
    """--map column=field pairs."""
    result = {}
    for pair in pairs:
        target, sep, source = pair.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise InvalidInput(f"--map wants column=field, got {pair!r}")
        result[target.strip()] = source.strip()
    return result
