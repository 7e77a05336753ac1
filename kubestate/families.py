"""The metric families: kube-state-metrics' names, types, HELP texts and label sets, plus ``cluster``.

An operator's dashboards and alerts written for kube-state-metrics (``kube_pod_status_phase``,
``kube_deployment_status_replicas_available``, ``kube_node_status_condition`` ...) work on these
series unchanged once they aggregate or filter by the extra ``cluster`` label. The names, HELP
texts, types and label names follow upstream's stable list
(kubernetes/kube-state-metrics ``internal/store/testdata/stable-metrics-list.yaml``); the value
rules follow its stores (one series per possible phase with 1 on the current one, ``true``/
``false``/``unknown`` series per condition, quantities in base units).

Pure: an object's raw JSON in, exposition lines out. Each resource is decoded with a msgspec Struct
of just the fields its families read, so the rest of a 3-8 KB object is skipped, never built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import msgspec

Line = tuple[int, str]
"""(index of the family within its resource, one exposition line without the newline)."""


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...]
    """Label names besides ``cluster`` (documentation and tests; the lines carry them)."""


def escape(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def labelset(pairs: tuple[tuple[str, str], ...]) -> str:
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in pairs) + "}"


def number(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


# --- decoding: only the fields the families read -------------------------------------------------


class OwnerRef(msgspec.Struct):
    kind: str = ""
    name: str = ""
    controller: bool = False


class Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    ownerReferences: list[OwnerRef] = []


class Condition(msgspec.Struct):
    type: str = ""
    status: str = ""


class ContainerStatus(msgspec.Struct):
    name: str = ""
    restartCount: int = 0


class PodSpec(msgspec.Struct):
    nodeName: str = ""
    priorityClassName: str = ""
    hostNetwork: bool = False


class PodStatus(msgspec.Struct):
    phase: str = ""
    hostIP: str = ""
    podIP: str = ""
    conditions: list[Condition] = []
    containerStatuses: list[ContainerStatus] = []


class Pod(msgspec.Struct):
    metadata: Meta = msgspec.field(default_factory=Meta)
    spec: PodSpec = msgspec.field(default_factory=PodSpec)
    status: PodStatus = msgspec.field(default_factory=PodStatus)


class ReplicasSpec(msgspec.Struct):
    replicas: int | None = None


class DeploymentStatus(msgspec.Struct):
    replicas: int = 0
    availableReplicas: int = 0
    unavailableReplicas: int = 0
    updatedReplicas: int = 0
    readyReplicas: int = 0


class Deployment(msgspec.Struct):
    metadata: Meta = msgspec.field(default_factory=Meta)
    spec: ReplicasSpec = msgspec.field(default_factory=ReplicasSpec)
    status: DeploymentStatus = msgspec.field(default_factory=DeploymentStatus)


class StatefulSetStatus(msgspec.Struct):
    replicas: int = 0
    readyReplicas: int = 0
    availableReplicas: int = 0
    currentReplicas: int = 0
    updatedReplicas: int = 0


class StatefulSet(msgspec.Struct):
    metadata: Meta = msgspec.field(default_factory=Meta)
    spec: ReplicasSpec = msgspec.field(default_factory=ReplicasSpec)
    status: StatefulSetStatus = msgspec.field(default_factory=StatefulSetStatus)


class DaemonSetStatus(msgspec.Struct):
    desiredNumberScheduled: int = 0
    currentNumberScheduled: int = 0
    numberReady: int = 0
    numberAvailable: int = 0
    numberUnavailable: int = 0
    numberMisscheduled: int = 0
    updatedNumberScheduled: int = 0


class DaemonSet(msgspec.Struct):
    metadata: Meta = msgspec.field(default_factory=Meta)
    status: DaemonSetStatus = msgspec.field(default_factory=DaemonSetStatus)


class NodeSpec(msgspec.Struct):
    unschedulable: bool = False
    podCIDR: str = ""
    providerID: str = ""


class NodeInfo(msgspec.Struct):
    kernelVersion: str = ""
    osImage: str = ""
    containerRuntimeVersion: str = ""
    kubeletVersion: str = ""
    kubeProxyVersion: str = ""
    systemUUID: str = ""


class NodeAddress(msgspec.Struct):
    type: str = ""
    address: str = ""


class NodeStatus(msgspec.Struct):
    nodeInfo: NodeInfo = msgspec.field(default_factory=NodeInfo)
    addresses: list[NodeAddress] = []
    conditions: list[Condition] = []
    allocatable: dict[str, str] = {}


class Node(msgspec.Struct):
    metadata: Meta = msgspec.field(default_factory=Meta)
    spec: NodeSpec = msgspec.field(default_factory=NodeSpec)
    status: NodeStatus = msgspec.field(default_factory=NodeStatus)


class NamespaceStatus(msgspec.Struct):
    phase: str = ""


class Namespace(msgspec.Struct):
    metadata: Meta = msgspec.field(default_factory=Meta)
    status: NamespaceStatus = msgspec.field(default_factory=NamespaceStatus)


# --- quantities ------------------------------------------------------------------------------------

_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def parse_quantity(text: str) -> float | None:
    """A Kubernetes resource quantity (``3800m``, ``16Gi``, ``1e3``, ``110``) as a number; None when
    it is not one (the series is then left out, as a member would never serve such a value)."""
    s = text.strip()
    for width in (2, 1):
        if len(s) > width and s[-width:] in _SUFFIXES and s[-width:] != "":
            digits, mult = s[:-width], _SUFFIXES[s[-width:]]
            break
    else:
        digits, mult = s, Decimal(1)
    try:
        value = Decimal(digits) * mult
    except InvalidOperation:
        return None
    return float(value) if value.is_finite() else None


def resource_unit(resource: str) -> tuple[str, str]:
    """kube-state-metrics' (resource, unit) labels for a resource name of a ResourceList."""
    if resource == "cpu":
        return "cpu", "core"
    if resource in ("memory", "ephemeral-storage", "storage") or resource.startswith("hugepages-"):
        return resource.replace("-", "_").replace(".", "_").replace("/", "_"), "byte"
    return resource.replace("-", "_").replace(".", "_").replace("/", "_"), "integer"


