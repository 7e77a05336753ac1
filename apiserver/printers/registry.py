"""Which printer kube-apiserver uses for which (group, resource)."""

from __future__ import annotations

from apiserver.printers.base import AGE, NAME, Printer
from apiserver.printers.core import EVENTS_V1
from apiserver.printers.core import PRINTERS as CORE
from apiserver.printers.format import age, get_str
from apiserver.printers.others import BY_GROUP, CREATED_AT
from apiserver.printers.workloads import APPS, BATCH

NAME_AGE_PRINTER = Printer((NAME, AGE), lambda o, now: [get_str(o, "metadata", "name"), age(o, now)])
"""What a custom resource without printer columns shows (apiextensions defaults an Age column)."""

DEFAULT_PRINTER = CREATED_AT
"""kube-apiserver's default table convertor for built-in kinds without a printer: NAME, CREATED AT."""

_BUILTIN: dict[str, dict[str, Printer]] = {
    "": CORE,
    "apps": APPS,
    "extensions": {**APPS, **BY_GROUP["extensions"]},
    "batch": BATCH,
    "events.k8s.io": {"events": EVENTS_V1},
    **{g: p for g, p in BY_GROUP.items() if g != "extensions"},
}

BUILTIN_GROUPS = frozenset(
    {
        *_BUILTIN,
        "admissionregistration.k8s.io",
        "apiregistration.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "certificates.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "internal.apiserver.k8s.io",
        "node.k8s.io",
        "resource.k8s.io",
        "storagemigration.k8s.io",
    }
)


def printer_for(group: str, resource: str) -> Printer | None:
    """The built-in printer of ``resource.group``; None when it is not a kind kube-apiserver prints
    with a dedicated printer (the caller then uses the CRD columns or a default)."""
    return _BUILTIN.get(group, {}).get(resource)
