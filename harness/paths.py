"""Where the harness finds its binaries and services: the values of hack/versions.sh, read once.

hack/versions.sh is the single source of pinned versions for the shell scripts; rather than mirror
its constants here (and let them drift), it is sourced by bash and the exported values are read.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HACK = REPO_ROOT / "hack"
KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")
KUBECTL_VERSIONS = ["1.27", "1.29", "1.32"]
DEFAULT_KUBECTL_VERSION = "1.32"


@functools.cache
def versions() -> dict[str, str]:
    """K8S_VERSION_CURRENT, K8S_VERSION_OLDER, ETCD_VERSION, HELM_VERSION, CLUSTERPEDIA_CACHE."""
    names = ["K8S_VERSION_CURRENT", "K8S_VERSION_OLDER", "ETCD_VERSION", "HELM_VERSION", "CLUSTERPEDIA_CACHE"]
    script = f"source {HACK / 'versions.sh'}; " + "; ".join(f'echo "${n}"' for n in names)
    out = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout
    values = out.splitlines()
    if len(values) != len(names) or not all(values):
        raise RuntimeError(f"could not read {HACK / 'versions.sh'}: got {values!r}")
    return dict(zip(names, values, strict=True))


def cache_dir() -> Path:
    return Path(versions()["CLUSTERPEDIA_CACHE"])


def resolve_k8s_version(version: str) -> str:
    """ "current" / "older" / an exact "v1.x.y" -> the exact version."""
    if version == "current":
        return versions()["K8S_VERSION_CURRENT"]
    if version == "older":
        return versions()["K8S_VERSION_OLDER"]
    if not version.startswith("v"):
        version = "v" + version
    return version


def k8s_bin_dir(version: str) -> Path:
    return cache_dir() / "k8s" / version / "bin"


def etcd_binary() -> Path:
    return cache_dir() / "etcd" / versions()["ETCD_VERSION"] / "bin" / "etcd"


def helm_binary() -> Path:
    return cache_dir() / "helm" / versions()["HELM_VERSION"] / "bin" / "helm"


def kubectl_binary(version: str = DEFAULT_KUBECTL_VERSION) -> Path:
    """Path of kubectl.<version> from the Google Cloud SDK; a clear error if it is not there."""
    path = KUBECTL_DIR / f"kubectl.{version}"
    if not os.access(path, os.X_OK):
        found = sorted(p.name for p in KUBECTL_DIR.glob("kubectl.*")) if KUBECTL_DIR.is_dir() else []
        raise RuntimeError(f"kubectl {version} not found at {path} (available: {found or 'none'})")
    return path


def ensure_control_plane(version: str) -> Path:
    """The bin dir of kube-apiserver/kube-controller-manager <version> (and etcd), building when missing.

    hack/build-k8s.sh is idempotent and caches; a cold build takes several minutes."""
    bin_dir = k8s_bin_dir(version)
    wanted = [bin_dir / "kube-apiserver", bin_dir / "kube-controller-manager", etcd_binary()]
    if not all(os.access(p, os.X_OK) for p in wanted):
        proc = subprocess.run(["bash", str(HACK / "build-k8s.sh"), version], cwd=REPO_ROOT, check=False)
        if proc.returncode != 0 or not all(os.access(p, os.X_OK) for p in wanted):
            raise RuntimeError(f"hack/build-k8s.sh {version} failed; missing: {wanted}")
    return bin_dir


def go_program(src: Path, cache: Path | None = None) -> Path:
    """The binary of the Go program in ``src`` (a module: go.mod, go.sum, *.go), built on first use.

    Cached under $CLUSTERPEDIA_CACHE/go-programs/<dir name>-<hash of the sources>, so an edited
    program is rebuilt and every clone on the machine shares the build. The modules come from the
    Go module proxy (the control planes' build already fetched client-go); a cold build takes a
    few minutes, a warm one seconds."""
    files = sorted(p for p in src.iterdir() if p.name in ("go.mod", "go.sum") or p.suffix == ".go")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    target = (cache or cache_dir()) / "go-programs" / f"{src.name}-{digest.hexdigest()[:16]}" / src.name
    if os.access(target, os.X_OK):
        return target
    if shutil.which("go") is None:
        raise RuntimeError(f"go is required to build {src}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / src.name
        proc = subprocess.run(
            ["go", "build", "-trimpath", "-o", str(out), "."],
            cwd=src,
            env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly -buildvcs=false"},
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"go build in {src} failed:\n{proc.stderr[-4000:]}")
        os.replace(out, target)  # atomic: a concurrent build of the same sources is harmless
    return target