# --- the resources and their families ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceMetrics:
    """The families of one resource and how one stored object becomes their lines."""

    key: str
    """The name in ``kube_state_metrics.resources`` (``pods``, ``deployments`` ...)."""
    group: str
    resource: str
    families: tuple[Family, ...]
    lines: Callable[[str, bytes], Iterator[Line]]
    """(cluster, raw object JSON) -> lines; raises msgspec.DecodeError/ValidationError on an object
    whose JSON does not fit (the collector counts and skips it)."""


POD_PHASES = ("Pending", "Succeeded", "Failed", "Running", "Unknown")
NAMESPACE_PHASES = ("Active", "Terminating")
CONDITION_VALUES = (("true", "True"), ("false", "False"), ("unknown", "Unknown"))

_POD_FAMILIES = (
    Family(
        "kube_pod_info",
        "gauge",
        "Information about pod.",
        (
            "namespace",
            "pod",
            "uid",
            "host_ip",
            "pod_ip",
            "node",
            "created_by_kind",
            "created_by_name",
            "priority_class",
            "host_network",
        ),
    ),
    Family("kube_pod_status_phase", "gauge", "The pods current phase.", ("namespace", "pod", "uid", "phase")),
    Family(
        "kube_pod_status_ready",
        "gauge",
        "Describes whether the pod is ready to serve requests.",
        ("namespace", "pod", "uid", "condition"),
    ),
    Family(
        "kube_pod_container_status_restarts_total",
        "counter",
        "The number of container restarts per container.",
        ("namespace", "pod", "uid", "container"),
    ),
)

_pod = msgspec.json.Decoder(Pod)


def _pod_lines(cluster: str, raw: bytes) -> Iterator[Line]:
    p = _pod.decode(raw)
    m = p.metadata
    base = (
        f'cluster="{escape(cluster)}",namespace="{escape(m.namespace)}",'
        f'pod="{escape(m.name)}",uid="{escape(m.uid)}"'
    )
    kind = name = "<none>"
    for ref in m.ownerReferences:
        if ref.controller:
            kind, name = ref.kind, ref.name
            break
    info = labelset(
        (
            ("host_ip", p.status.hostIP),
            ("pod_ip", p.status.podIP),
            ("node", p.spec.nodeName),
            ("created_by_kind", kind),
            ("created_by_name", name),
            ("priority_class", p.spec.priorityClassName),
            ("host_network", "true" if p.spec.hostNetwork else "false"),
        )
    )
    yield 0, f"kube_pod_info{{{base},{info[1:]} 1"
    if p.status.phase:
        for phase in POD_PHASES:
            yield 1, f'kube_pod_status_phase{{{base},phase="{phase}"}} {1 if phase == p.status.phase else 0}'
    for c in p.status.conditions:
        if c.type == "Ready":
            for label, status in CONDITION_VALUES:
                yield (
                    2,
                    f'kube_pod_status_ready{{{base},condition="{label}"}} {1 if c.status == status else 0}',
                )
    for cs in p.status.containerStatuses:
        yield (
            3,
            f'kube_pod_container_status_restarts_total{{{base},container="{escape(cs.name)}"}}'
            f" {cs.restartCount}",
        )


