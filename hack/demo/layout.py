"""Files of one demo directory (``.demo/`` by default, ``DEMO_DIR`` to move it) and its state."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
MEMBERS = ("cluster-1", "cluster-2", "cluster-3")
API_NAMESPACE = "clusterpedia-system"
API_SERVICE = "clusterpedia-apiserver"


class DemoDir:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.state_file = self.root / "state.json"
        self.logs = self.root / "logs"
        self.log = self.logs / "demo.log"
        self.clusters = self.root / "clusters"
        self.members = self.root / "members"
        self.kubeconfig = self.root / "kubeconfig"
        self.tls = self.root / "tls"
        self.bin = self.root / "bin"

    def read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def update_state(self, **values: Any) -> dict[str, Any]:
        state = {**self.read_state(), **values}
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)
        return state


class Progress:
    """Timestamped progress lines (the supervisor's stdout is the demo log the client follows)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, message: str) -> None:
        print(f"[demo {self.elapsed():6.1f}s] {message}", flush=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
