"""Where each tier spends its CPU: py-spy samples of a running tier, summarised.

``py-spy record --nonblocking`` samples the process from outside (100 Hz) without pausing it, so
the profiled run is close to an unprofiled one. The raw (collapsed stacks) output is reduced to
two lists: the functions where samples end (self time) and the project's functions that samples
pass through (inclusive time), each as a share of all samples of busy threads.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_PACKAGES = ("apiserver/", "synchro/", "writer/", "common/", "cli/")


def py_spy() -> str | None:
    exe = Path(sys.executable).parent / "py-spy"
    return str(exe) if exe.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    tier: str
    samples: int = 0
    self_top: list[tuple[str, float]] = field(default_factory=list)
    inclusive_top: list[tuple[str, float]] = field(default_factory=list)
    raw_file: str = ""
    error: str = ""


class Recorder:
    """Start py-spy on a pid; :meth:`finish` waits for it and summarises."""

    def __init__(self, tier: str, pid: int, out_dir: Path, duration_seconds: int) -> None:
        self.tier = tier
        self.raw = out_dir / f"profile-{tier}.txt"
        exe = py_spy()
        self.proc: subprocess.Popen[bytes] | None = None
        self.error = ""
        if exe is None:
            self.error = "py-spy not installed"
            return
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(duration_seconds),
                "--rate",
                "100",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(self.raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def finish(self, timeout_seconds: float = 120) -> Profile:
        if self.proc is None:
            return Profile(self.tier, error=self.error)
        try:
            _, err = self.proc.communicate(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return Profile(self.tier, error="py-spy did not finish")
        if not self.raw.exists():
            return Profile(self.tier, error=err.decode(errors="replace")[-300:])
        return summarise(self.tier, self.raw)

    def interrupt(self) -> None:
        """Stop sampling now (py-spy writes its output on SIGINT, as after Ctrl-C)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``, keeping the project's folder."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for pkg in PROJECT_PACKAGES:
        idx = path.rfind("/" + pkg)
        if idx >= 0 or path.startswith(pkg):
            return f"{name} ({path[idx + 1 :] if idx >= 0 else path})"
    parts = path.split("/")
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        return f"{name} ({'/'.join(rest[:2])})"
    return f"{name} ({parts[-1]})"


def summarise(tier: str, raw: Path, top: int = 10) -> Profile:
    self_counts: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        total += count
        self_counts[_short(frames[-1])] += count
        seen = set()
        for frame in frames:
            short = _short(frame)
            if any(f"({pkg}" in short for pkg in PROJECT_PACKAGES) and short not in seen:
                seen.add(short)
                incl[short] += count
    if not total:
        return Profile(tier, raw_file=str(raw), error="no samples")
    return Profile(
        tier,
        samples=total,
        self_top=[(k, v / total) for k, v in self_counts.most_common(top)],
        inclusive_top=[(k, v / total) for k, v in incl.most_common(top)],
        raw_file=str(raw),
    )
