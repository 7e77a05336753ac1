import time

from synchro.leases import dns_label, fair_share, holder, is_alive, lease_body, parse_microtime


def test_lease_lifecycle() -> None:
    now = time.time()
    first = lease_body("pediacluster-a", holder_identity="w1", duration_seconds=10, now=now)
    assert first["spec"]["leaseDurationSeconds"] == 10 and "resourceVersion" not in first["metadata"]
    assert abs(parse_microtime(first["spec"]["renewTime"]) - now) < 1e-3
    assert is_alive(first, now + 9.9) and not is_alive(first, now + 10.1)
    stored = {**first, "metadata": {**first["metadata"], "resourceVersion": "7"}}
    renewed = lease_body(
        "pediacluster-a", holder_identity="w1", duration_seconds=10, now=now + 3, previous=stored
    )
    assert renewed["metadata"]["resourceVersion"] == "7"
    assert renewed["spec"]["acquireTime"] == first["spec"]["acquireTime"]
    assert renewed["spec"]["leaseTransitions"] == 0
    taken = lease_body(
        "pediacluster-a", holder_identity="w2", duration_seconds=10, now=now + 20, previous=stored
    )
    assert holder(taken) == "w2" and taken["spec"]["leaseTransitions"] == 1
    released = lease_body("pediacluster-a", holder_identity="", duration_seconds=10, now=now, previous=stored)
    assert not is_alive(released, now)
    assert not is_alive(None, now)


def test_fair_share_and_names() -> None:
    assert fair_share(5, 2) == 3 and fair_share(4, 2) == 2 and fair_share(3, 0) == 3 and fair_share(0, 3) == 0
    assert dns_label("Host_Name-123") == "host-name-123"
