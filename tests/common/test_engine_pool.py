"""The connection pool of the database servers: a connection that was just returned is handed out
again without a ping (one round trip less per transaction), one that sat idle is pinged first and
replaced when the server dropped it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from common.storage.sql import engine as engine_module
from common.storage.sql.engine import make_engine

pytestmark = pytest.mark.e2e

_SERVERS = ("postgresql", "mysql")
_BACKEND_ID = {
    "postgresql": "select pg_backend_pid()",
    "mysql": "select connection_id()",
}
_KILL = {
    "postgresql": "select pg_terminate_backend({id})",
    "mysql": "kill {id}",
}


@pytest.fixture(params=_SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    kind: str = request.param
    url: str = request.getfixturevalue({"postgresql": "postgres_url", "mysql": "mysql_url"}[kind])
    yield kind, url


class _Pings:
    def __init__(self, engine: Engine) -> None:
        self.count = 0
        original = engine.dialect.do_ping

        def counting(dbapi_conn: object) -> bool:
            self.count += 1
            return original(dbapi_conn)

        engine.dialect.do_ping = counting  # type: ignore[method-assign]


def _backend(engine: Engine, kind: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(_BACKEND_ID[kind])).scalar_one())


def _kill(url: str, kind: str, backend: int) -> None:
    other = make_engine(url)
    try:
        with other.connect() as conn:
            conn.execute(text(_KILL[kind].format(id=backend)))
    finally:
        other.dispose()


def test_a_connection_just_returned_is_reused_without_a_ping(server: tuple[str, str]) -> None:
    kind, url = server
    engine = make_engine(url)
    try:
        pings = _Pings(engine)
        first = _backend(engine, kind)
        for _ in range(5):
            assert _backend(engine, kind) == first
        assert pings.count == 0
    finally:
        engine.dispose()


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kind, url = server
    engine = make_engine(url)
    try:
        pings = _Pings(engine)
        first = _backend(engine, kind)
        _kill(url, kind, first)
        # Every connection counts as idle from now on (the threshold is a second in production).
        monkeypatch.setattr(engine_module, "PING_IDLE_SECONDS", -1.0)
        second = _backend(engine, kind)
        assert second != first
        assert pings.count >= 1
    finally:
        engine.dispose()


def test_a_connection_dropped_moments_ago_fails_once_then_the_pool_recovers(
    server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the threshold nobody pings: the statement fails as a disconnect (the writer retries
    it), and the pool's next connection is a new, working one."""
    kind, url = server
    monkeypatch.setattr(engine_module, "PING_IDLE_SECONDS", 3600.0)  # however slow this machine is
    engine = make_engine(url)
    try:
        first = _backend(engine, kind)
        _kill(url, kind, first)
        with pytest.raises(Exception, match=r"(?i)terminat|closed|lost|gone|server"):
            _backend(engine, kind)
        assert _backend(engine, kind) != first
    finally:
        engine.dispose()
