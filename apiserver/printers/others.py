"""Printers of the remaining built-in groups: networking, rbac, storage, coordination, policy, ..."""

from __future__ import annotations

import datetime as dt
from typing import Any

from apiserver.printers.base import AGE, NAME, Column, Printer, wide
from apiserver.printers.format import (
    NONE,
    Obj,
    age,
    format_selector,
    get,
    get_int,
    get_list,
    get_map,
    get_str,
)


def _ingress_cells(ing: Obj, now: dt.datetime) -> list[Any]:
    class_name = get(ing, "spec", "ingressClassName")
    rules = get_list(ing, "spec", "rules")
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        if not more and get_str(rule, "host"):
            hosts.append(get_str(rule, "host"))
    hosts_cell = ",".join(hosts) + (f" + {len(rules) - 3} more..." if more else "") if hosts else "*"
    address = sorted(
        {
            get_str(i, "ip") or get_str(i, "hostname")
            for i in get_list(ing, "status", "loadBalancer", "ingress")
            if get_str(i, "ip") or get_str(i, "hostname")
        }
    )
    return [
        get_str(ing, "metadata", "name"),
        class_name if isinstance(class_name, str) else NONE,
        hosts_cell,
        ",".join(address),
        "80, 443" if get_list(ing, "spec", "tls") else "80",
        age(ing, now),
    ]


INGRESSES = Printer(
    (
        NAME,
        Column("Class", description="The name of the IngressClass resource."),
        Column("Hosts", description="Hosts that incoming requests are matched against."),
        Column("Address", description="Address is a list containing ingress points for the load-balancer"),
        Column("Ports", description="Ports of TLS configurations that open"),
        AGE,
    ),
    _ingress_cells,
)


