"""Search the city by component code, grid code or place name, and describe a unit grid."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Connection
from api.extension import Extension
from ops import search as city_search


def search_extension() -> Extension:
    router = APIRouter(tags=["Command wall"])

    @router.get("/search", summary="Find a component (16 digits), a unit grid (15 digits) or a district/street/community")
    async def search(conn: Connection, q: Annotated[str, Query(min_length=1, max_length=100)]):
        return {"query": q, "hits": await city_search.search(conn, q)}

    @router.get("/grids/{bgcode}", summary="A unit grid with its community, street, district and responsible unit")
    async def grid(conn: Connection, bgcode: Annotated[str, Path(pattern=r"^[0-9]{15}$")]):
        return await city_search.describe_grid(conn, bgcode)

    return Extension(router=router)
