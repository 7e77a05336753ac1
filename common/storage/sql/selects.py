"""Search -> SQLAlchemy statements, for PostgreSQL, MySQL/MariaDB and SQLite (pure).

This is where a kubectl search becomes SQL, so it is where injection is prevented: every user value
is a bound parameter, orderby columns come from a fixed mapping, and JSON paths are built from
segments the API tier has validated against a strict grammar — and still travel as bound
parameters (``#>>`` with a ``text[]`` path on PostgreSQL, ``JSON_EXTRACT(object, :path)`` elsewhere).

The dialects differ only in how they reach into the stored object: PostgreSQL keeps it as JSONB
(label equality uses ``@>``, which a GIN index can serve), MySQL/MariaDB as LONGTEXT read with
``JSON_EXTRACT``/``JSON_UNQUOTE``, SQLite as TEXT read with ``json_extract``. A JSON value is
compared as text (``3``, ``true``, ``Running``) and a missing one or a JSON null as ``""``, on all three.

Keyset pages: ``list_statement(..., after=key)`` returns the rows strictly after ``key`` in the
search's total order (``full_order``), which is how a continue token stays stable while rows are
inserted and updated between pages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB

from common.storage import relations
from common.storage.facets import FACET_PATHS
from common.storage.paging import NULL_CREATED_AT, key_value
from common.storage.query import (
    FieldRequirement,
    Grant,
    GroupResource,
    LabelRequirement,
    Operator,
    OrderBy,
    Search,
    full_order,
)
from common.storage.sql.dialects import Dialect
from common.storage.sql.schema import PG_LABELS, resource_labels, resource_types, resources, store_revision
from common.types import EVENT_SUBJECT_FIELDS

_r = resources.c
_l = resource_labels.c

LIST_COLUMNS = (
    _r.cluster,
    _r.api_group,
    _r.version,
    _r.resource,
    _r.kind,
    _r.namespace,
    _r.name,
    _r.resource_version,
    _r.created_at,
    _r.object,
    _r.revision,
)
"""What a list or get returns, in this order (``StoredObject``'s fields)."""

CHANGE_COLUMNS = (*LIST_COLUMNS, _r.created_revision, _r.deleted, _r.uid, _r.owner_uid)
"""What the change feed returns of each row."""

_COLUMN_PATHS: dict[tuple[str, ...], ColumnElement[Any]] = {
    ("metadata", "name"): _r.name,
    ("metadata", "namespace"): _r.namespace,
    ("metadata", "uid"): _r.uid,
}


def _json_path(path: Sequence[str]) -> str:
    """MySQL/SQLite JSON path; segments are pre-validated (no quotes, no backslashes)."""
    return "$" + "".join(f'."{seg}"' for seg in path)


def json_text(path: Sequence[str], dialect: str, *, strings_only: bool = False) -> ColumnElement[Any]:
    """The value at ``path`` of the stored object as text (``3``, ``true``, ``Running``), NULL if
    missing. The path is a bound parameter on every dialect. ``strings_only``: the value is known to
    be a JSON string (a label), which spares SQLite the type dance."""
    d = Dialect.of(dialect)
    if d.jsonb:
        extracted: ColumnElement[Any] = type_coerce(_r.object, JSONB)[tuple(path)].astext
        return extracted
    p = _json_path(path)
    if d.sql_json_values and strings_only:
        return func.json_extract(_r.object, p)
    if d.sql_json_values:
        # json_extract returns SQL values: booleans as 1/0, numbers as numbers; make them JSON text.
        kind = func.json_type(_r.object, p)
        return case(
            (kind.in_(("true", "false")), kind),
            else_=cast(func.json_extract(_r.object, p), String),
        )
    extracted = func.json_extract(_r.object, p)
    if strings_only:
        return func.json_unquote(extracted)
    # JSON_UNQUOTE turns a JSON null into the text "null"; read it as missing, as the others do.
    return case((func.json_type(extracted) == "NULL", null()), else_=func.json_unquote(extracted))


def facet_column(path: tuple[str, ...]) -> ColumnElement[Any] | None:
    """The facet column of a JSON path (``common.storage.facets``), or None when it has none."""
    column = FACET_PATHS.get(path)
    return _r[column] if column is not None else None


def facet_text(column: ColumnElement[Any], path: tuple[str, ...], dialect: str) -> ColumnElement[Any]:
    """The text of a faceted path as a field selector reads it ("" when missing): the column, or
    the JSON where the column is NULL (only evaluated then: COALESCE stops at its first value)."""
    return func.coalesce(column, json_text(path, dialect), "")


def _set_condition(
    expr: ColumnElement[Any], op: Operator, values: Sequence[str], *, missing_matches_negation: bool
) -> ColumnElement[bool]:
    if op == Operator.EQUALS:
        return expr == values[0]
    if op == Operator.IN:
        return expr.in_(list(values))
    negated = expr != values[0] if op == Operator.NOT_EQUALS else expr.not_in(list(values))
    return or_(expr.is_(None), negated) if missing_matches_negation else negated


def _subject_uid_path(search: Search) -> tuple[str, str] | None:
    """An Event's ``involvedObject.uid`` (``regarding.uid``) is also its ``owner_uid`` column
    (``common.transform``): in a search of an event resource a positive condition on that path adds
    the indexed column's, so the events of one object (``kubectl describe``) are read through
    ``ix_resources_owner``, not by scanning every event. Only there: another kind may have a field
    of that name, and its ``owner_uid`` is its controller's."""
    if search.group_resources:
        return None
    field = EVENT_SUBJECT_FIELDS.get((search.group, search.resource))
    return (field, "uid") if field is not None else None


def field_condition(
    req: FieldRequirement, dialect: str, subject_uid: tuple[str, str] | None = None
) -> ColumnElement[bool]:
    """``subject_uid``: the path that is also ``owner_uid`` in this search (``_subject_uid_path``)."""
    if req.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        raise ValueError("field selectors have no exists operator")
    facet = facet_column(req.path)
    if facet is not None:
        json_expr = func.coalesce(json_text(req.path, dialect), "")
        if req.operator in (Operator.EQUALS, Operator.IN):
            # two ranges of the facet's index: the value, and the rows whose JSON must be read
            return or_(
                _set_condition(facet, req.operator, req.values, missing_matches_negation=False),
                and_(
                    facet.is_(None),
                    _set_condition(json_expr, req.operator, req.values, missing_matches_negation=False),
                ),
            )
        expr = facet_text(facet, req.path, dialect)
        return _set_condition(expr, req.operator, req.values, missing_matches_negation=False)
    column = _COLUMN_PATHS.get(req.path)
    expr = column if column is not None else func.coalesce(json_text(req.path, dialect), "")
    cond = _set_condition(expr, req.operator, req.values, missing_matches_negation=False)
    if req.path == subject_uid and req.operator in (Operator.EQUALS, Operator.IN) and all(req.values):
        return and_(
            _set_condition(_r.owner_uid, req.operator, req.values, missing_matches_negation=False), cond
        )
    return cond


class LabelIndex(NamedTuple):
    """Label requirements read ``resource_labels`` (SQLite, MySQL/MariaDB, once
    ``common.storage.sql.engine.label_index_ready``); ``drive``: the index in ``search.labels`` of the
    positive requirement the statement starts from (few rows carry it), or None (probe per row);
    ``rarest``: the positive requirement with the fewest label rows, where a statement that reads
    every match (a count) starts whatever their number."""

    drive: int | None = None
    rarest: int | None = None

    def for_count(self) -> LabelIndex:
        return self._replace(drive=self.rarest)


def _labelled(key: str, values: Sequence[str] | None = None) -> list[ColumnElement[bool]]:
    """Conditions on ``resource_labels`` rows: label ``key`` (with one of ``values``)."""
    conds = [_l.label_key == key]
    if values is not None:
        conds.append(_l.label_value == values[0] if len(values) == 1 else _l.label_value.in_(list(values)))
    return conds


def _label_values(req: LabelRequirement) -> Sequence[str] | None:
    return None if req.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) else req.values


