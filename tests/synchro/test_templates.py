"""The ClusterImportPolicy template language: what it computes, and that hostile templates end in a
TemplateError with a message (no Python internals, no files, bounded time and output)."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from synchro.templates import (
    FUNCTIONS,
    MAX_OUTPUT_CHARS,
    MAX_TEMPLATE_CHARS,
    MAX_VALUE_CHARS,
    Expression,
    SpecTemplate,
    Template,
    TemplateError,
)

KUBECONFIG = "apiVersion: v1\nkind: Config\n"
ENV: dict[str, Any] = {
    "source": {
        "apiVersion": "cluster.x-k8s.io/v1beta1",
        "kind": "Cluster",
        "metadata": {"name": "Prod-1", "namespace": "team-a", "labels": {"env.example.com/tier": "gold"}},
        "spec": {"apiEndpoint": "https://10.0.0.1:6443", "zones": ["a", "b"], "replicas": 3},
        "status": {"phase": "Provisioned", "ready": True},
    },
    "references": {
        "kubeconfig": {"data": {"value": base64.b64encode(KUBECONFIG.encode()).decode()}},
        "missing": None,
    },
    "policy": {"name": "cluster-api"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('source.status.phase == "Provisioned"', True),
        ("source.status.phase == 'Deleting'", False),
        ("source.status.phase != 'Deleting' and source.status.ready", True),
        ("not has(source.metadata.deletionTimestamp)", True),
        ("has(source.metadata.deletionTimestamp) or source.spec.replicas >= 3", True),
        ("source.spec.replicas < 3", False),
        ('"a" in source.spec.zones', True),
        ('"name" in source.metadata and "x" in source.metadata.labels', False),
        ('"gold" == source.metadata.labels["env.example.com/tier"]', True),
        ("source.status.missing.deeper == null", True),
        ("references.missing", False),
        ("{{ source.status.ready }}", True),  # braces around a condition are accepted
        ("source.spec.replicas == '3'", False),  # no conversions between kinds
        ("(source.spec.replicas + 1) == 4", True),
        ("len(source.spec.zones) == 2 and source.spec.zones[-1] == 'b'", True),
        ("source.spec.zones[5] == null", True),
    ],
)
def test_conditions(text: str, expected: bool) -> None:
    assert Expression(text).holds(ENV) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("capi-{{ source.metadata.namespace }}-{{ source.metadata.name | lower }}", "capi-team-a-prod-1"),
        ("{{ references.kubeconfig.data.value | b64dec }}", KUBECONFIG),
        ("{{ source.spec.zones }}", ["a", "b"]),  # a single {{ }} keeps the value's kind
        ("{{ source.spec.replicas }}", 3),
        ("n={{ source.spec.replicas }}", "n=3"),
        ("{{ default(source.spec.nothing, 'fallback') }}", "fallback"),
        ("{{ source.spec.nothing | default('x') | upper }}", "X"),
        ("{{ 'My_Cluster.One' | dnsLabel }}", "my-cluster-one"),
        ("{{ join(source.spec.zones, '+') }}", "a+b"),
        ("{{ split('x,y', ',') }}", ["x", "y"]),
        ("{{ replace(source.spec.apiEndpoint, '10.0.0.1', 'api') | trimPrefix('https://') }}", "api:6443"),
        ("{{ 'a\\'b' + \"\\n\" }}", "a'b\n"),
        ("plain text", "plain text"),
        ("{% for x in [1] %}y{% endfor %}", "{% for x in [1] %}y{% endfor %}"),  # just text
        ("{{ b64enc('hi') }}", "aGk="),
        ("{{ hasPrefix(source.spec.apiEndpoint, 'https://') }}", True),
    ],
)
def test_templates(text: str, expected: Any) -> None:
    assert Template(text).render(ENV) == expected


def test_spec_template_renders_string_leaves_and_keeps_the_rest() -> None:
    spec = SpecTemplate(
        {
            "kubeconfig": "{{ references.kubeconfig.data.value }}",
            "resources": [{"group": "apps", "resources": ["deployments"]}],
            "syncAllCustomResources": True,
            "namespaces": {"include": "{{ source.spec.zones }}"},
        }
    )
    assert spec.render(ENV) == {
        "kubeconfig": ENV["references"]["kubeconfig"]["data"]["value"],
        "resources": [{"group": "apps", "resources": ["deployments"]}],
        "syncAllCustomResources": True,
        "namespaces": {"include": ["a", "b"]},
    }


def test_a_value_with_yaml_syntax_stays_one_string() -> None:
    # The spec template is structured, never text parsed after substitution: no YAML injection.
    env = {"source": {"metadata": {"name": "x\nsecretRef: {name: other}"}}}
    assert SpecTemplate({"apiserverURL": "{{ source.metadata.name }}"}).render(env) == {
        "apiserverURL": "x\nsecretRef: {name: other}"
    }


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"kubeconfig": "{{ references.missing.data.value }}"}, "template.kubeconfig: '{{ references.miss"),
        ({"a": [{"b": "{{ nope }}"}]}, "template.a[0].b: in '{{ nope }}': unknown name 'nope'"),
        ({"a": "{{ source.metadata }}x"}, "template.a: a mapping cannot be part of a text"),
        ({"a": "{{ source.metadata.name "}, "template.a: '{{' at column 1 is not closed"),
    ],
)
def test_spec_template_errors_name_the_field(template: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError) as info:
        SpecTemplate(template).render(ENV)
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ source.__class__ }}", "is null"),  # just a missing key of a mapping
        ("{{ source.metadata.name.__class__ }}", "cannot read '__class__' of a string"),
        ("{{ source.__class__.__mro__[1].__subclasses__() }}", "unexpected '('"),
        ("{{ __import__('os').system('touch /tmp/x') }}", "unknown function '__import__'"),
        ("{{ open('/etc/passwd') }}", "unknown function 'open'"),
        ("{{ eval('1') }}", "unknown function 'eval'"),
        ("{{ lookup('file', '/etc/passwd') }}", "unknown function 'lookup'"),
        ("{{ env.HOME }}", "unknown name 'env'"),
        ("{{ self }}", "unknown name 'self'"),
        ("{{ range(10) }}", "unknown function 'range'"),
        ("{% for x in source %}{{ x }}{% endfor %}", "unknown name 'x'"),  # no loops, no tags
        ("{{ x for x in source }}", "unknown name 'x'"),
        ("{{ 1; 2 }}", "unexpected character ';'"),
        ("{{ source.metadata.name(1) }}", "unexpected '('"),
        ("{{ 'x' + 1 }}", "cannot add a string and a number"),
        ("{{ lower(1, 2) }}", "lower() takes 1 arguments, got 2"),
        ("{{ b64dec('%%%') }}", "b64dec(): not base64"),
        ("{{ b64dec('/w==') }}", "b64dec(): not base64-encoded UTF-8"),
        ("{{ 1" + "0" * 5000 + " }}", "is too long"),
        ("{{ source < 1 }}", "cannot order a mapping and a number"),
        ("{{ source == source }}", "'==' compares strings, numbers, booleans and null, not a mapping"),
        ("{{ source.spec.zones != [] }}", "'!=' compares strings, numbers, booleans and null, not a list"),
    ],
)
def test_hostile_or_broken_templates_are_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        Template(text).render(ENV)
    assert message in str(info.value), str(info.value)


def test_only_json_values_and_the_listed_functions_are_reachable() -> None:
    assert set(FUNCTIONS) == {
        "b64enc", "b64dec", "lower", "upper", "trim", "trimPrefix", "trimSuffix", "replace", "default",
        "has", "len", "join", "split", "string", "dnsLabel", "hasPrefix", "hasSuffix",
    }  # fmt: skip
    # Objects that are not JSON values are never handed to a template, but even then nothing of
    # them is read: a field of anything but a mapping is an error.
    with pytest.raises(TemplateError, match="cannot read 'upper' of a"):
        Template("{{ source.upper }}").render({"source": object()})


@pytest.mark.parametrize(
    "text",
    [
        "{{ " + "(" * 40 + "1" + ")" * 40 + " }}",
        "{{ " + "not " * 40 + "true }}",
        "{{ source" + ".a" * 3000 + " }}",
        "{{ " + " + ".join(["'x'"] * 2000) + " }}",
        "{{ " + " or ".join(["true"] * 2000) + " }}",
        "{{ " + "[" * 40 + "]" * 40 + " }}",
    ],
)
def test_deep_templates_are_refused_when_compiled(text: str) -> None:
    with pytest.raises(TemplateError, match=r"deeper than|nested deeper"):
        Template(text)


def test_template_text_is_bounded() -> None:
    with pytest.raises(TemplateError, match="longer than"):
        Template("x" * (MAX_TEMPLATE_CHARS + 1))
    with pytest.raises(TemplateError, match="longer than"):
        Expression("true or " * MAX_TEMPLATE_CHARS)


def test_output_and_time_are_bounded() -> None:
    big = "x" * (MAX_VALUE_CHARS // 2 + 1)
    env = {"source": {"big": big}}
    started = time.monotonic()
    with pytest.raises(TemplateError, match="longer than"):
        Template("{{ source.big + source.big }}").render(env)
    with pytest.raises(TemplateError, match="more than"):
        Template("{{ replace(source.big, 'x', 'xxxx') }}").render(env)
    # Many parts, each within the per-value bound, hit the bound of the whole evaluation.
    doubled = "{{ source.big + 'y' }}" * (MAX_OUTPUT_CHARS // len(big) + 2)
    with pytest.raises(TemplateError, match=f"more than {MAX_OUTPUT_CHARS} characters"):
        Template(doubled).render(env)
    # Scanning is work too: many searches through a long text hit the same bound.
    scans = "{{ [" + ", ".join(["'y' in source.big"] * 800) + "] }}"
    with pytest.raises(TemplateError, match="more than"):
        Template(scans).render(env)
    many = {f"k{i}": "{{ source.big | upper }}" for i in range(40)}
    with pytest.raises(TemplateError, match="more than"):
        SpecTemplate(many).render(env)
    assert time.monotonic() - started < 5


def test_compiled_templates_are_reusable_and_pure() -> None:
    template = Template("{{ source.metadata.name | lower }}")
    env = {"source": {"metadata": {"name": "A"}}}
    assert template.render(env) == "a"
    assert env == {"source": {"metadata": {"name": "A"}}}
    assert template.render({"source": {"metadata": {"name": "B"}}}) == "b"
