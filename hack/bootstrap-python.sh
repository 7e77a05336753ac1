#!/usr/bin/env bash
# Create .venv and install the project with its dev tools (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
# The sample third-party storage backend: installed like any plug-in (it registers `jsonl` in the
# entry-point group clusterpedia.storage), so the shared storage suite always runs on it too.
.venv/bin/python -m pip install --quiet -e ./examples/clusterpedia-jsonl-store