def is_positive(req: LabelRequirement) -> bool:
    """Whether only objects carrying the label can match (``=``, ``in``, exists)."""
    return req.operator in (Operator.EQUALS, Operator.IN, Operator.EXISTS)


def label_rows_statement(req: LabelRequirement, bound: int) -> Select[Any]:
    """How many label rows match a positive requirement, counting no further than ``bound``: an
    index-only range of ``ix_resource_labels_kv`` that tells a selective label from a common one."""
    matching = select(_l.resource_id).where(*_labelled(req.key, _label_values(req))).limit(bound)
    return select(func.count()).select_from(matching.subquery())


def label_condition(
    req: LabelRequirement, dialect: str, *, label_index: bool = False, drive: bool = False
) -> ColumnElement[bool]:
    """Kubernetes semantics: ``!=`` and ``notin`` also match objects without the label.

    ``label_index``: the store keeps ``resource_labels`` (SQLite, MySQL/MariaDB; see
    ``common.storage.sql.engine.label_index_ready``), so the condition reads it instead of the objects:
    ``drive`` (a positive requirement of few rows) as ``id IN (ids with the label)``, which starts
    from those rows; otherwise as a correlated EXISTS, one primary-key probe per row the scan visits,
    which lets an ordered, limited page stop early when the label is common."""
    d = Dialect.of(dialect)
    if label_index and d.label_table:
        conds = _labelled(req.key, _label_values(req))
        if drive and is_positive(req):
            return _r.id.in_(select(_l.resource_id).where(*conds))
        probe = exists().where(_l.resource_id == _r.id, *conds).correlate(resources)
        return probe if is_positive(req) else ~probe
    path = ("metadata", "labels", req.key)
    if d.jsonb and req.operator in (
        Operator.EQUALS,
        Operator.NOT_EQUALS,
        Operator.IN,
        Operator.NOT_IN,
    ):
        labels = type_coerce(PG_LABELS, JSONB)
        # @> with a bound JSONB document: served by the GIN index on the labels (schema.py).
        contains = or_(*(labels.contains({req.key: v}) for v in req.values))
        if req.operator in (Operator.EQUALS, Operator.IN):
            return contains
        return or_(labels.is_(None), ~contains)  # an object without any labels matches != / notin
    value = json_text(path, dialect, strings_only=True)
    if req.operator == Operator.EXISTS:
        return value.is_not(None)
    if req.operator == Operator.DOES_NOT_EXIST:
        return value.is_(None)
    return _set_condition(value, req.operator, req.values, missing_matches_negation=True)


