# The project's two commands: `make demo` and `make test`. Everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest tools demo clean manifests test-existing-cluster

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Find or build etcd, kube-apiserver, kubectl, helm and the node's binaries (cached in
## ~/.cache/together-operator); as root, install the node's Debian packages.
tools: $(STAMP)
	$(BIN)/together-operator dev tools --with-helm --with-node

## Regenerate what repeats a fact owned elsewhere: the CRD copies and the version stamps.
manifests: $(STAMP)
	$(BIN)/python -m together_operator.manifests

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench

typecheck: $(STAMP)
	$(BIN)/mypy operator/together_operator tests bench

pytest: $(STAMP) tools
	$(BIN)/pytest

## The one test command: lint, type-check, then the whole suite on a real control plane, and
## the e2e tier on a one-node cluster (as root).
test: lint typecheck pytest

## The integration suite again, against a one-node cluster reached only through a kubeconfig
## (USE_EXISTING_CLUSTER=1: the path of a kind user). CI runs it after `make test`.
test-existing-cluster: $(STAMP) tools
	bash scripts/integration-on-node.sh

## The demo: the local stack with a GPUCluster going to Ready; Ctrl-C cleans up.
demo: $(STAMP) tools
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
