"""One typed settings object, nested per tier, loaded once from file, environment and flags.

Precedence (lowest first): defaults, config file (YAML or JSON, ``--config`` or
``CLUSTERPEDIA_CONFIG``), environment (``CLUSTERPEDIA_<SECTION>__<FIELD>``, e.g.
``CLUSTERPEDIA_WRITER__BATCH_MAX_EVENTS=1000``; top-level fields as ``CLUSTERPEDIA_STORAGE``),
then command-line flags. Nothing else in the project reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

ENV_PREFIX = "CLUSTERPEDIA_"


class ApiserverSettings(msgspec.Struct, kw_only=True):
    bind_host: str = "127.0.0.1"
    """Address the API tier listens on."""
    port: int = 8443
    """TCP port of the API tier (HTTPS when a certificate is set)."""
    tls_cert_file: str = ""
    """Serving certificate (PEM). Empty: a self-signed one is generated at start."""
    tls_key_file: str = ""
    """Private key of the serving certificate (PEM)."""
    requestheader_client_ca_file: str = ""
    """CA that signs the aggregator's proxy client certificate. Empty: read it from the host's
    kube-system/extension-apiserver-authentication ConfigMap when ``authenticate`` is on."""
    authenticate: bool = False
    """Require the aggregator's client certificate (or a bearer token checked with a TokenReview)."""
    authorize: bool = False
    """Authorise each user with a SubjectAccessReview against the host cluster."""
    authorization_mode: str = "member-rbac"
    """member-rbac: each caller sees only what each member's own RBAC lets them read (the user and
    groups the host authenticated; anonymous without authenticate). host-only: whoever passes the
    host's check reads everything synced."""
    workers: int = 1
    """API worker processes serving the one port (started by this process, restarted when one
    dies); 1 serves in this process. all-in-one with memory:// serves with 1."""
    default_page_size: int = 0
    """Items per page when a request sets no limit (0: no limit, as kube-apiserver)."""
    max_page_size: int = 10000
    """Upper bound for ``limit``/``size``; larger values are a 400."""
    max_groups: int = 10000
    """Most groups one group-by search may count (``groupBy``); a search with more is a 400."""
    max_request_header_bytes: int = 1024 * 1024
    """Longest request head (request line and headers) accepted, as kube-apiserver's 1 MiB;
    longer ones get a Status 414 (request line) or 431 (headers)."""
    max_request_body_bytes: int = 3 * 1024 * 1024
    """Largest body of a write forwarded to a member, as kube-apiserver's 3 MiB; larger ones get
    a Status 413."""
    collections: dict[str, list[str]] = msgspec.field(
        default_factory=lambda: {"workloads": ["deployments.apps", "daemonsets.apps", "statefulsets.apps"]}
    )
    """Collection resources: name -> list of ``resource.group`` (``pods`` for the core group)."""
    stale_lag_seconds: float = 30.0
    """A cluster whose oldest event not yet stored was queued longer ago than this (its
    PediaCluster's ``status.unappliedEventsSince``, reported by the synchro from 5 s on) is named
    as lagging in a freshness Warning header; 0: never."""
    watch_poll_seconds: float = 0.1
    """How often each API process asks the store for its head revision (the change feed of every
    backend); watchers receive a change at most about this long after its commit."""
    watch_bookmark_seconds: float = 60.0
    """A watch that asked for bookmarks (allowWatchBookmarks) gets one at least this often."""
    min_request_timeout_seconds: float = 1800.0
    """A watch without timeoutSeconds ends after between this and twice this long (random, as
    kube-apiserver's --min-request-timeout), and the client resumes from its last resourceVersion."""
    watch_buffer_events: int = 10_000
    """Events one watcher may have pending; a watcher further behind is closed with 410 Expired and
    relists, so a slow client never holds up the others."""
    watch_proxied_timeout_seconds: float = 50.0
    """Longest a watch that the host's aggregator proxies lasts (0: no limit). The host takes our
    paths (``.../resources/api/v1/pods``) for a ``get`` of a named object, not a watch, so it cuts
    them after its ``--request-timeout`` (60 s by default) with a stream error, and client-go then
    lists everything again; ended cleanly before that, the client resumes from its last
    resourceVersion. Keep it below the host's request timeout."""