def _owner_condition(search: Search, cluster: str) -> ColumnElement[bool]:
    """Rows whose controller owner is the asked owner, or (seniority n) n generations below it."""
    if search.owner_uid:
        owners: Any = [search.owner_uid]
    else:
        o = resources.alias("owner0")
        conds = [o.c.name == search.owner_name, o.c.deleted == false(), o.c.cluster == cluster]
        if search.owner_gr is not None:
            conds += [o.c.api_group == search.owner_gr.group, o.c.resource == search.owner_gr.resource]
        owners = select(o.c.uid).where(*conds)
    for level in range(1, search.owner_seniority + 1):
        a = resources.alias(f"owner{level}")
        conds = [a.c.owner_uid.in_(owners), a.c.deleted == false()]
        if cluster:
            conds.append(a.c.cluster == cluster)
        owners = select(a.c.uid).where(*conds)
    return _r.owner_uid.in_(owners)


def where_clause(
    search: Search, dialect: str, *, label_index: LabelIndex | None = None
) -> ColumnElement[bool]:
    """Every filter of ``search`` (no paging), always excluding deleted tombstones; label
    requirements read the label table when ``label_index`` is given (see :class:`LabelIndex`)."""
    conds: list[ColumnElement[bool]] = [_r.deleted == false()]
    if search.group_resources:
        conds.append(
            or_(
                *(and_(_r.api_group == gr.group, _r.resource == gr.resource) for gr in search.group_resources)
            )
        )
    else:
        conds += [_r.api_group == search.group, _r.resource == search.resource]
    if search.single_cluster:
        conds.append(_r.cluster == search.single_cluster)
    if search.namespace:
        conds.append(_r.namespace == search.namespace)
    for column, flt in (
        (_r.cluster, search.clusters),
        (_r.namespace, search.namespaces),
        (_r.name, search.names),
    ):
        if flt.include is not None:
            conds.append(column.in_(list(flt.include)) if flt.include else false())
        if flt.exclude:
            conds.append(column.not_in(list(flt.exclude)))
    if search.since is not None:
        conds.append(_r.created_at >= search.since)
    if search.before is not None:
        conds.append(_r.created_at < search.before)
    if search.owner_uid or search.owner_name:
        conds.append(_owner_condition(search, search.one_cluster))
    if search.fuzzy_name:
        conds.append(_r.name.contains(search.fuzzy_name, autoescape=True))
    conds += [
        label_condition(
            req,
            dialect,
            label_index=label_index is not None,
            drive=label_index is not None and label_index.drive == i,
        )
        for i, req in enumerate(search.labels)
    ]
    subject_uid = _subject_uid_path(search)
    conds += [field_condition(req, dialect, subject_uid) for req in search.fields]
    if search.visibility is not None:
        conds.append(visibility_condition(search.visibility))
    if (several := relations.alternatives(search)) is not None:
        # a relation answered in several clusters or namespaces: the union of plain searches
        probe = LabelIndex() if label_index is not None else None
        conds.append(or_(*(where_clause(alt, dialect, label_index=probe) for alt in several)))
    return and_(*conds)