def _replica_lines(
    decoder: msgspec.json.Decoder[Deployment] | msgspec.json.Decoder[StatefulSet],
    kind_label: str,
    fields: tuple[tuple[str, str], ...],
) -> Callable[[str, bytes], Iterator[Line]]:
    def lines(cluster: str, raw: bytes) -> Iterator[Line]:
        obj = decoder.decode(raw)
        base = (
            f'{{cluster="{escape(cluster)}",namespace="{escape(obj.metadata.namespace)}",'
            f'{kind_label}="{escape(obj.metadata.name)}"}}'
        )
        for i, (metric, path) in enumerate(fields):
            if path == "spec.replicas":
                if obj.spec.replicas is None:
                    continue
                value = obj.spec.replicas
            else:
                value = getattr(obj.status, path.removeprefix("status."))
            yield i, f"{metric}{base} {value}"

    return lines


_DEPLOYMENT_FIELDS = (
    ("kube_deployment_spec_replicas", "spec.replicas", "Number of desired pods for a deployment."),
    ("kube_deployment_status_replicas", "status.replicas", "The number of replicas per deployment."),
    (
        "kube_deployment_status_replicas_available",
        "status.availableReplicas",
        "The number of available replicas per deployment.",
    ),
    (
        "kube_deployment_status_replicas_unavailable",
        "status.unavailableReplicas",
        "The number of unavailable replicas per deployment.",
    ),
    (
        "kube_deployment_status_replicas_updated",
        "status.updatedReplicas",
        "The number of updated replicas per deployment.",
    ),
    (
        "kube_deployment_status_replicas_ready",
        "status.readyReplicas",
        "The number of ready replicas per deployment.",
    ),
)

_STATEFULSET_FIELDS = (
    ("kube_statefulset_replicas", "spec.replicas", "Number of desired pods for a StatefulSet."),
    ("kube_statefulset_status_replicas", "status.replicas", "The number of replicas per StatefulSet."),
    (
        "kube_statefulset_status_replicas_available",
        "status.availableReplicas",
        "The number of available replicas per StatefulSet.",
    ),
    (
        "kube_statefulset_status_replicas_current",
        "status.currentReplicas",
        "The number of current replicas per StatefulSet.",
    ),
    (
        "kube_statefulset_status_replicas_ready",
        "status.readyReplicas",
        "The number of ready replicas per StatefulSet.",
    ),
    (
        "kube_statefulset_status_replicas_updated",
        "status.updatedReplicas",
        "The number of updated replicas per StatefulSet.",
    ),
)

_DAEMONSET_FIELDS = (
    (
        "kube_daemonset_status_current_number_scheduled",
        "currentNumberScheduled",
        "The number of nodes running at least one daemon pod and are supposed to.",
    ),
    (
        "kube_daemonset_status_desired_number_scheduled",
        "desiredNumberScheduled",
        "The number of nodes that should be running the daemon pod.",
    ),
    (
        "kube_daemonset_status_number_available",
        "numberAvailable",
        "The number of nodes that should be running the daemon pod and have one or more of the"
        " daemon pod running and available",
    ),
    (
        "kube_daemonset_status_number_misscheduled",
        "numberMisscheduled",
        "The number of nodes running a daemon pod but are not supposed to.",
    ),
    (
        "kube_daemonset_status_number_ready",
        "numberReady",
        "The number of nodes that should be running the daemon pod and have one or more of the"
        " daemon pod running and ready.",
    ),
    (
        "kube_daemonset_status_number_unavailable",
        "numberUnavailable",
        "The number of nodes that should be running the daemon pod and have none of the daemon"
        " pod running and available",
    ),
    (
        "kube_daemonset_status_updated_number_scheduled",
        "updatedNumberScheduled",
        "The total number of nodes that are running updated daemon pod",
    ),
)

_daemonset = msgspec.json.Decoder(DaemonSet)


def _daemonset_lines(cluster: str, raw: bytes) -> Iterator[Line]:
    d = _daemonset.decode(raw)
    base = (
        f'{{cluster="{escape(cluster)}",namespace="{escape(d.metadata.namespace)}",'
        f'daemonset="{escape(d.metadata.name)}"}}'
    )
    for i, (metric, attr, _) in enumerate(_DAEMONSET_FIELDS):
        yield i, f"{metric}{base} {getattr(d.status, attr)}"


_NODE_FAMILIES = (
    Family(
        "kube_node_info",
        "gauge",
        "Information about a cluster node.",
        (
            "node",
            "kernel_version",
            "os_image",
            "container_runtime_version",
            "kubelet_version",
            "kubeproxy_version",
            "provider_id",
            "pod_cidr",
            "system_uuid",
            "internal_ip",
        ),
    ),
    Family("kube_node_spec_unschedulable", "gauge", "Whether a node can schedule new pods.", ("node",)),
    Family(
        "kube_node_status_condition",
        "gauge",
        "The condition of a cluster node.",
        ("node", "condition", "status"),
    ),
    Family(
        "kube_node_status_allocatable",
        "gauge",
        "The allocatable for different resources of a node that are available for scheduling.",
        ("node", "resource", "unit"),
    ),
)

