# Developer entry points. Everything Docker-related lives in scripts/ (see the comments there).
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: demo test reliability plugin push lint bench bench-smoke clean venv

# The virtualenv is (re)made when missing or when pyproject.toml changed.
$(VENV)/.installed: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Unit tests and, as root with docker.io installed, the e2e tests (tests/e2e start a private dockerd).
# Extra pytest arguments: make test PYTEST_ARGS='-k smoke -x'
test: venv
	$(VPY) -m pytest $(PYTEST_ARGS)

# The reliability suite in its full length (outages of minutes, loops of 10 minutes); `make test` runs the short one.
# Its table of figures is printed at the end and written to build/reliability-figures.md.
reliability: venv
	ELP_RELIABILITY=full $(VPY) -m pytest tests/reliability $(PYTEST_ARGS)

# Build the plugin and enable it on the Docker engine that already runs (DOCKER_HOST or default socket).
# make plugin PLUGIN_SETTINGS='data.source=/srv/logs LOG_LEVEL=debug' BASE_IMAGE=... ARCH=arm64
# ARCH (amd64, arm64; default this machine's): another architecture is built under qemu-user-static.
ARCH ?=
export ARCH
plugin: venv
	scripts/build-plugin.sh $(PLUGIN_SETTINGS)

# Build the plugin and push it to a registry: make push PLUGIN_NAME=registry.example:5000/elp:1.0 [ARCH=arm64]
# (then, on any engine: docker plugin install --grant-all-permissions registry.example:5000/elp:1.0)
push: venv
	@test -n "$(PLUGIN_NAME)" || { echo "make push needs PLUGIN_NAME=<registry>/<name>:<tag>" >&2; exit 2; }
	PUSH=1 PLUGIN_NAME='$(PLUGIN_NAME)' scripts/build-plugin.sh

# Private engine, local images, plugin, one busybox container: see scripts/demo.sh.
demo: venv
	scripts/demo.sh

# ruff, mypy, and the package boundaries written as import-linter contracts in pyproject.toml ([tool.importlinter]).
lint: venv
	$(VPY) -m ruff check .
	$(VPY) -m mypy
	$(VENV)/bin/lint-imports

# Every bench/*.py module in turn but bench/profile.py (a tool: py-spy on one process while a benchmark runs;
# bench-smoke checks it) (bench/docker_run.py starts its own private engine: needs root), then one table of
# every figure (bench/_table.py), also kept in build/bench-figures.md.
bench: venv
	@set -e; mkdir -p build; rm -f build/bench-figures.jsonl; \
	for f in bench/*.py; do \
		m=$$(basename $$f .py); case $$m in _*|__init__|profile) continue;; esac; \
		echo "== python -m bench.$$m"; ELP_BENCH_FIGURES=build/bench-figures.jsonl $(VPY) -m bench.$$m; \
	done; \
	echo "== all figures"; $(VPY) -m bench._table build/bench-figures.jsonl | tee build/bench-figures.md

# CI runs every benchmark but the Docker one for a few seconds, so that none of them rots.
bench-smoke: venv
	@set -e; for f in bench/*.py; do \
		m=$$(basename $$f .py); case $$m in _*|__init__|docker_run) continue;; esac; \
		echo "== python -m bench.$$m --smoke"; $(VPY) -m bench.$$m --smoke; \
	done

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
