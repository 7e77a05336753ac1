# One Makefile; CI calls `make test` as it is.
SHELL := /bin/bash
PY    := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: test lint unit e2e venv services k8s helm demo demo-down gen-clusterconfigs bench clean

$(VENV_STAMP): pyproject.toml examples/clusterpedia-jsonl-store/pyproject.toml
	bash hack/bootstrap-python.sh
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

services:            ## install (when missing) and start PostgreSQL, MariaDB, Redis on loopback
	bash hack/services.sh start

k8s:                 ## build etcd, kube-apiserver, kube-controller-manager (cached)
	bash hack/build-k8s.sh

helm:                ## build helm from its Go module (cached)
	bash hack/build-helm.sh

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

test: venv services k8s helm lint  ## installs what is missing, then runs every test
	$(PY) -m pytest $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest -m "not e2e and not bench" $(PYTEST_ARGS)

demo: venv k8s      ## local multi-cluster demo (see README); STORAGE=sqlite|memory|postgres|mysql QUEUE=memory|redis
	bash hack/demo.sh up

demo-down:
	bash hack/demo.sh down

gen-clusterconfigs:
	bash hack/gen-clusterconfigs.sh

bench: venv services k8s  ## BENCH_SIZE=small|medium|large|xl|fleet, BENCH_ARGS='--store postgresql --only sync' (see bench/__main__.py)
	$(PY) -m bench $(if $(BENCH_SIZE),--size $(BENCH_SIZE)) $(BENCH_ARGS)

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
