"""The SQL stores' reads for relationship queries (``common.storage.relations``).

Each lookup is one indexed statement: a subject by uid reads ``ix_resources_uid``, by name the
unique key (``uq_resources_key``: cluster, group, resource, namespace, name); a level of an owner
chain reads ``ix_resources_uid`` for the owners' uids in one cluster. The answer is then an ordinary
search (uids, names, labels, the events' subject uid: ``ix_resources_owner``), so a relation costs
a few index probes more than the list it becomes, whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Select, false, or_, select

from common.storage.relations import Link, Lookups, Subject
from common.storage.sql.schema import resources

_r = resources.c
_LINK = (_r.cluster, _r.api_group, _r.resource, _r.namespace, _r.name, _r.uid, _r.owner_uid)
_KEY = (_r.cluster, _r.api_group, _r.resource, _r.namespace, _r.name)


def subjects_statement(subject: Subject, limit: int) -> Select[Any]:
    """The live objects ``subject`` names, with their JSON, in key order."""
    s = subject
    stmt = select(*_LINK, _r.object).where(_r.deleted == false())
    if s.uid:
        stmt = stmt.where(_r.uid == s.uid)
    else:
        stmt = stmt.where(
            _r.cluster == s.cluster, _r.api_group == s.group, _r.resource == s.resource, _r.name == s.name
        )
        if s.namespace is not None:
            # a cluster-scoped object has namespace "" whatever namespace the request named
            stmt = stmt.where(or_(_r.namespace == s.namespace, _r.namespace == ""))
    return stmt.order_by(*_KEY).limit(limit)


def by_uids_statement(cluster: str, uids: Sequence[str]) -> Select[Any]:
    """The live objects of ``cluster`` with these uids (no JSON), in key order."""
    return (
        select(*_LINK)
        .where(_r.uid.in_(list(uids)), _r.cluster == cluster, _r.deleted == false())
        .order_by(*_KEY)
    )


def _bytes(obj: str | bytes) -> bytes:
    return obj.encode() if isinstance(obj, str) else bytes(obj)


class SqlLookups(Lookups):
    """The lookups, on one connection (the list's snapshot)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def subjects(self, subject: Subject, limit: int) -> list[Link]:
        rows = self.conn.execute(subjects_statement(subject, limit))
        return [
            Link(
                r.cluster, r.api_group, r.resource, r.namespace, r.name, r.uid, r.owner_uid, _bytes(r.object)
            )
            for r in rows
        ]

    def by_uids(self, cluster: str, uids: Sequence[str]) -> list[Link]:
        return [Link(*row) for row in self.conn.execute(by_uids_statement(cluster, uids))]