def _ingressclass_cells(ic: Obj, now: dt.datetime) -> list[Any]:
    name = get_str(ic, "metadata", "name")
    if get(ic, "metadata", "annotations", "ingressclass.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    params = get_map(ic, "spec", "parameters")
    parameters = NONE
    if params:
        parameters = get_str(params, "kind")
        if isinstance(params.get("apiGroup"), str):
            parameters += "." + params["apiGroup"]
        parameters += "/" + get_str(params, "name")
    return [name, get_str(ic, "spec", "controller"), parameters, age(ic, now)]


INGRESSCLASSES = Printer(
    (
        NAME,
        Column("Controller", description="Controller that implements this class."),
        Column("Parameters", description="A reference to a resource with additional parameters."),
        AGE,
    ),
    _ingressclass_cells,
)

NETWORKPOLICIES = Printer(
    (NAME, Column("Pod-Selector", description="Selects the pods this policy applies to."), AGE),
    lambda o, now: [
        get_str(o, "metadata", "name"),
        format_selector(get_map(o, "spec", "podSelector")),
        age(o, now),
    ],
)


def _subjects(obj: Obj) -> tuple[str, str, str]:
    users, groups, sas = [], [], []
    for s in get_list(obj, "subjects"):
        kind = get_str(s, "kind")
        if kind == "User":
            users.append(get_str(s, "name"))
        elif kind == "Group":
            groups.append(get_str(s, "name"))
        elif kind == "ServiceAccount":
            sas.append(f"{get_str(s, 'namespace')}/{get_str(s, 'name')}")
    return ", ".join(users), ", ".join(groups), ", ".join(sas)


def _binding_cells(b: Obj, now: dt.datetime) -> list[Any]:
    role_ref = f"{get_str(b, 'roleRef', 'kind')}/{get_str(b, 'roleRef', 'name')}"
    return [get_str(b, "metadata", "name"), role_ref, age(b, now), *_subjects(b)]


BINDINGS = Printer(
    (
        NAME,
        Column("Role", description="RoleRef references the role granted."),
        AGE,
        wide("Users", "Users in the roleBinding"),
        wide("Groups", "Groups in the roleBinding"),
        wide("ServiceAccounts", "ServiceAccounts in the roleBinding"),
    ),
    _binding_cells,
)

CREATED_AT = Printer(
    (NAME, Column("Created At", "date", description="CreationTimestamp of the object.")),
    lambda o, now: [get_str(o, "metadata", "name"), _created_at(o)],
)
"""kube-apiserver's default table convertor (roles, clusterroles, limitranges, CRDs themselves)."""


def _created_at(o: Obj) -> str:
    value = get_str(o, "metadata", "creationTimestamp")
    return value or "0001-01-01T00:00:00Z"


def _storageclass_cells(sc: Obj, now: dt.datetime) -> list[Any]:
    name = get_str(sc, "metadata", "name")
    annotations = get_map(sc, "metadata", "annotations")
    if (
        annotations.get("storageclass.kubernetes.io/is-default-class") == "true"
        or annotations.get("storageclass.beta.kubernetes.io/is-default-class") == "true"
    ):
        name += " (default)"
    expansion = get(sc, "allowVolumeExpansion")
    return [
        name,
        get_str(sc, "provisioner"),
        get_str(sc, "reclaimPolicy") or "Delete",
        get_str(sc, "volumeBindingMode") or "Immediate",
        expansion is True,
        age(sc, now),
    ]


STORAGECLASSES = Printer(
    (
        NAME,
        Column("Provisioner", description="Provisioner indicates the type of the provisioner."),
        Column("ReclaimPolicy", description="Reclaim policy of dynamically provisioned volumes."),
        Column("VolumeBindingMode", description="When volumes should be provisioned and bound."),
        Column("AllowVolumeExpansion", description="Whether the storage class allows volume expand."),
        AGE,
    ),
    _storageclass_cells,
)

LEASES = Printer(
    (NAME, Column("Holder", description="The identity of the holder of a current lease."), AGE),
    lambda o, now: [get_str(o, "metadata", "name"), get_str(o, "spec", "holderIdentity"), age(o, now)],
)


def _int_or_string(value: Any) -> str:
    if value is None:
        return "N/A"
    return str(value)


PODDISRUPTIONBUDGETS = Printer(
    (
        NAME,
        Column("Min Available", description="The minimum number of pods that must be available."),
        Column("Max Unavailable", description="The maximum number of pods that may be unavailable."),
        Column("Allowed Disruptions", "integer", description="Pods that may be disrupted at this time."),
        AGE,
    ),
    lambda o, now: [
        get_str(o, "metadata", "name"),
        _int_or_string(get(o, "spec", "minAvailable")),
        _int_or_string(get(o, "spec", "maxUnavailable")),
        get_int(o, "status", "disruptionsAllowed"),
        age(o, now),
    ],
)

PRIORITYCLASSES = Printer(
    (
        NAME,
        Column("Value", "integer", description="The value of this priority class."),
        Column("Global-Default", "boolean", description="Whether this is the global default."),
        AGE,
        Column("PreemptionPolicy", description="Policy for preempting pods with lower priority."),
    ),
    lambda o, now: [
        get_str(o, "metadata", "name"),
        get_int(o, "value"),
        get(o, "globalDefault") is True,
        age(o, now),
        get_str(o, "preemptionPolicy"),
    ],
)


def _limited(items: list[str], count: int) -> str:
    text = ",".join(items[:3])
    if count > 3:
        return f"{text} + {count - 3} more..."
    return text or "<unset>"


def _slice_cells(es: Obj, now: dt.datetime) -> list[Any]:
    ports = []
    for p in get_list(es, "ports"):
        if isinstance(get(p, "port"), int):
            ports.append(str(get(p, "port")))
        elif isinstance(get(p, "name"), str):
            ports.append(get_str(p, "name"))
        else:
            ports.append("*")
    addresses = [str(a) for e in get_list(es, "endpoints") for a in get_list(e, "addresses")]
    return [
        get_str(es, "metadata", "name"),
        get_str(es, "addressType"),
        _limited(ports, len(ports)),
        _limited(addresses, len(addresses)),
        age(es, now),
    ]


ENDPOINTSLICES = Printer(
    (
        NAME,
        Column("AddressType", description="The type of address carried by this EndpointSlice."),
        Column("Ports", description="Network ports exposed by each endpoint."),
        Column("Endpoints", description="Unique endpoints in this slice."),
        AGE,
    ),
    _slice_cells,
)

BY_GROUP: dict[str, dict[str, Printer]] = {
    "networking.k8s.io": {
        "ingresses": INGRESSES,
        "ingressclasses": INGRESSCLASSES,
        "networkpolicies": NETWORKPOLICIES,
    },
    "extensions": {"ingresses": INGRESSES, "networkpolicies": NETWORKPOLICIES},
    "rbac.authorization.k8s.io": {
        "rolebindings": BINDINGS,
        "clusterrolebindings": BINDINGS,
        "roles": CREATED_AT,
        "clusterroles": CREATED_AT,
    },
    "storage.k8s.io": {"storageclasses": STORAGECLASSES},
    "coordination.k8s.io": {"leases": LEASES},
    "policy": {"poddisruptionbudgets": PODDISRUPTIONBUDGETS},
    "scheduling.k8s.io": {"priorityclasses": PRIORITYCLASSES},
    "discovery.k8s.io": {"endpointslices": ENDPOINTSLICES},
    "apiextensions.k8s.io": {"customresourcedefinitions": CREATED_AT},
    "apiregistration.k8s.io": {},
}
