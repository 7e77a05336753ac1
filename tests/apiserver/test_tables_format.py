"""Formatting rules of kube-apiserver's printers, checked against values Kubernetes documents."""

from __future__ import annotations

import datetime as dt

import pytest

from apiserver.printers.format import format_labels, format_selector, human_duration, selector_string, since


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (599, "9m59s"),
        (600, "10m"),
        (27 * 60 + 40, "27m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 3 * 60, "5h3m"),
        (8 * 3600 + 59 * 60, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (8 * 86400, "8d"),
        (68 * 86400 + 5 * 3600, "68d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (2 * 365 * 86400 + 10 * 86400, "2y10d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_matches_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_age_of_timestamps() -> None:
    now = dt.datetime(2026, 1, 10, 12, 0, 0, tzinfo=dt.UTC)
    assert since("2026-01-10T11:33:00Z", now) == "27m"
    assert since("2025-11-03T12:00:00Z", now) == "68d"
    assert since("", now) == "<unknown>"
    assert since(None, now) == "<unknown>"
    assert since("not a time", now) == "<unknown>"


def test_label_and_selector_formats() -> None:
    assert format_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert format_labels({}) == "<none>"
    assert format_labels(None) == "<none>"
    selector = {
        "matchLabels": {"k8s-app": "kube-dns"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["web", "api"]},
            {"key": "gone", "operator": "DoesNotExist"},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "app", "operator": "Exists"},
        ],
    }
    assert selector_string(selector) == "app,env notin (dev),!gone,k8s-app=kube-dns,tier in (api,web)"
    assert selector_string(None) == ""
    assert format_selector({}) == "<none>"
    assert format_selector({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}) == "<error>"
