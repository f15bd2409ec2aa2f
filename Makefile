# The two commands in the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

# Development defaults; production sets DJANGO_DEBUG=0 and SECRET_KEY itself.
export DJANGO_DEBUG ?= 1
export SIGNUP_FREE_CREDITS ?= 100
export PYTHONUNBUFFERED := 1

.PHONY: run test setup venv models migrate chromium lint format bench bench-workers serve worker lock clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(VENV)/.installed

models: venv
	$(PY) manage.py install_models

migrate: venv
	$(PY) manage.py migrate --noinput

setup: venv models migrate

run: setup
	@$(PY) manage.py ensure_demo_account
	@echo "Serving API, web page and admin on http://$(HOST):$(PORT) with a worker (Ctrl-C stops both)"
	@trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	$(PY) manage.py qcluster & worker=$$!; \
	$(PY) manage.py runserver $(HOST):$(PORT) --noreload

# The browser tests drive Debian's chromium through Playwright (never
# `playwright install`, which downloads a browser build of its own).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	}

# Production, one command per machine (docs/deploy.md): `make serve` on each
# web machine, `make worker` on each worker machine. Both run with debug off
# and need SECRET_KEY, the same on every machine (django-q2 signs tasks with
# it), plus DATABASE_URL, REDIS_URL and the bucket settings.
WEB_CONCURRENCY ?= 2
serve worker: export DJANGO_DEBUG := 0

serve: venv
	@test -n "$$SECRET_KEY" || { echo "make serve: set SECRET_KEY (see docs/deploy.md)" >&2; exit 1; }
	$(PY) manage.py collectstatic --noinput --verbosity 0
	exec $(VENV)/bin/gunicorn revid.wsgi:application --bind $(HOST):$(PORT) \
		--workers $(WEB_CONCURRENCY) --timeout 60 --graceful-timeout 30 \
		--max-requests 1000 --max-requests-jitter 100 --access-logfile -

worker: venv
	@test -n "$$SECRET_KEY" || { echo "make worker: set SECRET_KEY (see docs/deploy.md)" >&2; exit 1; }
	exec $(PY) manage.py qcluster

test: setup chromium
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Re-pin requirements.txt from what the virtualenv has.
lock: venv
	$(PY) -m pip freeze --exclude-editable > requirements.txt

clean:
	rm -rf $(VENV) var staticfiles

# A benchmark, not a test: rembg.remove() vs our pipeline vs the whole
# service, on this machine; prints PASS/FAIL per target and writes
# docs/benchmarks.md (~5-10 minutes).
bench: setup
	$(PY) bench/run_bench.py $(BENCH_ARGS)

# How Q_WORKERS x ORT_INTRA_OP_THREADS compare on this machine (~4 minutes).
bench-workers: setup
	$(PY) bench/worker_matrix.py $(BENCH_ARGS)
