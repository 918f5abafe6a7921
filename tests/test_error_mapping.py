"""psycopg files very different things under OperationalError (issue 13: a query over a program
limit was answered 503 "database unavailable"). Real errors from a real server, mapped."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from api.errors import operational_problem
from gis.db import open_connection


def _raised(city_db, statement: str) -> psycopg.OperationalError:
    with open_connection(city_db, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 50")
        with pytest.raises(psycopg.OperationalError) as caught:
            conn.execute(statement)
    return caught.value


def test_a_statement_over_a_program_limit_is_the_requests_fault(city_db):
    too_wide = "SELECT " + ", ".join(f"1 AS c{i}" for i in range(1700))
    answer = operational_problem(_raised(city_db, too_wide))
    assert answer.status_code == 400 and "database limit" in json.loads(answer.body)["description"]


def test_a_cancelled_statement_is_overload_with_retry_after(city_db):
    answer = operational_problem(_raised(city_db, "SELECT pg_sleep(2)"))
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert json.loads(answer.body)["code"] == "QueryTimeout"


def test_a_full_pool_is_overload_and_a_lost_connection_an_outage():
    busy = operational_problem(PoolTimeout("couldn't get a connection after 5.00 sec"))
    assert busy.status_code == 503 and json.loads(busy.body)["code"] == "ServerBusy" and busy.headers["Retry-After"]
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect("host=/nonexistent-socket-dir dbname=x", connect_timeout=2)
    down = operational_problem(caught.value)
    assert down.status_code == 503 and json.loads(down.body)["code"] == "DatabaseUnavailable"
