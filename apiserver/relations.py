"""Relationship queries in a request: parsing and validating them, and the caller's permissions.

Spelled as the other search conditions, as label-selector keys under ``search.clusterpedia.io/``
(what plain kubectl can carry) and as URL query parameters:

* ``relation`` (``search.clusterpedia.io/relation``): ``owners``, ``top-owner``, ``selected``,
  ``node`` or ``events`` (``common.storage.relations``);
* the subject, by uid: ``ofUID`` (``.../of-uid``); or by name: ``ofName`` (``.../of-name``) in one
  cluster (the path's, or the one value of ``clusters``), of ``ofGR`` (``.../of-gr``,
  ``<resource>.<group>``; services for ``selected`` and pods for ``node`` when omitted), in
  ``ofNamespace`` (``.../of-namespace``; default the path namespace, else any namespace).

Every value is checked here (a 400 before the store is asked). With member-rbac, the walk may read
only what the caller may list (:func:`guarded`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from apiserver.permissions import User
from apiserver.visibility import MemberRBAC
from common.errors import BadRequest
from common.storage.query import GroupResource, Search, SetFilter
from common.storage.relations import SUBJECT_RESOURCES, Relation, RelationKind, Subject

LABEL_PARAMS = {
    "relation": "relation",
    "of-uid": "ofUID",
    "of-name": "ofName",
    "of-gr": "ofGR",
    "of-namespace": "ofNamespace",
}
"""Label selector key (after ``search.clusterpedia.io/``) -> URL query parameter."""
PARAMS: tuple[str, ...] = tuple(LABEL_PARAMS.values())

# as apiserver.search validates names, uids and group/resources
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._:@+-]{0,251}[A-Za-z0-9_])?")
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_GROUP_RESOURCE = re.compile(r"([a-z0-9][a-z0-9-]{0,62})(\.[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?")
_KINDS = ", ".join(k.value for k in RelationKind)


def parse_relation(
    values: Mapping[str, str], *, cluster: str, namespace: str, clusters: SetFilter
) -> Relation | None:
    """The relation of a request from its scalar conditions (URL parameter -> value), or None.
    ``cluster``/``namespace``: the path's; ``clusters``: the clusters condition."""
    given = {p: values[p].strip() for p in PARAMS if values.get(p, "").strip()}
    if not given:
        return None
    kind_text = given.get("relation")
    if kind_text is None:
        raise BadRequest(f"{', '.join(sorted(given))} needs relation ({_KINDS})")
    try:
        kind = RelationKind(kind_text)
    except ValueError:
        raise BadRequest(f'unknown relation "{kind_text}": expected one of {_KINDS}') from None
    uid, name = given.get("ofUID", ""), given.get("ofName", "")
    if bool(uid) == bool(name):
        raise BadRequest(f'relation "{kind}" needs its subject: ofUID, or ofName (not both)')
    if uid:
        if not _UID.fullmatch(uid):
            raise BadRequest(f'invalid ofUID "{uid}"')
        if "ofGR" in given or "ofNamespace" in given:
            raise BadRequest("ofUID names the subject alone: ofGR and ofNamespace go with ofName")
        return Relation(kind, Subject(uid=uid))
    if not _NAME.fullmatch(name):
        raise BadRequest(f'invalid ofName "{name}": not a valid Kubernetes name')
    one = cluster or (
        clusters.include[0] if clusters.include is not None and len(clusters.include) == 1 else ""
    )
    if not one:
        raise BadRequest("ofName needs exactly one cluster: use the cluster path or one value in clusters")
    subject_ns = given.get("ofNamespace") or namespace or None
    if subject_ns is not None and not _NAME.fullmatch(subject_ns):
        raise BadRequest(f'invalid ofNamespace "{subject_ns}"')
    fixed = SUBJECT_RESOURCES.get(kind)
    gr_text = given.get("ofGR", "")
    if gr_text:
        if not _GROUP_RESOURCE.fullmatch(gr_text):
            raise BadRequest(f'invalid ofGR "{gr_text}": expected <resource>.<group>, e.g. deployments.apps')
        res, _, grp = gr_text.partition(".")
        gr = GroupResource(grp, res)
        if fixed is not None and gr != fixed:
            raise BadRequest(f'relation "{kind}" starts from {fixed.resource}: ofGR must be {fixed.resource}')
    elif fixed is not None:
        gr = fixed
    else:
        raise BadRequest(f'relation "{kind}" with ofName needs ofGR (e.g. pods, deployments.apps)')
    return Relation(
        kind, Subject(name=name, group=gr.group, resource=gr.resource, namespace=subject_ns, cluster=one)
    )


def guarded(search: Search, rbac: MemberRBAC, user: User) -> Search:
    """``search`` whose relation walks only objects ``user`` may list (member-rbac; the policies
    were refreshed by the request's ``grants``)."""
    rel = search.relation
    if rel is None:
        return search

    def readable(cluster: str, group: str, resource: str, namespace: str, name: str) -> bool:
        return rbac.access(user, cluster, group, resource).allows(namespace, name)

    return dataclasses.replace(search, relation=dataclasses.replace(rel, readable=readable))
