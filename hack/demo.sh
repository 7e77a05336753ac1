#!/usr/bin/env bash
# make demo / make demo-down: a local multi-cluster Clusterpedia (see README, "Quick start").
#
#   bash hack/demo.sh up|down|status
#
# Environment: DEMO_DIR (default .demo), STORAGE=sqlite|memory|postgres|mysql (default sqlite),
# QUEUE=memory|redis (default memory), WRITERS (writer processes with Redis, default 2).
# STORAGE=memory keeps every object inside the one all-in-one process (memory://, nothing on disk):
# only with QUEUE=memory. STORAGE=postgres or QUEUE=redis switch to the fleet shape: separate
# apiserver, synchro and writer processes on the project's own PostgreSQL/MariaDB/Redis
# (hack/services.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=hack/versions.sh
source "$ROOT/hack/versions.sh"
cmd="${1:-up}"

DEMO_DIR="${DEMO_DIR:-$ROOT/.demo}"
STORAGE="${STORAGE:-sqlite}"
case "$STORAGE" in postgresql) STORAGE=postgres ;; mariadb) STORAGE=mysql ;; esac
# A server database implies the fleet shape (Redis queue) unless QUEUE says otherwise.
if [[ -z "${QUEUE:-}" ]]; then
  if [[ "$STORAGE" == sqlite || "$STORAGE" == memory ]]; then QUEUE=memory; else QUEUE=redis; fi
fi

PY="$ROOT/.venv/bin/python"
if [[ ! -x "$PY" ]]; then
  echo "[demo] installing the Python environment (make venv) ..." >&2
  make -C "$ROOT" venv >&2
fi
if [[ "$cmd" == up ]]; then
  # Control planes (cached after the first build; `make demo` already ran `make k8s`).
  bash "$ROOT/hack/build-k8s.sh" >&2
fi
mkdir -p "$DEMO_DIR"
DEMO_DIR="$(cd "$DEMO_DIR" && pwd)"
export PYTHONPATH="$ROOT/hack:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m demo "$cmd" --dir "$DEMO_DIR" --storage "$STORAGE" --queue "$QUEUE" --writers "${WRITERS:-2}"
