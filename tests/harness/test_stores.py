"""The store fixtures are real: an SQL round trip on each store, a Redis stream round trip."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
import redis
from sqlalchemy import func, insert, select, text

from common.storage.sql.engine import create_schema, make_engine
from common.storage.sql.schema import SCHEMA_VERSION, resources, schema_version

pytestmark = pytest.mark.e2e


def test_store_round_trip(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        create_schema(engine)
        create_schema(engine)  # idempotent
        uid = str(uuid.uuid4())
        row = {
            "cluster": "cluster-1",
            "api_group": "apps",
            "version": "v1",
            "resource": "deployments",
            "kind": "Deployment",
            "namespace": "default",
            "name": "nginx",
            "uid": uid,
            "owner_uid": "",
            "resource_version": 42,
            "epoch": 1,
            "created_at": datetime.datetime(2026, 1, 2, 3, 4, 5),
            "synced_at": datetime.datetime(2026, 1, 2, 3, 4, 6),
            "deleted": False,
            "object": '{"kind":"Deployment","metadata":{"name":"nginx"}}',
        }
        with engine.begin() as conn:
            conn.execute(insert(resources).values(**row))
        with engine.connect() as conn:
            got = conn.execute(select(resources).where(resources.c.uid == uid)).mappings().one()
            version = conn.execute(select(schema_version.c.version)).scalar_one()
            count = conn.execute(select(func.count()).select_from(resources)).scalar_one()
        assert version == SCHEMA_VERSION
        assert count == 1
        assert got["name"] == "nginx" and got["resource_version"] == 42
        assert got["object"].replace(" ", "") == row["object"]
        assert got["created_at"] == row["created_at"]
    finally:
        engine.dispose()


def test_each_module_gets_its_own_database(
    postgres_url: str, mysql_url: str, service_urls: dict[str, str]
) -> None:
    for url, base in (
        (postgres_url, service_urls["CLUSTERPEDIA_TEST_POSTGRES"]),
        (mysql_url, service_urls["CLUSTERPEDIA_TEST_MYSQL"]),
    ):
        assert url.rsplit("/", 1)[1].startswith("test_")
        assert url.rsplit("/", 1)[0] == base.rsplit("/", 1)[0]
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                current = conn.execute(
                    text("SELECT current_database()" if url.startswith("postgresql") else "SELECT DATABASE()")
                ).scalar_one()
            assert current == url.rsplit("/", 1)[1]
        finally:
            engine.dispose()


def test_redis_stream_round_trip(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    try:
        assert r.dbsize() == 0  # a clean database for this module
        assert int(redis_url.rsplit("/", 1)[1]) > 0  # never DB 0, which holds the claims
        r.xgroup_create("events", "writers", id="0", mkstream=True)
        ids = [r.xadd("events", {"n": str(i)}) for i in range(3)]
        got: Any = r.xreadgroup("writers", "w1", {"events": ">"}, count=10)
        [(stream, entries)] = got
        assert stream == b"events"
        assert [e[0] for e in entries] == ids
        assert [e[1][b"n"] for e in entries] == [b"0", b"1", b"2"]
        assert r.xpending("events", "writers")["pending"] == 3
        assert r.xack("events", "writers", *ids) == 3
        assert r.xpending("events", "writers")["pending"] == 0
    finally:
        r.close()
