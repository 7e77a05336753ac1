"""Printers of the apps and batch groups: deployments, replicasets, statefulsets, daemonsets, jobs, ..."""

from __future__ import annotations

import datetime as dt
from typing import Any

from apiserver.printers.base import AGE, NAME, Column, Printer, wide
from apiserver.printers.format import (
    NONE,
    Obj,
    age,
    bool_ptr,
    containers_cells,
    format_labels,
    format_selector,
    get,
    get_int,
    get_list,
    get_str,
    human_duration,
    parse_time,
    selector_string,
    since,
)

CONTAINERS = wide("Containers", "Names of each container in the template.")
IMAGES = wide("Images", "Images referenced by each container in the template.")
SELECTOR = wide("Selector", "Label selector for pods.")


def _template_containers(obj: Obj) -> tuple[str, str]:
    return containers_cells(get_list(obj, "spec", "template", "spec", "containers"))


def _deployment_cells(d: Obj, now: dt.datetime) -> list[Any]:
    names, images = _template_containers(d)
    return [
        get_str(d, "metadata", "name"),
        f"{get_int(d, 'status', 'readyReplicas')}/{get_int(d, 'spec', 'replicas')}",
        get_int(d, "status", "updatedReplicas"),
        get_int(d, "status", "availableReplicas"),
        age(d, now),
        names,
        images,
        selector_string(get(d, "spec", "selector")),
    ]