_node = msgspec.json.Decoder(Node)


def _node_lines(cluster: str, raw: bytes) -> Iterator[Line]:
    n = _node.decode(raw)
    base = f'cluster="{escape(cluster)}",node="{escape(n.metadata.name)}"'
    ni = n.status.nodeInfo
    internal_ip = next((a.address for a in n.status.addresses if a.type == "InternalIP"), "")
    info = labelset(
        (
            ("kernel_version", ni.kernelVersion),
            ("os_image", ni.osImage),
            ("container_runtime_version", ni.containerRuntimeVersion),
            ("kubelet_version", ni.kubeletVersion),
            ("kubeproxy_version", ni.kubeProxyVersion),
            ("provider_id", n.spec.providerID),
            ("pod_cidr", n.spec.podCIDR),
            ("system_uuid", ni.systemUUID),
            ("internal_ip", internal_ip),
        )
    )
    yield 0, f"kube_node_info{{{base},{info[1:]} 1"
    yield 1, f"kube_node_spec_unschedulable{{{base}}} {1 if n.spec.unschedulable else 0}"
    for c in n.status.conditions:
        cond = escape(c.type)
        for label, status in CONDITION_VALUES:
            yield (
                2,
                f'kube_node_status_condition{{{base},condition="{cond}",status="{label}"}}'
                f" {1 if c.status == status else 0}",
            )
    for resource, quantity in sorted(n.status.allocatable.items()):
        value = parse_quantity(quantity)
        if value is None:
            continue
        res, unit = resource_unit(resource)
        yield (
            3,
            f'kube_node_status_allocatable{{{base},resource="{escape(res)}",unit="{unit}"}} {number(value)}',
        )


_namespace = msgspec.json.Decoder(Namespace)


def _namespace_lines(cluster: str, raw: bytes) -> Iterator[Line]:
    ns = _namespace.decode(raw)
    base = f'cluster="{escape(cluster)}",namespace="{escape(ns.metadata.name)}"'
    if ns.status.phase:
        for phase in NAMESPACE_PHASES:
            yield (
                0,
                f'kube_namespace_status_phase{{{base},phase="{phase}"}}'
                f" {1 if phase == ns.status.phase else 0}",
            )


def _field_families(fields: tuple[tuple[str, str, str], ...], kind_label: str) -> tuple[Family, ...]:
    return tuple(Family(name, "gauge", help_text, ("namespace", kind_label)) for name, _, help_text in fields)


RESOURCES: tuple[ResourceMetrics, ...] = (
    ResourceMetrics("pods", "", "pods", _POD_FAMILIES, _pod_lines),
    ResourceMetrics(
        "deployments",
        "apps",
        "deployments",
        _field_families(_DEPLOYMENT_FIELDS, "deployment"),
        _replica_lines(
            msgspec.json.Decoder(Deployment), "deployment", tuple((n, p) for n, p, _ in _DEPLOYMENT_FIELDS)
        ),
    ),
    ResourceMetrics(
        "statefulsets",
        "apps",
        "statefulsets",
        _field_families(_STATEFULSET_FIELDS, "statefulset"),
        _replica_lines(
            msgspec.json.Decoder(StatefulSet), "statefulset", tuple((n, p) for n, p, _ in _STATEFULSET_FIELDS)
        ),
    ),
    ResourceMetrics(
        "daemonsets", "apps", "daemonsets", _field_families(_DAEMONSET_FIELDS, "daemonset"), _daemonset_lines
    ),
    ResourceMetrics("nodes", "", "nodes", _NODE_FAMILIES, _node_lines),
    ResourceMetrics(
        "namespaces",
        "",
        "namespaces",
        (
            Family(
                "kube_namespace_status_phase",
                "gauge",
                "kubernetes namespace status phase.",
                ("namespace", "phase"),
            ),
        ),
        _namespace_lines,
    ),
)
"""Every resource the tier can serve, in exposition order."""

RESOURCE_KEYS: tuple[str, ...] = tuple(r.key for r in RESOURCES)


def select(keys: list[str]) -> tuple[ResourceMetrics, ...]:
    """The resources named in ``kube_state_metrics.resources``; ValueError names an unknown one."""
    unknown = sorted(set(keys) - set(RESOURCE_KEYS))
    if unknown:
        raise ValueError(
            f"kube_state_metrics.resources: unknown {', '.join(unknown)} (known: {', '.join(RESOURCE_KEYS)})"
        )
    return tuple(r for r in RESOURCES if r.key in keys)


def header(family: Family) -> str:
    return f"# HELP {family.name} {family.help}\n# TYPE {family.name} {family.type}\n"