def visibility_condition(grants: Sequence[Grant]) -> ColumnElement[bool]:
    """Rows some grant allows: per (cluster, group, resource), everything, or namespaces, names
    and (namespace, name) pairs. Clusters whose grants for a resource are alike share one term
    (``cluster IN (...) AND namespace IN (...)``): a team bound to the same namespaces in ten
    clusters costs one list of namespaces, not ten, and an administrator's query stays the plain
    ``cluster IN (...)``."""
    alike: dict[tuple[Any, ...], list[str]] = {}
    for g in grants:
        shape = (g.group, g.resource, g.everywhere, g.namespaces, g.names, g.named_in)
        alike.setdefault(shape, []).append(g.cluster)
    parts: list[ColumnElement[bool]] = []
    for (group, resource, everywhere, namespaces, names, named_in), clusters in alike.items():
        same = (
            _r.cluster.in_(clusters) if len(clusters) > 1 else _r.cluster == clusters[0],
            _r.api_group == group,
            _r.resource == resource,
        )
        if everywhere:
            parts.append(and_(*same))
            continue
        allowed: list[ColumnElement[bool]] = []
        if namespaces:
            allowed.append(_r.namespace.in_(list(namespaces)))
        if names:
            allowed.append(_r.name.in_(list(names)))
        if named_in:
            allowed.append(tuple_(_r.namespace, _r.name).in_(list(named_in)))
        if allowed:
            parts.append(and_(*same, or_(*allowed)))
    return or_(*parts) if parts else false()


def _order_column(field: str, columns: Any = _r) -> ColumnElement[Any]:
    """The column (of ``resources`` or of a subquery with the same column names) a field orders by."""
    if field == "created_at":
        return func.coalesce(columns.created_at, literal(NULL_CREATED_AT))
    column: ColumnElement[Any] = getattr(columns, field)
    return column


def order_clauses(order: Sequence[OrderBy], columns: Any = _r) -> list[ColumnElement[Any]]:
    return [
        _order_column(o.field, columns).desc() if o.desc else _order_column(o.field, columns).asc()
        for o in order
    ]


