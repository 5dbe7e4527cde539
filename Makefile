# Slipway: `make demo` runs it embedded with a demo model; `make test` runs the tests.
# Both set up everything they need on a fresh Debian machine (as root) first.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# Line coverage `make test` must reach (README, Test it): CI on a fresh clone measured 91.9% of 11,259
# statements on 2026-12-01. Raise it as tests are added.
COVERAGE_FLOOR ?= 90

.PHONY: demo test lint system-deps docker-images

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch first, so that nothing pulls a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# The KServe SDK (a test peer) without its protobuf<7 pin; its REST client's needs are in [dev].
	$(PY) -m pip install --quiet --no-deps 'kserve==0.21.0'
	touch $@

demo: $(VENV)/.installed
	bash deploy/install-system-deps.sh demo
	$(PY) manage.py demo --port $(PORT)

system-deps:
	bash deploy/install-system-deps.sh test

# Images for the Docker tests: a local base (no registry here) and the serving dependencies; cached.
docker-images: $(VENV)/.installed system-deps
	$(PY) manage.py build_base_image

test: $(VENV)/.installed system-deps docker-images
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