class SynchroSettings(msgspec.Struct, kw_only=True):
    worker_id: str = ""
    """Identity for cluster ownership leases; empty: hostname-pid."""
    lease_duration_seconds: float = 10.0
    """A cluster owned by a dead worker moves to another after at most this long."""
    lease_namespace: str = "clusterpedia-system"
    """Host namespace of the ownership Leases (created when missing); also the default namespace
    of a PediaCluster's ``spec.secretRef``."""
    member_accept_gzip: bool = False
    """Ask member clusters for gzip-compressed lists and watches. Off by default: on loopback or a
    LAN, compressing and inflating cost both ends more CPU than the bytes save (bench: 12-18 % of
    the synchro's samples); turn it on for members across a slow WAN."""
    list_page_size: int = 500
    """``limit`` for paged initial lists."""
    max_concurrent_lists: int = 8
    """Lists (each holding one page in memory) running at once in one worker, across clusters:
    bounds memory when hundreds of resources start syncing together. With 10 clusters on one
    loopback member, 4 and 16 listed in the same time (36 s) and 16 peaked 115 MiB higher (bench
    notes); 8 leaves room for slower members. Raise it for members far away, where each list
    mostly waits on the network."""
    watch_timeout_seconds: int = 300
    """Server-side timeout of each watch request; it is then resumed from the last resourceVersion."""
    health_probe_interval_seconds: float = 5.0
    """How often each member cluster's /readyz is probed."""
    strip_last_applied: bool = True
    """Drop the kubectl.kubernetes.io/last-applied-configuration annotation (managedFields always go)."""
    sync_member_rbac: bool = True
    """Sync every member's Roles, ClusterRoles, RoleBindings and ClusterRoleBindings besides
    ``spec.resources``: the API tier's member-rbac authorization evaluates them (they stay out of
    discovery unless the spec asks for them). The synchro's member identity needs list/watch on them."""
    redact_secret_values: bool = True
    """Store Secrets with the values of data/stringData emptied (keys kept, annotation
    clusterpedia.io/redacted=values), so the store holds no member credentials. false stores them
    as the member serves them: then anyone the API tier lets read Secrets reads their values."""
    publish_batch_max_events: int = 500
    """Events per queue append."""
    status_update_interval_seconds: float = 2.0
    """Minimum interval between PediaCluster status writes per cluster."""
    denied_networks: list[str] = msgspec.field(
        default_factory=lambda: ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"]
    )
    """Networks (CIDR) the synchro never connects to with member credentials, checked on the
    URL's address and again after DNS resolution: by default link-local addresses, where cloud
    metadata services answer. A PediaCluster pointing there is Ready=False, InvalidConfig."""
    sync_retry_max_seconds: float = 300.0
    """Longest back-off between restarts of a cluster's sync that failed unexpectedly."""
    import_interval_seconds: float = 10.0
    """How often the ClusterImportPolicy controller (one worker, through a Lease) re-reads the
    policies, their sources and references and brings the imported PediaClusters in step."""


class WriterSettings(msgspec.Struct, kw_only=True):
    consumer_name: str = ""
    """Name in the consumer group; empty: hostname-pid."""
    batch_max_events: int = 1000
    """Most events committed in one transaction."""
    batch_max_wait_seconds: float = 0.05
    """Longest time a batch keeps growing while events keep coming; it is committed as soon as the
    queue has nothing more ready, so a lone event does not wait."""
    reclaim_idle_seconds: float = 5.0
    """Entries pending this long on another consumer are taken over (that consumer died)."""
    tombstone_ttl_seconds: float = 600.0
    """How long rows of deleted objects are kept to stop late updates resurrecting them."""
    tombstone_gc_interval_seconds: float = 60.0
    """How often expired tombstones are removed (and event retention applied)."""
    event_retention_seconds: float = 86400.0
    """Events (core/v1 and events.k8s.io/v1) created longer ago than this are removed from the store
    (tombstoned: watchers see DELETED), whatever their member still holds; 0: no age bound."""
    event_retention_per_cluster: int = 10000
    """Most events of each resource kept per cluster (the most recently written); 0: no bound."""
    barrier_retry_seconds: float = 0.2
    """How often a list barrier (ListDone) whose earlier entries are still in flight is retried."""
    purge_chunk_rows: int = 5000
    """Rows removed per transaction when a cluster's data is purged (and by tombstone GC)."""
    retry_max_seconds: float = 5.0
    """Longest back-off between retries of a batch after a store or queue error."""


