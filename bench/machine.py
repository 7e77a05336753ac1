"""Facts about the machine a run was taken on, printed at the top of every report."""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata as pkg_metadata
from pathlib import Path

PACKAGES = ("sqlalchemy", "psycopg", "pymysql", "redis", "msgspec", "httpx", "starlette", "uvicorn")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def load_average() -> str:
    """The 1/5/15-minute load averages: the machine is shared, so every report says how busy it was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def facts(server_versions: dict[str, str], kubernetes_version: str = "") -> dict[str, str]:
    out = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus (nproc)": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "memory": f"{_mem_total_gib():.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load average at start (1/5/15 min)": load_average(),
    }
    for name, version in server_versions.items():
        out[{"postgresql": "PostgreSQL", "mysql": "MariaDB", "redis": "Redis"}[name]] = version
    if kubernetes_version:
        out["kube-apiserver (members)"] = kubernetes_version
    libs = []
    for pkg in PACKAGES:
        try:
            libs.append(f"{pkg} {pkg_metadata.version(pkg)}")
        except pkg_metadata.PackageNotFoundError:
            continue
    out["libraries"] = ", ".join(libs)
    return out
