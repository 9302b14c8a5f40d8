# Thin targets; tool settings live in pyproject.toml and buf.yaml.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROTO_FILES := $(wildcard protos/dpm_api/v1/*.proto)
SAMPLE_CONFIG := deploy/dpm-backend.conf.sample
NOVA_SAMPLE_CONFIG := deploy/nova-dpm.conf.sample

.DEFAULT_GOAL := all

.PHONY: help  ## Show the targets
help:
	@grep -E '^\.PHONY: [a-z-]+ +## ' $(MAKEFILE_LIST) | sed -E 's/^\.PHONY: ([a-z-]+) +## (.*)/  \1\t\2/' | expand -t 24

# Not editable: the nova/virt/dpm shim only works when installed into nova's tree.
# Tests, tools and the config generator import dpm_* from the working tree (it comes
# first on sys.path; PYTHONPATH=. where a console script runs).
$(BIN)/.installed: requirements-dev.txt pyproject.toml $(wildcard nova/virt/dpm/*.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --force-reinstall .
	rm -rf build
	touch $@

.PHONY: venv  ## Create .venv with the pinned dependencies
venv: $(BIN)/.installed

.PHONY: generate  ## Regenerate the protobuf stubs and the sample config
generate: venv
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO_FILES)
	PYTHONPATH=. $(BIN)/oslo-config-generator --namespace dpm_backend --output-file $(SAMPLE_CONFIG)
	PYTHONPATH=. $(BIN)/oslo-config-generator --namespace dpm_frontend --output-file $(NOVA_SAMPLE_CONFIG)

.PHONY: check-generated  ## Fail if the committed stubs or sample config are stale
check-generated: venv
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp $(PROTO_FILES) && \
	PYTHONPATH=. $(BIN)/oslo-config-generator --namespace dpm_backend --output-file $$tmp/sample.conf && \
	PYTHONPATH=. $(BIN)/oslo-config-generator --namespace dpm_frontend --output-file $$tmp/nova.conf && \
	for f in $$(cd $$tmp && find dpm_api -type f); do \
	  cmp -s $$tmp/$$f $$f || { echo "stale generated file: $$f (run make generate)"; exit 1; }; done && \
	cmp -s $$tmp/sample.conf $(SAMPLE_CONFIG) || { echo "stale $(SAMPLE_CONFIG) (run make generate)"; exit 1; } && \
	cmp -s $$tmp/nova.conf $(NOVA_SAMPLE_CONFIG) || { echo "stale $(NOVA_SAMPLE_CONFIG) (run make generate)"; exit 1; }
	@echo "generated files are current"

.PHONY: lint  ## ruff, mypy, buf lint/format, and buf breaking against main
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy dpm_backend dpm_frontend
	$(BIN)/buf lint
	$(BIN)/buf format --exit-code -d
	@if git rev-parse --verify --quiet main:protos >/dev/null; then \
	  $(BIN)/buf breaking --against '.git#branch=main'; \
	else echo "buf breaking: main has no protos yet"; fi

# Offline: -n -W fail the build on a broken :ref:, :doc: or option reference and a
# missing literalinclude; tests/deploy/test_docs.py checks relative links and anchors
# in README.md and docs/. External http(s) links are not checked (no linkcheck): CI
# reaches package registries only.
.PHONY: docs  ## Build the operator guide into build/docs (offline; broken references fail)
docs: venv
	$(BIN)/sphinx-build -W --keep-going -n -q -b html docs build/docs
	$(BIN)/reno -q lint

.PHONY: test  ## Lint, check generated code, build the docs, and run all tests
test: lint check-generated docs
	$(BIN)/python -m pytest

.PHONY: demo  ## HMC simulator + backend processes; nova-compute calls through DPMDriver for three hosts (vHBAs and storage groups)
demo: venv
	$(BIN)/python -m demo

.PHONY: bench  ## On dpm-hmc-sim 2.14.1/2.15.0/2.16.0: HMC requests per operation, refused requests, waits beyond HMC jobs, the gRPC hop (bench/results.json)
bench: venv
	OS_NOVA_DISABLE_EVENTLET_PATCHING=1 $(BIN)/python -m bench

# The backend host: a venv of its own at PREFIX with the pinned runtime closure
# (requirements.txt) and this project's wheel, plus the unit, the sample configs and
# the README. A venv records its own path, so it is built where it will run (no DESTDIR).
# The installed unit names PREFIX in ExecStart= and Documentation=.
PREFIX ?= /opt/dpm-backend
UNIT := deploy/dpm-backend@.service
PIP_INSTALL = $(PREFIX)/bin/pip install --quiet --disable-pip-version-check

.PHONY: install  ## Install dpm-backend for systemd into a venv at PREFIX (default /opt/dpm-backend)
install:
	umask 022 && \
	$(PYTHON) -m venv $(PREFIX) && \
	$(PIP_INSTALL) --requirement requirements.txt && \
	$(PIP_INSTALL) --no-deps --force-reinstall . && \
	rm -rf build *.egg-info && \
	install -d $(PREFIX)/share/dpm-backend $(PREFIX)/share/doc/dpm-backend && \
	sed 's|/opt/dpm-backend/|$(PREFIX)/|g' $(UNIT) > $(PREFIX)/share/dpm-backend/$(notdir $(UNIT)) && \
	install -m 0644 deploy/dpm-backend.conf.sample deploy/dpm-backend-example.conf \
	  $(PREFIX)/share/dpm-backend/ && \
	install -m 0644 README.md $(PREFIX)/share/doc/dpm-backend/

.PHONY: install-guest-tools  ## Install the guest image tools into DESTDIR (default /)
install-guest-tools:
	bash guest_tools/install.sh "$(DESTDIR)"

.PHONY: all  ## What CI runs
all: test

.PHONY: clean  ## Remove the virtualenv and caches
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