class KubeStateMetricsSettings(msgspec.Struct, kw_only=True):
    bind_host: str = "127.0.0.1"
    """Address ``clusterpedia kube-state-metrics`` listens on (plain HTTP, for Prometheus)."""
    port: int = 8080
    """TCP port of its /metrics, /healthz, /readyz, /livez."""
    bearer_token_file: str = ""
    """File holding the token a scrape must send as ``Authorization: Bearer``; empty: no token
    asked (then keep the port reachable by Prometheus only). The series name every synced object."""
    refresh_interval_seconds: float = 60.0
    """Pause between the end of one collection from the store and the start of the next; every
    scrape meanwhile streams the last finished one."""
    page_rows: int = 2000
    """Objects read from the store per keyset page during a collection."""
    max_series: int = 2_000_000
    """Most series one collection writes (0: no bound); beyond it the collection stops, logs a
    warning and sets clusterpedia_kube_state_metrics_truncated to 1."""
    resources: list[str] = msgspec.field(
        default_factory=lambda: ["pods", "deployments", "statefulsets", "daemonsets", "nodes", "namespaces"]
    )
    """Resources whose kube-state series are served (a subset of the default)."""


class Settings(msgspec.Struct, kw_only=True):
    storage: str = "sqlite:///clusterpedia.db"
    """Store URL: sqlite:///file.db (embedded), postgresql://..., mysql://..., memory:// (in-process, lost
    at exit: all-in-one with the in-process queue), or the scheme of any installed storage backend."""
    queue: str = "memory://"
    """Queue URL: memory:// (in-process, embedded) or redis://host:port/db."""
    queue_max_len: int = 100_000
    """Back-pressure bound: publishers wait while this many entries are unprocessed."""
    kubeconfig: str = ""
    """Kubeconfig of the host cluster (PediaClusters live there); empty: $KUBECONFIG, else the
    in-cluster service account, else ~/.kube/config."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""
    log_format: str = "json"
    """json or text."""
    metrics_port: int = 0
    """Port for /metrics, /healthz, /readyz, /livez of synchro and writer (0: no server)."""
    metrics_bind_host: str = "127.0.0.1"
    """Address of that server (0.0.0.0 in a pod, so the kubelet's probes reach it)."""
    apiserver: ApiserverSettings = msgspec.field(default_factory=ApiserverSettings)
    synchro: SynchroSettings = msgspec.field(default_factory=SynchroSettings)
    writer: WriterSettings = msgspec.field(default_factory=WriterSettings)
    kube_state_metrics: KubeStateMetricsSettings = msgspec.field(default_factory=KubeStateMetricsSettings)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    sections = {"apiserver", "synchro", "writer", "kube_state_metrics"}
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        value: Any = yaml.safe_load(raw) if raw else raw
        if len(path) == 2 and path[0] in sections:
            out.setdefault(path[0], {})[path[1]] = value
        elif len(path) == 1:
            out[path[0]] = value
    return out


def load_settings(
    *,
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the Settings; ``overrides`` are the command-line flags (nested dict, None = unset)."""
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must hold a mapping")
        data = _merge(data, loaded)
    data = _merge(data, _from_env(env))
    if overrides:
        data = _merge(data, _drop_none(overrides))
    return msgspec.convert(data, Settings, strict=False)


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_drop_none(v) if isinstance(v, Mapping) else v) for k, v in d.items() if v is not None}


def env_value(name: str, default: str = "") -> str:
    """The one sanctioned read of a process environment variable outside the settings sections
    (e.g. ``KUBECONFIG``, ``HOSTNAME``)."""
    return os.environ.get(name, default)