DEPLOYMENTS = Printer(
    (
        NAME,
        Column("Ready", description="Number of the pod with ready state."),
        Column("Up-to-date", description="Total number of non-terminated pods with the desired template."),
        Column("Available", description="Total number of available pods."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ),
    _deployment_cells,
)


def _replicaset_cells(rs: Obj, now: dt.datetime) -> list[Any]:
    names, images = _template_containers(rs)
    return [
        get_str(rs, "metadata", "name"),
        get_int(rs, "spec", "replicas"),
        get_int(rs, "status", "replicas"),
        get_int(rs, "status", "readyReplicas"),
        age(rs, now),
        names,
        images,
        format_selector(get(rs, "spec", "selector")),
    ]


REPLICASETS = Printer(
    (
        NAME,
        Column("Desired", "integer", description="Number of desired pods."),
        Column("Current", "integer", description="Number of actively running pods."),
        Column("Ready", "integer", description="Number of ready pods."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ),
    _replicaset_cells,
)


def _statefulset_cells(s: Obj, now: dt.datetime) -> list[Any]:
    names, images = _template_containers(s)
    return [
        get_str(s, "metadata", "name"),
        f"{get_int(s, 'status', 'readyReplicas')}/{get_int(s, 'spec', 'replicas')}",
        age(s, now),
        names,
        images,
    ]


STATEFULSETS = Printer(
    (NAME, Column("Ready", description="Number of the pod with ready state."), AGE, CONTAINERS, IMAGES),
    _statefulset_cells,
)


def _daemonset_cells(ds: Obj, now: dt.datetime) -> list[Any]:
    names, images = _template_containers(ds)
    return [
        get_str(ds, "metadata", "name"),
        get_int(ds, "status", "desiredNumberScheduled"),
        get_int(ds, "status", "currentNumberScheduled"),
        get_int(ds, "status", "numberReady"),
        get_int(ds, "status", "updatedNumberScheduled"),
        get_int(ds, "status", "numberAvailable"),
        format_labels(get(ds, "spec", "template", "spec", "nodeSelector")),
        age(ds, now),
        names,
        images,
        format_selector(get(ds, "spec", "selector")),
    ]


DAEMONSETS = Printer(
    (
        NAME,
        Column("Desired", "integer", description="The total number of nodes that should run the daemon pod."),
        Column("Current", "integer", description="The number of nodes running at least one daemon pod."),
        Column("Ready", "integer", description="The number of nodes with a ready daemon pod."),
        Column("Up-to-date", "integer", description="The number of nodes running the updated daemon pod."),
        Column("Available", "integer", description="The number of nodes with an available daemon pod."),
        Column("Node Selector", description="NodeSelector of the pod template."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ),
    _daemonset_cells,
)


def _job_condition(job: Obj, type_: str) -> bool:
    for cond in get_list(job, "status", "conditions"):
        if get_str(cond, "type") == type_:
            return get_str(cond, "status") == "True"
    return False


def _job_cells(job: Obj, now: dt.datetime) -> list[Any]:
    succeeded = get_int(job, "status", "succeeded")
    completions = get(job, "spec", "completions")
    if isinstance(completions, int):
        completions_cell = f"{succeeded}/{completions}"
    else:
        parallelism = get_int(job, "spec", "parallelism")
        completions_cell = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start = parse_time(get(job, "status", "startTime"))
    end = parse_time(get(job, "status", "completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration(((end or now) - start).total_seconds())
    if _job_condition(job, "Complete"):
        status = "Complete"
    elif _job_condition(job, "Failed"):
        status = "Failed"
    elif get(job, "metadata", "deletionTimestamp") is not None:
        status = "Terminating"
    elif _job_condition(job, "Suspended"):
        status = "Suspended"
    elif _job_condition(job, "FailureTarget"):
        status = "FailureTarget"
    elif _job_condition(job, "SuccessCriteriaMet"):
        status = "SuccessCriteriaMet"
    else:
        status = "Running"
    names, images = _template_containers(job)
    return [
        get_str(job, "metadata", "name"),
        status,
        completions_cell,
        duration,
        age(job, now),
        names,
        images,
        format_selector(get(job, "spec", "selector")),
    ]


JOBS = Printer(
    (
        NAME,
        Column("Status", description="Status of the job."),
        Column("Completions", description="The completion status of the job."),
        Column("Duration", description="Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ),
    _job_cells,
)


def _cronjob_cells(cj: Obj, now: dt.datetime) -> list[Any]:
    last = get(cj, "status", "lastScheduleTime")
    tz = get(cj, "spec", "timeZone")
    names, images = containers_cells(
        get_list(cj, "spec", "jobTemplate", "spec", "template", "spec", "containers")
    )
    return [
        get_str(cj, "metadata", "name"),
        get_str(cj, "spec", "schedule"),
        tz if isinstance(tz, str) else NONE,
        bool_ptr(get(cj, "spec", "suspend")),
        len(get_list(cj, "status", "active")),
        since(last, now) if last else NONE,
        age(cj, now),
        names,
        images,
        format_selector(get(cj, "spec", "jobTemplate", "spec", "selector")),
    ]


CRONJOBS = Printer(
    (
        NAME,
        Column("Schedule", description="The schedule in Cron format."),
        Column("Timezone", description="The time zone name for the given schedule."),
        Column("Suspend", "boolean", description="Whether subsequent executions are suspended."),
        Column("Active", "integer", description="Number of currently running jobs."),
        Column("Last Schedule", description="When the job was last successfully scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ),
    _cronjob_cells,
)


def _revision_cells(cr: Obj, now: dt.datetime) -> list[Any]:
    controller = NONE
    for ref in get_list(cr, "metadata", "ownerReferences"):
        if get(ref, "controller") is True:
            group = get_str(ref, "apiVersion").split("/")[0] if "/" in get_str(ref, "apiVersion") else ""
            kind = get_str(ref, "kind").lower()
            controller = (
                f"{kind}.{group}/{get_str(ref, 'name')}" if group else f"{kind}/{get_str(ref, 'name')}"
            )
            break
    return [get_str(cr, "metadata", "name"), controller, get_int(cr, "revision"), age(cr, now)]


CONTROLLERREVISIONS = Printer(
    (
        NAME,
        Column("Controller", description="Controller of the object"),
        Column("Revision", description="Revision indicates the revision of the state represented by Data."),
        AGE,
    ),
    _revision_cells,
)

APPS: dict[str, Printer] = {
    "deployments": DEPLOYMENTS,
    "replicasets": REPLICASETS,
    "statefulsets": STATEFULSETS,
    "daemonsets": DAEMONSETS,
    "controllerrevisions": CONTROLLERREVISIONS,
}
BATCH: dict[str, Printer] = {"jobs": JOBS, "cronjobs": CRONJOBS}
