# The two commands in the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

export PYTHONUNBUFFERED := 1

.PHONY: run test setup venv models migrate chromium redis screenshots lint format bench bench-workers serve worker webhook-worker lock clean

# Development settings, written once: a random SECRET_KEY and DJANGO_DEBUG=1
# in a git-ignored .env that revid/settings.py reads (real environment
# variables win), so `.venv/bin/python manage.py ...` works in a plain shell.
# Production sets real environment variables and never runs this.
.env:
	@echo "Writing .env (development settings: a new SECRET_KEY, DJANGO_DEBUG=1)"
	@umask 077 && $(PYTHON) -c 'import secrets; print("# Development settings written by make; real environment variables win.\nDJANGO_DEBUG=1\nSECRET_KEY=" + secrets.token_urlsafe(50))' > $@.tmp && mv $@.tmp $@

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(VENV)/.installed

models: venv
	$(PY) manage.py install_models

migrate: venv
	$(PY) manage.py migrate --noinput

setup: .env venv models migrate

# Web and worker run under honcho (the Procfile): each runs in its own
# process group and gets exactly one SIGTERM from honcho when make is
# stopped (a second signal can deadlock django-q2's qcluster). `-e /dev/null`:
# settings read .env themselves, letting real environment variables win.
run: export SIGNUP_FREE_CREDITS ?= 100
run: setup
	@$(PY) manage.py ensure_demo_account
	@echo "Serving API, web page and admin on http://$(HOST):$(PORT) with a worker (Ctrl-C stops both)"
	@HOST=$(HOST) exec $(VENV)/bin/honcho start -e /dev/null -p $(PORT)

# The browser tests drive Debian's chromium through Playwright (never
# `playwright install`, which downloads a browser build of its own).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	}

# Production, one command per machine (docs/deploy.md): `make serve` on each
# web machine, `make worker` (the removal cluster) on each worker machine and
# `make webhook-worker` (the webhook cluster) on one or more machines. All
# run with debug off and need SECRET_KEY, the same on every machine (django-q2
# signs tasks with it), plus DATABASE_URL, REDIS_URL and the bucket settings.
WEB_CONCURRENCY ?= 2
# Threads per gunicorn process: a request waiting for a job (?wait=, the
# synchronous endpoint) holds a thread, not a CPU, so waiting clients never
# block /healthz, status calls or uploads while threads are free. A process
# takes no more connections than it has threads (queued behind waiters
# they would be); the others wait in the listen backlog for any process.
WEB_THREADS ?= 16
serve worker webhook-worker: export DJANGO_DEBUG := 0

serve: venv
	@test -n "$$SECRET_KEY" || { echo "make serve: set SECRET_KEY (see docs/deploy.md)" >&2; exit 1; }
	$(PY) manage.py collectstatic --noinput --verbosity 0
	exec $(VENV)/bin/gunicorn revid.wsgi:application --bind $(HOST):$(PORT) \
		--workers $(WEB_CONCURRENCY) --worker-class gthread --threads $(WEB_THREADS) \
		--worker-connections $(WEB_THREADS) --keep-alive 0 --timeout 60 --graceful-timeout 30 \
		--max-requests 1000 --max-requests-jitter 100 --access-logfile -

# The removal cluster only (Q_CLUSTER_NAME unset, whatever the shell has):
# it runs the models. Webhook deliveries wait on their own cluster, so a
# slow receiver never holds a worker that removes backgrounds.
worker: venv
	@test -n "$$SECRET_KEY" || { echo "make worker: set SECRET_KEY (see docs/deploy.md)" >&2; exit 1; }
	exec env -u Q_CLUSTER_NAME $(PY) manage.py qcluster

# The webhook cluster: WEBHOOK_WORKERS processes that deliver webhooks, run
# their retries and the sweep that recovers deliveries lost to a killed
# worker. It loads no model.
webhook-worker: venv
	@test -n "$$SECRET_KEY" || { echo "make webhook-worker: set SECRET_KEY (see docs/deploy.md)" >&2; exit 1; }
	exec env Q_CLUSTER_NAME=webhooks $(PY) manage.py qcluster

# The Redis tests (django-q2's Redis broker) want a server on 127.0.0.1:6379:
# start a throwaway one if redis-server is installed and none answers, as
# .ci/run does; without one those tests skip and say why.
redis: venv
	@$(PY) -c 'import redis; redis.Redis(socket_connect_timeout=1).ping()' 2>/dev/null \
	|| { command -v redis-server >/dev/null 2>&1 \
		&& mkdir -p var && redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
			--dir $(CURDIR)/var --logfile $(CURDIR)/var/redis.log \
		&& echo "Started redis-server on 127.0.0.1:6379 for the tests"; } \
	|| echo "No Redis on 127.0.0.1:6379 and none could be started: the Redis tests will skip"

test: setup chromium redis
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS)

# The browser tests write their screenshots under var/screenshots (ignored);
# this refreshes the README's copies in docs/screenshots on purpose.
screenshots: setup chromium
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest tests/e2e/test_browser.py \
		-k test_a_customer_removes_a_background_and_downloads_a_transparent_png

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

# A benchmark, not a test: rembg.remove() and `rembg s` vs our pipeline and
# the whole service, on this machine; prints PASS/FAIL per target and writes
# docs/benchmarks.md (about 25 minutes on 2 cores; BENCH_ARGS=--no-options
# skips the output options' rows, BENCH_ARGS=--no-engines the MODEL_ENGINE
# comparison, BENCH_ARGS=--no-edges the edges on photos with known answers;
# BENCH_ARGS=--quick runs only the side by side with `rembg s` on small photos).
bench: setup
	$(PY) bench/run_bench.py $(BENCH_ARGS)

# How Q_WORKERS x ORT_INTRA_OP_THREADS compare on this machine (~4 minutes).
bench-workers: setup
	$(PY) bench/worker_matrix.py $(BENCH_ARGS)