def after_key(
    order: Sequence[OrderBy],
    key: Sequence[str | int],
    dialect: str = "",
    *,
    group_resource: GroupResource | None = None,
) -> ColumnElement[bool]:
    """Rows strictly after ``key`` in ``order``: the keyset-paging predicate.

    PostgreSQL, one direction throughout: a row-value comparison ``(a, b, c) > (x, y, z)``, which a
    B-tree whose columns follow the order serves as a range (the scan starts at the key instead of
    filtering every row before it). ``group_resource``: the one (api_group, resource) the search is
    confined to, spliced in where the indexes have it (same rows, the values being constant):
    ``(cluster, api_group, resource, namespace, name) > (x, g, r, y, z)`` is ``uq_resources_key``
    itself; orders starting elsewhere put (api_group, resource) first (``ix_resources_gr_name``...).
    1M rows, a page at row 535k: 30.9 -> 6.9 ms. SQLite's planner picked no better index for the
    row form (200k rows: 295 -> 360 ms), so it keeps the expansion below.

    Otherwise (mixed directions, SQLite, MySQL/MariaDB) the expansion (a, b, c) after (x, y, z) =
    a > x OR (a = x AND (b > y OR (b = y AND c > z))) with > flipped for descending fields; the
    leading ``a >= x`` lets an index on the first field bound the scan."""
    if len(order) != len(key):
        raise ValueError("key does not match the order")
    values = [key_value(o.field, v) for o, v in zip(order, key, strict=True)]
    if dialect and Dialect.of(dialect).row_value_keyset and len({o.desc for o in order}) == 1:
        columns = [_order_column(o.field) for o in order]
        if group_resource is not None and {o.field for o in order}.isdisjoint(("api_group", "resource")):
            # after the leading cluster (uq_resources_key) or first (the api_group, resource indexes)
            at = 1 if order[0].field == "cluster" else 0
            columns[at:at] = [_r.api_group, _r.resource]
            values[at:at] = [group_resource.group, group_resource.resource]
        bound = [literal(v, c.type) for v, c in zip(values, columns, strict=True)]
        row, key_row = tuple_(*columns), tuple_(*bound)
        return row < key_row if order[0].desc else row > key_row
    cond: ColumnElement[bool] | None = None
    for o, v in reversed(list(zip(order, values, strict=True))):
        col = _order_column(o.field)
        beyond = col < v if o.desc else col > v
        cond = beyond if cond is None else or_(beyond, and_(col == v, cond))
    assert cond is not None
    first, v0 = _order_column(order[0].field), values[0]
    return and_(first <= v0 if order[0].desc else first >= v0, cond)


def _group_resource(search: Search) -> GroupResource | None:
    """The one group/resource a search is confined to (None for a collection of several)."""
    if search.group_resources:
        return search.group_resources[0] if len(search.group_resources) == 1 else None
    return GroupResource(search.group, search.resource)


def _one_list(
    search: Search,
    dialect: str,
    after: Sequence[str | int] | None,
    limit: int | None,
    label_index: LabelIndex | None,
) -> Select[Any]:
    order = full_order(search)
    stmt = select(*LIST_COLUMNS).where(where_clause(search, dialect, label_index=label_index))
    if after is not None:
        stmt = stmt.where(after_key(order, after, dialect, group_resource=_group_resource(search)))
    stmt = stmt.order_by(*order_clauses(order))
    return stmt.limit(limit) if limit is not None else stmt


def list_statement(
    search: Search,
    dialect: str,
    *,
    after: Sequence[str | int] | None = None,
    limit: int | None = None,
    offset: int | None = None,
    label_index: LabelIndex | None = None,
) -> Select[Any]:
    """Rows of ``LIST_COLUMNS`` matching ``search`` in its total order, optionally after a keyset key
    and with LIMIT/OFFSET (the executor asks for one row more than a page to see if there is more);
    ``label_index`` as for :func:`where_clause`.

    A page of a collection whose members span several API groups is a UNION ALL of one page per
    member, each ordered and limited on its own, merged and limited again: every member is then a
    range scan of ``uq_resources_key`` that stops after ``limit`` rows, where one statement with
    ``(api_group = .. AND resource = ..) OR ...`` (no index condition) reads every row sorting before
    them (all the pods of a cluster precede its deployments): 1M rows, deployments.apps +
    cronjobs.batch, 33-51 ms -> 10-11 ms. Members of one group (``workloads``) stay one statement,
    ``api_group = ..`` bounding the scan already (the merge would add a sort: 9-11 -> 11-17 ms)."""
    if len({gr.group for gr in search.group_resources}) > 1 and limit is not None:
        inner = limit + (offset or 0)
        members = [
            select(*sub.c).select_from(sub)
            for gr in search.group_resources
            for sub in [
                _one_list(
                    dataclasses.replace(search, group_resources=(gr,)), dialect, after, inner, label_index
                ).subquery()
            ]
        ]
        merged = union_all(*members).subquery("page")
        stmt = select(*merged.c).order_by(*order_clauses(full_order(search), merged.c)).limit(limit)
        return stmt.offset(offset) if offset else stmt
    if offset:
        return _deferred_page(search, dialect, after, limit, offset, label_index)
    return _one_list(search, dialect, after, limit, label_index)


