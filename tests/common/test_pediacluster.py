"""The PediaCluster spec and status as the synchro reads them (synchro/pediacluster.py): typed,
unknown fields ignored, a wrong type an InvalidConfig naming the field, a broken status no record."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from common.credentials import InvalidConfig
from common.pediacluster import NamespaceSelection, ResourceSelector, SecretRef, spec_of, status_of
from common.queue import open_publisher
from common.settings import Settings
from synchro.host import FINALIZER
from synchro.manager import Owned, SynchroManager, recorded_epochs, recorded_resources


def test_the_seed_spec_and_unknown_fields() -> None:
    spec = spec_of(
        {
            "spec": {
                "apiserverURL": "https://10.0.0.1:6443",
                "tokenData": "dG9rZW4=",
                "resources": [{"group": "apps", "resources": ["deployments"]}, {"resources": ["pods"]}],
                "namespaces": {"include": ["default"]},
                "secretRef": {"name": "creds"},
                "identity": {"usernamePrefix": "c1:"},  # the API tier's
                "aFieldOfTomorrow": {"x": 1},
            }
        }
    )
    assert spec.wanted == (ResourceSelector("apps", ("deployments",)), ResourceSelector("", ("pods",)))
    assert spec.namespaces == NamespaceSelection(include=("default",))
    assert spec.secret_ref == SecretRef("creds") and not spec.sync_all
    assert spec.credential_fields() == {"apiserverURL": "https://10.0.0.1:6443", "tokenData": "dG9rZW4="}


def test_empty_and_missing_parts() -> None:
    for obj in ({}, {"spec": None}, {"spec": {}}, {"spec": {"secretRef": {}, "resources": None}}):
        spec = spec_of(obj)
        assert (spec.wanted, spec.secret_ref, spec.sync_all, spec.credential_fields()) == (
            (),
            None,
            False,
            {},
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"apiserverURL": 6443}, "spec.apiserverURL: expected `str | null`, got `int`"),
        ({"resources": "pods"}, "spec.resources: expected `array | null`, got `str`"),
        (
            {"resources": [{"group": "", "resources": "pods"}]},
            "spec.resources[0].resources: expected `array`",
        ),
        ({"resources": [["pods"]]}, "spec.resources[0]: expected `object`, got `array`"),
        (
            {"syncAllCustomResources": "true"},
            "spec.syncAllCustomResources: expected `bool | null`, got `str`",
        ),
        (
            {"namespaces": {"include": "default"}},
            "spec.namespaces.include: expected `array | null`, got `str`",
        ),
        ({"secretRef": "creds"}, "spec.secretRef: expected `object | null`, got `str`"),
        ({"secretRef": {"name": ["a"]}}, "spec.secretRef.name: expected `str`, got `array`"),
        (["not", "a", "mapping"], "spec: expected `object`, got `array`"),
    ],
)
def test_a_wrong_type_is_invalid_config_naming_the_field(spec: Any, message: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        spec_of({"spec": spec})
    assert str(info.value).startswith(message), str(info.value)


def test_the_status_record() -> None:
    obj = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "resources": [
                {
                    "group": "apps",
                    "resources": [
                        {"resource": "deployments", "syncConditions": [{"listResourceVersion": "120"}]},
                        {"resource": "*"},
                    ],
                },
                {"group": "", "resources": [{"resource": "pods", "syncConditions": None}]},
            ],
        }
    }
    assert recorded_resources(obj) == [("apps", "deployments"), ("", "pods")]
    assert recorded_epochs(obj) == {"deployments.apps": 120}


@pytest.mark.parametrize(
    "status",
    [
        "broken",
        {"resources": {"group": "apps"}},
        {"resources": [{"group": "apps", "resources": [{"resource": 5}]}]},
        {
            "resources": [
                {"resources": [{"resource": "pods", "syncConditions": [{"listResourceVersion": 7}]}]}
            ]
        },
    ],
)
def test_a_status_that_does_not_decode_is_no_record(status: Any, caplog: pytest.LogCaptureFixture) -> None:
    obj = {"metadata": {"name": "c1"}, "status": status}
    assert recorded_resources(obj) == [] and recorded_epochs(obj) == {}
    assert status_of(obj)[1].startswith("status")
    assert "ignoring a status that does not decode: status" in caplog.text


class RecordingHost:
    """The host cluster's edge: what the manager writes there."""

    def __init__(self) -> None:
        self.statuses: list[tuple[str, dict[str, Any]]] = []

    async def patch_status(self, name: str, status: dict[str, Any]) -> None:
        self.statuses.append((name, status))

    async def set_finalizers(self, obj: dict[str, Any], finalizers: list[str]) -> None:
        raise AssertionError("the finalizer is already there")


def _pediacluster(generation: int, spec: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": "c1", "generation": generation, "resourceVersion": "7", "finalizers": [FINALIZER]}
    return {"metadata": meta, "spec": spec}


def test_a_spec_of_the_wrong_type_is_reported_once_and_nothing_runs() -> None:
    async def scenario() -> None:
        host = RecordingHost()
        settings = Settings(queue=f"memory://pediacluster-{id(host)}")
        manager = SynchroManager(settings, open_publisher(settings), host)  # type: ignore[arg-type]
        own = manager.owned["c1"] = Owned(lease={}, renewed_at=0.0)
        manager.clusters["c1"] = _pediacluster(1, {"apiserverURL": "https://h:1", "resources": "pods"})
        for _ in range(3):  # every event of the same generation: reported once, not a loop
            await manager._reconcile("c1", own)
        assert own.task is None
        [(name, status)] = host.statuses
        [ready] = status["conditions"]
        assert (name, ready["status"], ready["reason"]) == ("c1", "False", "InvalidConfig")
        assert ready["message"] == "spec.resources: expected `array | null`, got `str`"
        # fixed: a sync starts for the new generation
        manager.clusters["c1"] = _pediacluster(2, {"apiserverURL": "https://h:1", "resources": []})
        await manager._reconcile("c1", own)
        assert own.task is not None and own.generation == 2
        await manager._stop_sync(own)

    asyncio.run(scenario())
