"""Where forwarded writes go: a PediaCluster read from the host becomes a member connection with
the synchro's own credential checks, and the identity mapping member-rbac uses. The host is the
protocol edge (a reader of JSON paths) and is given here as a dict of paths."""

from __future__ import annotations

import base64
from typing import Any

import anyio
import httpx
import pytest

from apiserver.members import PEDIACLUSTERS, Members
from apiserver.permissions import User
from common.errors import Forbidden, NotFound, ServiceUnavailable, StatusError
from common.settings import Settings


class Host:
    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects

    async def get_json(self, path: str) -> Any:
        if path not in self.objects:
            request = httpx.Request("GET", "https://host" + path)
            raise httpx.HTTPStatusError("404", request=request, response=httpx.Response(404, request=request))
        return self.objects[path]


EXEC_KUBECONFIG = """
current-context: c
contexts: [{name: c, context: {cluster: m, user: u}}]
clusters: [{name: m, cluster: {server: "https://member.example"}}]
users: [{name: u, user: {exec: {command: sh, args: [-c, "cat /var/run/secrets/token"]}}}]
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def pediacluster(name: str, rv: str = "1", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": rv},
        "spec": {"apiserverURL": "https://member.example:6443", "tokenData": b64("t0ken"), **spec},
    }


def member_of(objects: dict[str, Any], cluster: str = "c1") -> Any:
    async def main() -> Any:
        members = Members(Host(objects), Settings())
        try:
            return await members.member(cluster)
        finally:
            await members.aclose()

    return anyio.run(main)


def refusal(objects: dict[str, Any], cluster: str = "c1") -> StatusError:
    with pytest.raises(StatusError) as err:
        member_of(objects, cluster)
    return err.value


def test_the_identity_mapping_of_member_rbac_applies_to_writes() -> None:
    identity = {"usernamePrefix": "oidc:", "groupPrefix": "oidc:", "extraGroups": ["via-clusterpedia"]}
    member = member_of({f"{PEDIACLUSTERS}/c1": pediacluster("c1", identity=identity)})
    assert member.identity(User("alice", frozenset({"devs", "system:authenticated"}))) == User(
        "oidc:alice", frozenset({"oidc:devs", "system:authenticated", "via-clusterpedia"})
    )
    plain = member_of({f"{PEDIACLUSTERS}/c1": pediacluster("c1")})
    assert plain.identity(User("alice", frozenset({"devs"}))) == User("alice", frozenset({"devs"}))
    assert str(plain.client.base_url) == "https://member.example:6443"
    assert plain.client.headers["authorization"] == "Bearer t0ken"


def test_a_malformed_identity_mapping_maps_nobody() -> None:
    err = refusal({f"{PEDIACLUSTERS}/c1": pediacluster("c1", identity={"usernamePrefix": 3})})
    assert isinstance(err, Forbidden) and "spec.identity" in err.message


def test_an_unknown_cluster_is_a_404() -> None:
    assert isinstance(refusal({}, "nope"), NotFound)
    assert isinstance(refusal({PEDIACLUSTERS + "/..": {"kind": "APIResourceList"}}, ".."), NotFound)


def test_a_secret_reference_cannot_reach_another_host_path() -> None:
    pc = pediacluster("c1", secretRef={"name": "x?labelSelector=a", "namespace": "kube-system"})
    err = refusal({f"{PEDIACLUSTERS}/c1": pc})
    assert isinstance(err, ServiceUnavailable) and "spec.secretRef" in err.message


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"apiserverURL": "https://169.254.169.254"}, "denied network"),
        ({"apiserverURL": "http://member.example"}, "plain http://"),
        ({"apiserverURL": "https://user:pw@member.example"}, "user information"),
        ({"kubeconfig": b64(EXEC_KUBECONFIG)}, "credential plugins are not run"),
    ],
)
def test_unusable_credentials_are_a_503_that_repeats_no_secret(spec: dict[str, Any], words: str) -> None:
    err = refusal({f"{PEDIACLUSTERS}/c1": pediacluster("c1", **spec)})
    assert isinstance(err, ServiceUnavailable) and words in err.message, err.message
    assert "t0ken" not in err.message and "pw" not in err.message


def test_a_secret_must_be_labelled_as_member_credentials() -> None:
    pc = pediacluster("c1", tokenData="", secretRef={"name": "creds"})
    secret: dict[str, Any] = {"metadata": {"labels": {}}, "data": {"token": b64("s3cret")}}
    path = "/api/v1/namespaces/clusterpedia-system/secrets/creds"
    err = refusal({f"{PEDIACLUSTERS}/c1": pc, path: secret})
    assert isinstance(err, ServiceUnavailable) and "clusterpedia.io/credentials" in err.message
    secret["metadata"]["labels"] = {"clusterpedia.io/credentials": "true"}
    member = member_of({f"{PEDIACLUSTERS}/c1": pc, path: secret})
    assert member.client.headers["authorization"] == "Bearer s3cret"
