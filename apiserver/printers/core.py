"""Printers of the core (``""``) group: pods, services, configmaps, secrets, namespaces, nodes, ..."""

from __future__ import annotations

import datetime as dt
from typing import Any

from apiserver.printers.base import AGE, NAME, Column, Printer, wide
from apiserver.printers.format import (
    NONE,
    Obj,
    access_modes,
    age,
    containers_cells,
    format_labels,
    get,
    get_int,
    get_list,
    get_map,
    get_str,
    human_duration,
    parse_time,
    since,
)

STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


def _pod_cells(pod: Obj, now: dt.datetime) -> list[Any]:
    spec = get_map(pod, "spec")
    status = get_map(pod, "status")
    phase = get_str(status, "phase")
    reason = get_str(status, "reason") or phase
    conditions = get_list(status, "conditions")
    for cond in conditions:
        if get_str(cond, "type") == "PodScheduled" and get_str(cond, "reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = {get_str(c, "name"): c for c in get_list(spec, "initContainers")}

    def restartable(name: str) -> bool:
        return get_str(init_specs.get(name), "restartPolicy") == "Always"

    total = len(get_list(spec, "containers")) + sum(1 for n in init_specs if restartable(n))
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: dt.datetime | None = None
    last_sidecar_restart: dt.datetime | None = None

    def later(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
        if b is None:
            return a
        return b if a is None or b > a else a

    initializing = False
    init_statuses = get_list(status, "initContainerStatuses")
    n_init = len(get_list(spec, "initContainers"))
    for i, cs in enumerate(init_statuses):
        name = get_str(cs, "name")
        restarts += get_int(cs, "restartCount")
        finished = parse_time(get(cs, "lastState", "terminated", "finishedAt"))
        last_restart = later(last_restart, finished)
        if restartable(name):
            sidecar_restarts += get_int(cs, "restartCount")
            last_sidecar_restart = later(last_sidecar_restart, finished)
        terminated = get(cs, "state", "terminated")
        waiting_reason = get_str(cs, "state", "waiting", "reason")
        if terminated is not None and get_int(terminated, "exitCode") == 0:
            continue
        if restartable(name) and get(cs, "started") is True:
            if get(cs, "ready") is True:
                ready += 1
            continue
        if terminated is not None:
            t_reason = get_str(terminated, "reason")
            if t_reason:
                reason = "Init:" + t_reason
            elif get_int(terminated, "signal") != 0:
                reason = f"Init:Signal:{get_int(terminated, 'signal')}"
            else:
                reason = f"Init:ExitCode:{get_int(terminated, 'exitCode')}"
        elif waiting_reason and waiting_reason != "PodInitializing":
            reason = "Init:" + waiting_reason
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        error_reason = ""
        for cs in reversed(get_list(status, "containerStatuses")):
            restarts += get_int(cs, "restartCount")
            last_restart = later(last_restart, parse_time(get(cs, "lastState", "terminated", "finishedAt")))
            waiting_reason = get_str(cs, "state", "waiting", "reason")
            terminated = get(cs, "state", "terminated")
            if waiting_reason:
                reason = waiting_reason
            elif terminated is not None:
                t_reason = get_str(terminated, "reason")
                if t_reason:
                    reason = t_reason
                elif get_int(terminated, "signal") != 0:
                    reason = f"Signal:{get_int(terminated, 'signal')}"
                else:
                    reason = f"ExitCode:{get_int(terminated, 'exitCode')}"
                if get_int(terminated, "exitCode") != 0:
                    error_reason = reason
            elif get(cs, "ready") is True and get(cs, "state", "running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed":
            if has_running and _condition_true(conditions, "Ready"):
                reason = "Running"
            elif error_reason:
                reason = error_reason
            elif has_running:
                reason = "NotReady"

    if get(pod, "metadata", "deletionTimestamp") is not None:
        if get_str(status, "reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"

    pod_ip = get_str(status, "podIPs", 0, "ip") or NONE
    node = get_str(spec, "nodeName") or NONE
    nominated = get_str(status, "nominatedNodeName") or NONE
    gates = get_list(spec, "readinessGates")
    readiness = NONE
    if gates:
        true_count = 0
        for gate in gates:
            for cond in conditions:
                if get_str(cond, "type") == get_str(gate, "conditionType"):
                    if get_str(cond, "status") == "True":
                        true_count += 1
                    break
        readiness = f"{true_count}/{len(gates)}"
    return [
        get_str(pod, "metadata", "name"),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        age(pod, now),
        pod_ip,
        node,
        nominated,
        readiness,
    ]


def _condition_true(conditions: list[Any], type_: str) -> bool:
    for cond in conditions:
        if get_str(cond, "type") == type_:
            return get_str(cond, "status") == "True"
    return False


PODS = Printer(
    (
        NAME,
        Column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
        Column("Status", description="The aggregate status of the containers in this pod."),
        Column("Restarts", description="The number of times the containers in this pod have been restarted."),
        AGE,
        wide("IP", "IP address allocated to the pod."),
        wide("Node", "NodeName of the node the pod is scheduled on."),
        wide("Nominated Node", "nominatedNodeName of the pod."),
        wide("Readiness Gates", "Readiness gates of the pod."),
    ),
    _pod_cells,
)


def _lb_ingress(obj: Obj) -> list[str]:
    seen = set()
    for ing in get_list(obj, "status", "loadBalancer", "ingress"):
        value = get_str(ing, "ip") or get_str(ing, "hostname")
        if value:
            seen.add(value)
    return sorted(seen)


def _service_external_ip(svc: Obj) -> str:
    svc_type = get_str(svc, "spec", "type")
    external = [str(x) for x in get_list(svc, "spec", "externalIPs")]
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else NONE
    if svc_type == "LoadBalancer":
        lb = _lb_ingress(svc)
        if external:
            return ",".join(lb + external)
        return ",".join(lb) if lb else "<pending>"
    if svc_type == "ExternalName":
        return get_str(svc, "spec", "externalName")
    return "<unknown>"


def _ports(svc: Obj) -> str:
    pieces = []
    for p in get_list(svc, "spec", "ports"):
        port, proto, node_port = get_int(p, "port"), get_str(p, "protocol"), get_int(p, "nodePort")
        pieces.append(f"{port}:{node_port}/{proto}" if node_port > 0 else f"{port}/{proto}")
    return ",".join(pieces) or NONE


def _service_cells(svc: Obj, now: dt.datetime) -> list[Any]:
    return [
        get_str(svc, "metadata", "name"),
        get_str(svc, "spec", "type"),
        get_str(svc, "spec", "clusterIPs", 0) or NONE,
        _service_external_ip(svc),
        _ports(svc),
        age(svc, now),
        format_labels(get(svc, "spec", "selector")),
    ]


SERVICES = Printer(
    (
        NAME,
        Column("Type", description="Type determines how the Service is exposed."),
        Column("Cluster-IP", description="The IP address of the service."),
        Column("External-IP", description="The external IP addresses of the service."),
        Column("Port(s)", description="The ports exposed by the service."),
        AGE,
        wide("Selector", "Route service traffic to pods with label keys and values matching this selector."),
    ),
    _service_cells,
)

CONFIGMAPS = Printer(
    (NAME, Column("Data", description="Number of data and binaryData keys."), AGE),
    lambda o, now: [
        get_str(o, "metadata", "name"),
        len(get_map(o, "data")) + len(get_map(o, "binaryData")),
        age(o, now),
    ],
)

SECRETS = Printer(
    (
        NAME,
        Column("Type", description="Used to facilitate programmatic handling of secret data."),
        Column("Data", description="Number of data keys."),
        AGE,
    ),
    lambda o, now: [get_str(o, "metadata", "name"), get_str(o, "type"), len(get_map(o, "data")), age(o, now)],
)

NAMESPACES = Printer(
    (NAME, Column("Status", description="The status of the namespace"), AGE),
    lambda o, now: [get_str(o, "metadata", "name"), get_str(o, "status", "phase"), age(o, now)],
)

SERVICEACCOUNTS = Printer(
    (NAME, AGE),
    lambda o, now: [get_str(o, "metadata", "name"), age(o, now)],
)


def _node_cells(node: Obj, now: dt.datetime) -> list[Any]:
    status: list[str] = []
    for cond in get_list(node, "status", "conditions"):
        if get_str(cond, "type") == "Ready":
            status = ["Ready" if get_str(cond, "status") == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if get(node, "spec", "unschedulable") is True:
        status.append("SchedulingDisabled")
    roles = set()
    for key, value in get_map(node, "metadata", "labels").items():
        if key.startswith("node-role.kubernetes.io/") and len(key) > len("node-role.kubernetes.io/"):
            roles.add(key[len("node-role.kubernetes.io/") :])
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    info = get_map(node, "status", "nodeInfo")
    kernel = get_str(info, "kernelVersion") or "<unknown>"
    if get_str(info, "architecture"):
        kernel += f" ({get_str(info, 'architecture')})"

    def address(kind: str) -> str:
        for a in get_list(node, "status", "addresses"):
            if get_str(a, "type") == kind:
                return get_str(a, "address")
        return NONE

    return [
        get_str(node, "metadata", "name"),
        ",".join(status),
        ",".join(sorted(roles)) or NONE,
        age(node, now),
        get_str(info, "kubeletVersion"),
        address("InternalIP"),
        address("ExternalIP"),
        get_str(info, "osImage") or "<unknown>",
        kernel,
        get_str(info, "containerRuntimeVersion") or "<unknown>",
    ]


NODES = Printer(
    (
        NAME,
        Column("Status", description="The status of the node"),
        Column("Roles", description="The roles of the node"),
        AGE,
        Column("Version", description="Kubelet Version reported by the node."),
        wide("Internal-IP", "List of addresses reachable to the node."),
        wide("External-IP", "List of addresses reachable to the node."),
        wide("OS-Image", "OS Image reported by the node."),
        wide("Kernel-Version", "Kernel Version reported by the node."),
        wide("Container-Runtime", "ContainerRuntime Version reported by the node."),
    ),
    _node_cells,
)


def _endpoints_string(obj: Obj) -> str:
    subsets = get_list(obj, "subsets")
    if not subsets:
        return NONE
    shown: list[str] = []
    limit, more, count = 3, False, 0
    for ss in subsets:
        addresses = get_list(ss, "addresses")
        ports = get_list(ss, "ports")
        if not ports:
            count += len(addresses)
            for a in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(get_str(a, "ip"))
            continue
        for port in ports:
            count += len(addresses)
            for a in addresses:
                if len(shown) == limit:
                    more = True
                    break
                ip = get_str(a, "ip")
                host = f"[{ip}]" if ":" in ip else ip
                shown.append(f"{host}:{get_int(port, 'port')}")
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


ENDPOINTS = Printer(
    (NAME, Column("Endpoints", description="The set of all endpoints is the union of all subsets."), AGE),
    lambda o, now: [get_str(o, "metadata", "name"), _endpoints_string(o), age(o, now)],
)


def _event_cells(ev: Obj, now: dt.datetime, *, new_api: bool = False) -> list[Any]:
    if new_api:  # events.k8s.io/v1 field names
        first_ts, last_ts = get(ev, "deprecatedFirstTimestamp"), get(ev, "deprecatedLastTimestamp")
        count = get_int(ev, "deprecatedCount")
        involved = get_map(ev, "regarding")
        message = get_str(ev, "note")
        component = get_str(ev, "deprecatedSource", "component")
        host = get_str(ev, "deprecatedSource", "host")
    else:
        first_ts, last_ts = get(ev, "firstTimestamp"), get(ev, "lastTimestamp")
        count = get_int(ev, "count")
        involved = get_map(ev, "involvedObject")
        message = get_str(ev, "message")
        component = get_str(ev, "source", "component")
        host = get_str(ev, "source", "host")
    first = since(first_ts, now) if first_ts else since(get(ev, "eventTime"), now)
    last = since(last_ts, now) if last_ts else first
    series = get(ev, "series")
    if isinstance(series, dict):
        last = since(get(series, "lastObservedTime"), now)
        count = get_int(series, "count")
    elif count == 0:
        count = 1
    kind = get_str(involved, "kind").lower()
    target = f"{kind}/{get_str(involved, 'name')}" if get_str(involved, "name") else kind
    component = component or get_str(ev, "reportingController")
    host = host or get_str(ev, "reportingInstance")
    source = f"{component}, {host}" if host else component
    return [
        last,
        get_str(ev, "type"),
        get_str(ev, "reason"),
        target,
        get_str(involved, "fieldPath"),
        source,
        message.strip(),
        first,
        count,
        get_str(ev, "metadata", "name"),
    ]


_EVENT_COLUMNS = (
    Column(
        "Last Seen", description="The time at which the most recent occurrence of this event was recorded."
    ),
    Column("Type", description="Type of this event (Normal, Warning)."),
    Column("Reason", description="A short, machine understandable string for the transition."),
    Column("Object", description="The object that this event is about."),
    wide("Subobject", "The field of the object this event is about."),
    wide("Source", "The component reporting this event."),
    Column("Message", description="A human-readable description of the status of this operation."),
    wide("First Seen", "The time at which the event was first recorded."),
    wide("Count", "The number of times this event has occurred."),
    Column("Name", format="name", priority=1, description="Name must be unique within a namespace."),
)
EVENTS = Printer(_EVENT_COLUMNS, _event_cells)
EVENTS_V1 = Printer(_EVENT_COLUMNS, lambda o, now: _event_cells(o, now, new_api=True))


def _storage_class(obj: Obj) -> str:
    annotated = get(obj, "metadata", "annotations", STORAGE_CLASS_ANNOTATION)
    if isinstance(annotated, str):
        return annotated
    return get_str(obj, "spec", "storageClassName")


def _pvc_cells(pvc: Obj, now: dt.datetime) -> list[Any]:
    phase = get_str(pvc, "status", "phase")
    if get(pvc, "metadata", "deletionTimestamp") is not None:
        phase = "Terminating"
    volume = get_str(pvc, "spec", "volumeName")
    capacity = modes = ""
    if volume:
        modes = access_modes(get_list(pvc, "status", "accessModes"))
        capacity = get_str(pvc, "status", "capacity", "storage") or "0"
    vac = get(pvc, "spec", "volumeAttributesClassName")
    return [
        get_str(pvc, "metadata", "name"),
        phase,
        volume,
        capacity,
        modes,
        _storage_class(pvc),
        vac if isinstance(vac, str) else "<unset>",
        age(pvc, now),
        get_str(pvc, "spec", "volumeMode") or "<unset>",
    ]


PERSISTENTVOLUMECLAIMS = Printer(
    (
        NAME,
        Column("Status", description="Phase of the claim."),
        Column("Volume", description="The binding reference to the PersistentVolume backing this claim."),
        Column("Capacity", description="The actual resources of the underlying volume."),
        Column("Access Modes", description="The actual access modes the volume backing the PVC has."),
        Column("StorageClass", description="StorageClass of the pvc"),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pvc"),
        AGE,
        wide("VolumeMode", "Whether the volume is formatted or a raw block device."),
    ),
    _pvc_cells,
)


def _pv_cells(pv: Obj, now: dt.datetime) -> list[Any]:
    claim = ""
    ref = get(pv, "spec", "claimRef")
    if isinstance(ref, dict):
        claim = f"{get_str(ref, 'namespace')}/{get_str(ref, 'name')}"
    phase = get_str(pv, "status", "phase")
    if get(pv, "metadata", "deletionTimestamp") is not None:
        phase = "Terminating"
    vac = get(pv, "spec", "volumeAttributesClassName")
    return [
        get_str(pv, "metadata", "name"),
        get_str(pv, "spec", "capacity", "storage") or "0",
        access_modes(get_list(pv, "spec", "accessModes")),
        get_str(pv, "spec", "persistentVolumeReclaimPolicy"),
        phase,
        claim,
        _storage_class(pv),
        vac if isinstance(vac, str) else "<unset>",
        get_str(pv, "status", "reason"),
        age(pv, now),
        get_str(pv, "spec", "volumeMode") or "<unset>",
    ]


PERSISTENTVOLUMES = Printer(
    (
        NAME,
        Column("Capacity", description="Capacity of the persistent volume."),
        Column("Access Modes", description="The ways the volume can be mounted."),
        Column("Reclaim Policy", description="What happens to the volume when released from its claim."),
        Column("Status", description="Phase of the volume."),
        Column("Claim", description="The claim bound to this volume."),
        Column("StorageClass", description="StorageClass of the pv"),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pv"),
        Column("Reason", description="Reason the volume is in this phase."),
        AGE,
        wide("VolumeMode", "Whether the volume is formatted or a raw block device."),
    ),
    _pv_cells,
)


def _rc_cells(rc: Obj, now: dt.datetime) -> list[Any]:
    names, images = containers_cells(get_list(rc, "spec", "template", "spec", "containers"))
    return [
        get_str(rc, "metadata", "name"),
        get_int(rc, "spec", "replicas"),
        get_int(rc, "status", "replicas"),
        get_int(rc, "status", "readyReplicas"),
        age(rc, now),
        names,
        images,
        format_labels(get(rc, "spec", "selector")),
    ]


REPLICATIONCONTROLLERS = Printer(
    (
        NAME,
        Column("Desired", "integer", description="Number of desired replicas."),
        Column("Current", "integer", description="Number of observed replicas."),
        Column("Ready", "integer", description="Number of ready replicas."),
        AGE,
        wide("Containers", "Names of each container in the template."),
        wide("Images", "Images referenced by each container in the template."),
        wide("Selector", "Label query over pods that should match the replicas count."),
    ),
    _rc_cells,
)

PODTEMPLATES = Printer(
    (
        NAME,
        Column("Containers", description="Names of each container in the template."),
        Column("Images", description="Images referenced by each container in the template."),
        Column("Pod Labels", description="The labels for the pod template."),
    ),
    lambda o, now: [
        get_str(o, "metadata", "name"),
        *containers_cells(get_list(o, "template", "spec", "containers")),
        format_labels(get(o, "template", "metadata", "labels")),
    ],
)

PRINTERS: dict[str, Printer] = {
    "pods": PODS,
    "services": SERVICES,
    "configmaps": CONFIGMAPS,
    "secrets": SECRETS,
    "namespaces": NAMESPACES,
    "serviceaccounts": SERVICEACCOUNTS,
    "nodes": NODES,
    "endpoints": ENDPOINTS,
    "events": EVENTS,
    "persistentvolumeclaims": PERSISTENTVOLUMECLAIMS,
    "persistentvolumes": PERSISTENTVOLUMES,
    "replicationcontrollers": REPLICATIONCONTROLLERS,
    "podtemplates": PODTEMPLATES,
}
