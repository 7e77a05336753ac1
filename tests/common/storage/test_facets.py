"""The shared storage suite, facets (``common.storage.facets``) on every registered backend.

``status.phase`` and ``spec.nodeName`` are read from the facet columns where the value fits one, and
from the object's JSON where it does not: group-bys and field selectors on them answer exactly what
the JSON path answers on the same store (each object carries the same values at paths without a
facet, ``status.shadowPhase`` and ``spec.shadowNode``, which are read from the JSON), and where the
stores agree, what a Python oracle over the same objects answers; for plain strings, a missing value,
a JSON null, ``""``, numbers, booleans, objects, strings too long or ending in a space, non-ASCII,
a ``status`` that is not an object; and after updates, re-deliveries, stale writes and deletes (the
facets follow the object the row keeps).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest

from apiserver.types import GroupCount, Search
from common.events import Delete, Upsert
from common.storage import Store
from common.storage.facets import FACET_LENGTH, facet_value, facets_of
from common.storage.grouping import path_value
from tests.common.storage.events import PODS, Objects
from tests.common.storage.test_reads import list_sync, register_types, search, write

CLUSTER = "facets-1"
POD = Objects(CLUSTER)

ODD: list[tuple[Any, Any]] = [
    ("Running", "node-1"),
    ("Running", "node-2"),
    ("Pending", None),
    (None, "node-1"),
    ("", ""),
    (3, True),
    (True, 2.5),
    ({"a": 1}, ["node-1"]),
    ("x" * (FACET_LENGTH + 1), "n" * FACET_LENGTH),
    ("Running ", " node-1"),
    ("Läuft", "nœud-1"),
    ("null", "3"),
]
"""(status.phase, spec.nodeName) of the pods; None: a JSON null, or (MISSING) no field at all."""

MISSING = object()


def _body(name: str, rv: int, phase: Any, node: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv)}}
    if phase is not MISSING:
        body["status"] = {"phase": phase, "shadowPhase": phase}
    if node is not MISSING:
        body["spec"] = {"nodeName": node, "shadowNode": node}
    return body


def _pod(name: str, rv: int, body: dict[str, Any]) -> Upsert:
    return POD.upsert(name, rv, gvr=PODS, body=json.dumps(body))


def _bodies() -> dict[str, dict[str, Any]]:
    out = {f"p{i}": _body(f"p{i}", 1, phase, node) for i, (phase, node) in enumerate(ODD)}
    out["bare"] = _body("bare", 1, MISSING, MISSING)
    out["half"] = _body("half", 1, "Running", MISSING)
    out["odd-status"] = {"metadata": {"name": "odd-status"}, "status": "weird", "spec": 7}
    return out


@pytest.fixture(scope="module")
def store(backend: Store) -> tuple[Store, dict[str, dict[str, Any]]]:
    register_types(backend, (CLUSTER,), [("", "pods", "Pod")])
    bodies = _bodies()
    write(backend, [_pod(name, 1, body) for name, body in bodies.items()])
    # updates: the facets follow the object the row keeps
    bodies["p2"] = _body("p2", 5, "Running", "node-3")  # Pending -> Running on node-3
    write(backend, [_pod("p2", 5, bodies["p2"])])
    write(backend, [_pod("p2", 4, _body("p2", 4, "Failed", "node-9"))])  # stale: ignored
    write(backend, [_pod("p2", 5, bodies["p2"])])  # a re-delivery
    write(backend, [_pod("gone", 1, _body("gone", 1, "Running", "node-1"))])
    write(backend, [Delete(CLUSTER, "", "v1", "pods", "default", "gone", 2)])  # a tombstone: not counted
    return backend, bodies


def _search(*pairs: tuple[str, str]) -> Search:
    return search(*pairs, ("clusters", CLUSTER), resource="pods", group="")


def _oracle(bodies: dict[str, dict[str, Any]], fields: list[tuple[str, ...]]) -> list[GroupCount]:
    counts = Counter(tuple(path_value(b, f) for f in fields) for b in bodies.values())
    return [GroupCount(k, n) for k, n in sorted(counts.items())]


@pytest.mark.parametrize(
    ("group_by", "fields"),
    [
        ("status.phase", [("status", "phase")]),
        ("spec.nodeName", [("spec", "nodeName")]),
        ("status.phase,spec.nodeName", [("status", "phase"), ("spec", "nodeName")]),
        ("spec.nodeName,cluster,status.phase", [("spec", "nodeName"), ("c",), ("status", "phase")]),
    ],
)
def test_group_by_a_facet_answers_as_the_json_path(
    store: tuple[Store, dict[str, dict[str, Any]]], group_by: str, fields: list[tuple[str, ...]]
) -> None:
    backend, bodies = store
    got = asyncio.run(backend.count_groups(_search(("groupBy", group_by)), 1000))
    shadow = _shadow(group_by)
    assert shadow != group_by
    assert got == asyncio.run(backend.count_groups(_search(("groupBy", shadow)), 1000))
    with_cluster = {name: {**b, "c": CLUSTER} for name, b in _agreed(bodies, backend).items()}
    if len(with_cluster) == len(bodies):
        assert got == _oracle(with_cluster, fields)
    else:  # the objects every store answers alike
        chosen = _search(("groupBy", group_by), ("names", ",".join(with_cluster)))
        got = asyncio.run(backend.count_groups(chosen, 1000))
        assert got == _oracle(with_cluster, fields)


def _shadow(selector: str) -> str:
    return selector.replace("status.phase", "status.shadowPhase").replace("spec.nodeName", "spec.shadowNode")


def _agreed(bodies: dict[str, dict[str, Any]], backend: Store) -> dict[str, dict[str, Any]]:
    """The objects whose values every store reads as Python does: MySQL/MariaDB compare strings
    ignoring trailing spaces and PostgreSQL writes objects as ``{"a": 1}`` (both before facets)."""
    odd = {"p7", "p9"} if backend.name in ("postgresql", "mysql") else set()
    return {name: b for name, b in bodies.items() if name not in odd}


@pytest.mark.parametrize(
    "selector",
    [
        "status.phase=Running",
        "status.phase=",
        "status.phase=3",
        "status.phase=true",
        "status.phase=null",
        "status.phase=Läuft",
        "status.phase!=Running",
        "status.phase in (Running, Pending, 3)",
        "status.phase notin (Running, )",
        "spec.nodeName=node-1",
        "spec.nodeName=",
        "spec.nodeName=true",
        "spec.nodeName=2.5",
        "spec.nodeName=node-3,status.phase=Running",
        "spec.nodeName!=node-1",
        "spec.nodeName in (node-1, node-2, nœud-1)",
    ],
)
def test_field_selector_on_a_facet_answers_as_the_json_path(
    store: tuple[Store, dict[str, dict[str, Any]]], selector: str
) -> None:
    backend, bodies = store
    s = _search(("fieldSelector", selector))
    got = sorted(o.name for o in list_sync(backend, s).items)
    assert got == sorted(
        o.name for o in list_sync(backend, _search(("fieldSelector", _shadow(selector)))).items
    )
    agreed = _agreed(bodies, backend)
    want = sorted(name for name, b in agreed.items() if all(_matches(b, req) for req in s.fields))
    assert [name for name in got if name in agreed] == want


def _matches(body: dict[str, Any], req: Any) -> bool:
    value = path_value(body, req.path)
    if req.operator.value in ("=", "==", "in"):
        return value in req.values
    return value not in req.values


@pytest.mark.parametrize(
    ("raw", "facets"),
    [
        (b'{"status":{"phase":"Running"},"spec":{"nodeName":"n1"}}', ("Running", "n1")),
        (b"{}", ("", "")),
        (b'{"status":null,"spec":{"nodeName":null}}', ("", "")),
        (b'{"status":"x","spec":[1]}', ("", "")),
        (b'{"status":{"phase":3},"spec":{"nodeName":{"a":1}}}', (None, None)),
        (b'{"status":{"phase":"a\\u0000b"}}', (None, "")),
        (b'{"status":{"phase":"\\ud800"}}', (None, None)),
        (b"not json", (None, None)),
    ],
)
def test_facets_of_an_object(raw: bytes, facets: tuple[str | None, str | None]) -> None:
    assert facets_of(raw) == facets
    assert facet_value("ok ") is None and facet_value("x" * FACET_LENGTH) == "x" * FACET_LENGTH