def _deferred_page(
    search: Search,
    dialect: str,
    after: Sequence[str | int] | None,
    limit: int | None,
    offset: int,
    label_index: LabelIndex | None,
) -> Select[Any]:
    """An OFFSET page as a deferred join: the rows to skip are found by their ids alone, and only
    the page's rows are read whole. Skipped rows were projected too (PostgreSQL decompressed each
    object's JSON in the scan, before the LIMIT node dropped it): 50,000 pods, 100 at offset
    20,000, 377 -> 9 ms on PostgreSQL; SQLite (29-32 ms) and MariaDB (196-197 ms) unchanged
    (bench/notes.md)."""
    order = full_order(search)
    ids = select(_r.id).where(where_clause(search, dialect, label_index=label_index))
    if after is not None:
        ids = ids.where(after_key(order, after, dialect, group_resource=_group_resource(search)))
    ids = ids.order_by(*order_clauses(order)).offset(offset)
    page = (ids.limit(limit) if limit is not None else ids).subquery("page_ids")
    return (
        select(*LIST_COLUMNS).join_from(resources, page, _r.id == page.c.id).order_by(*order_clauses(order))
    )


def count_statement(
    search: Search,
    dialect: str,
    *,
    after: Sequence[str | int] | None = None,
    label_index: LabelIndex | None = None,
) -> Select[Any]:
    """How many rows match ``search`` (after ``key``): remainingItemCount."""
    stmt = (
        select(func.count())
        .select_from(resources)
        .where(where_clause(search, dialect, label_index=label_index))
    )
    if after is not None:
        stmt = stmt.where(
            after_key(full_order(search), after, dialect, group_resource=_group_resource(search))
        )
    return stmt


def get_statement(cluster: str, group: str, resource: str, namespace: str, name: str) -> Select[Any]:
    """One object by key; ``cluster`` "" finds it in every cluster (ordered by cluster)."""
    stmt = select(*LIST_COLUMNS).where(
        _r.deleted == false(),
        _r.api_group == group,
        _r.resource == resource,
        _r.namespace == namespace,
        _r.name == name,
        _r.cluster == cluster if cluster else true(),
    )
    return stmt.order_by(_r.cluster).limit(50)


def known_clusters_statement(names: Sequence[str]) -> Select[Any]:
    """Which of ``names`` are clusters the store knows (has resource types for)."""
    return select(resource_types.c.cluster).where(resource_types.c.cluster.in_(list(names))).distinct()


def served_resources_statement() -> Select[Any]:
    """Every ``resource_types`` row (the catalog), ordered by cluster, group, resource."""
    t = resource_types.c
    return select(
        t.cluster,
        t.api_group,
        t.version,
        t.resource,
        t.kind,
        t.namespaced,
        t.short_names,
        t.verbs,
        t.storage_version,
        t.printer_columns,
    ).order_by(t.cluster, t.api_group, t.resource)


def fingerprint_statement(group: str, resource_names: Sequence[str]) -> Select[int, Any, Any]:
    """Count, sum of resourceVersions and latest write time of the rows of these resources,
    tombstones included (a delete or a list barrier rewrites a row; expiry removes it)."""
    return select(func.count(), func.sum(_r.resource_version), func.max(_r.synced_at)).where(
        _r.api_group == group, _r.resource.in_(list(resource_names))
    )


def changes_statement(
    after: int, upto: int, group_resources: Sequence[GroupResource] | None, limit: int
) -> Select[Any]:
    """Rows written after revision ``after`` up to ``upto`` (of these resources), tombstones
    included, in revision order: a range of ``ix_resources_revision`` (or of
    ``ix_resources_gr_revision`` per resource)."""
    stmt = select(*CHANGE_COLUMNS).where(_r.revision > after, _r.revision <= upto)
    if group_resources is not None:
        stmt = stmt.where(
            or_(*(and_(_r.api_group == gr.group, _r.resource == gr.resource) for gr in group_resources))
        )
    return stmt.order_by(_r.revision).limit(limit)


def window_statement() -> Select[Any]:
    """``(floor, head)`` of the change feed."""
    return select(store_revision.c.floor, store_revision.c.head).where(store_revision.c.id == 1)


def ping_statement() -> Select[Any]:
    """``SELECT 1``: whether the store answers (readiness)."""
    return select(literal(1))
