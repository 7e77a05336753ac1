from synchro.status import (
    HEALTHY,
    RESOURCE_NOT_FOUND,
    SYNC_ERROR,
    SYNC_STOP,
    SYNC_SYNCING,
    UNHEALTHY,
    ClusterStatus,
)

NOW = 1_765_000_000.0  # 2025-12-06T05:46:40Z


def test_render_seed_shape_and_progress() -> None:
    st = ClusterStatus()
    st.version = "v1.37.2"
    pods = st.resource("", "pods")
    pods.kind, pods.namespaced, pods.version, pods.storage_version = "Pod", True, "v1", "v1"
    pods.set(SYNC_SYNCING)
    pods.listing, pods.listed, pods.remaining = True, 500, 700
    missing = st.resource("apps", "replicasetz")
    missing.set(SYNC_ERROR, RESOURCE_NOT_FOUND, "resource 'replicasetz' not found in apps/v1")
    st.set_ready(True, HEALTHY)
    body = st.render()
    ready = body["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Healthy")
    assert "replicasetz" in ready["message"]
    assert body["version"] == "v1.37.2" and body["resourcesSummary"] == "1/2"
    assert [g["group"] for g in body["resources"]] == ["", "apps"]
    cond = body["resources"][0]["resources"][0]["syncConditions"][0]
    assert cond["status"] == "Syncing" and cond["version"] == "v1" and cond["storageVersion"] == "v1"
    assert cond["initialListProgress"] == "500/1200"
    pods.listing, pods.objects = False, 1200
    cond = st.render()["resources"][0]["resources"][0]["syncConditions"][0]
    assert (cond["initialListProgress"], cond["objects"]) == ("done", 1200)


def test_transitions_only_on_change_and_stop_all() -> None:
    st = ClusterStatus()
    st.set_ready(True, HEALTHY)
    first = st.last_transition
    st.last_transition = "2000-01-01T00:00:00Z"
    st.set_ready(True, HEALTHY)
    assert st.last_transition == "2000-01-01T00:00:00Z" != first
    st.set_ready(False, UNHEALTHY, "connection refused")
    assert st.last_transition != "2000-01-01T00:00:00Z"
    st.resource("", "pods").set(SYNC_SYNCING)
    st.stop_all(UNHEALTHY, "connection refused")
    body = st.render()
    cond = body["resources"][0]["resources"][0]["syncConditions"][0]
    assert cond["status"] == SYNC_STOP and cond["message"] == "connection refused"
    assert body["conditions"][0]["message"] == "connection refused"


def test_unapplied_events_are_reported_once_they_are_a_few_seconds_old() -> None:
    st = ClusterStatus()
    st.set_unapplied(None, NOW)
    assert st.render()["unappliedEventsSince"] is None  # a merge patch removes the field
    st.set_unapplied(NOW - 1, NOW)  # a writer stores events within milliseconds: not worth a write
    assert st.render()["unappliedEventsSince"] is None
    st.set_unapplied(NOW - 42, NOW)
    assert st.render()["unappliedEventsSince"] == "2025-12-06T05:45:58Z"
    st.set_unapplied(NOW - 42, NOW + 10)  # the same oldest event: the same status, no new write
    assert st.render()["unappliedEventsSince"] == "2025-12-06T05:45:58Z"
