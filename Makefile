# The two commands in the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

export PYTHONUNBUFFERED := 1

.PHONY: run test setup venv venv-dev models migrate chromium container-tools redis screenshots lint format bench bench-batches bench-workers serve worker webhook-worker lock clean

# Development settings, written once: a random SECRET_KEY and DJANGO_DEBUG=1
# in a git-ignored .env that revid/settings.py reads (real environment
# variables win), so `.venv/bin/python manage.py ...` works in a plain shell.
# Production sets real environment variables and never runs this.
.env:
	@echo "Writing .env (development settings: a new SECRET_KEY, DJANGO_DEBUG=1)"
	@umask 077 && $(PYTHON) -c 'import secrets; print("# Development settings written by make; real environment variables win.\nDJANGO_DEBUG=1\nSECRET_KEY=" + secrets.token_urlsafe(50))' > $@.tmp && mv $@.tmp $@

# Two locks, both made from pyproject.toml by `make lock`: requirements.txt
# is the runtime (what `make serve`, `make worker`, `make webhook-worker`
# and the container install, with pip) and requirements-dev.txt adds the
# test tools and honcho (what `make run` and `make test` install,
# with uv: seconds once its cache is warm). Each install is stamped and
# redone only when its lock changes. uv trusts the system's certificates,
# as pip does (a TLS proxy's CA in the system store works for both).
$(PY):
	@echo "Creating the virtualenv $(VENV) (a few seconds)"
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-runtime: requirements.txt | $(PY)
	@echo "Installing the runtime packages from requirements.txt with pip (about 0.8 GB; under a minute on a fast link)"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

# The dev lock pins the runtime's packages to the same versions, so it
# satisfies the runtime stamp too.
UV_VERSION = $(shell sed -n 's/^uv==\([^ ;]*\).*/\1/p' requirements-dev.txt)
$(VENV)/.installed-dev: requirements-dev.txt requirements.txt | $(PY)
	@echo "Installing the development packages from requirements-dev.txt with uv (about 1.2 GB: a few seconds with uv's cache warm, about a minute without)"
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@$(VENV)/bin/uv pip install --quiet --system-certs --python $(PY) -r requirements-dev.txt -r requirements.txt
	@touch $@ $(VENV)/.installed-runtime

venv: $(VENV)/.installed-runtime

venv-dev: $(VENV)/.installed-dev

models: venv
	@$(PY) manage.py install_models

migrate: venv
	@echo "Migrating the database (a few seconds the first time)"
	@$(PY) manage.py migrate --noinput

setup: .env venv-dev models migrate

# Web and worker run under honcho (the Procfile): each runs in its own
# process group and gets exactly one SIGTERM from honcho when make is
# stopped (a second signal can deadlock django-q2's qcluster). `-e /dev/null`:
# settings read .env themselves, letting real environment variables win.
# `make run PORT=8010` moves everything: the server, the banner, and
# SITE_URL, the base of URLs made outside a request (webhook payloads,
# emails); PUBLIC_BASE_URL, when set, wins over both (docs: README).
run: export SIGNUP_FREE_CREDITS ?= 100
run: export SITE_URL ?= http://$(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(HOST)):$(PORT)
# Set-up runs the weights' download (network) and the migrations (CPU)
# side by side; alpha matting's kernels are compiled by the worker, in the
# background, so the key comes sooner.
run: .env venv-dev
	@$(PY) manage.py install_models --defer-matting & models=$$!; \
	echo "Migrating the database (a few seconds the first time)"; \
	$(PY) manage.py migrate --noinput --verbosity 0 || { kill $$models; exit 1; }; \
	wait $$models
	@$(PY) manage.py ensure_demo_account
	@echo "Serving API, web page and admin on $${PUBLIC_BASE_URL:-$$SITE_URL} with a worker (Ctrl-C stops them)"
	@HOST=$(HOST) exec $(VENV)/bin/honcho start -e /dev/null -p $(PORT)

# The browser tests (tests/e2e/test_browser*.py) drive Debian's chromium with
# Playwright: install it once.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	}

# `make test` builds the container image with podman (tests/e2e/test_container.py)
# on a Debian base made by debootstrap: install them (and runc, the runtime
# that works under cgroup v1) like chromium, once.
container-tools:
	@command -v podman >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 || { \
		echo "Installing Debian's podman, debootstrap and runc for the container test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap runc; \
	}

# Production, one command per machine (docs/deploy.md): `make serve` on each
# web machine, `make worker` (the removal cluster) on each worker machine and
# `make webhook-worker` (the webhook cluster) on one or more machines. All
# run with debug off and need SECRET_KEY, the same on every machine (django-q2
# signs tasks with it), plus DATABASE_URL, REDIS_URL and the bucket settings.
# docs/systemd/ has a unit for each.
WEB_CONCURRENCY ?= 2
# The web server is ASGI (revid/asgi.py; revid/gunicorn_conf.py runs gunicorn
# with revid.server.Worker: uvicorn, one event loop per process). A request
# waiting for a job (?wait=, the synchronous /v1.0/removebg) or for an
# image_url download holds no thread; sync work (pages, admin, the parse,
# decode and charge of an upload) runs on at most WEB_THREADS threads per
# process, the rest queues on the loop. gunicorn_conf has the rest: the
# graceful stop that covers the longest waiting request, the draining probe.
WEB_THREADS ?= 16
serve worker webhook-worker: export DJANGO_DEBUG := 0

serve: venv
	@test -n "$$SECRET_KEY" || { echo "make serve: set SECRET_KEY (see docs/deploy.md)" >&2; exit 1; }
	$(PY) manage.py collectstatic --noinput --verbosity 0
	exec env HOST=$(HOST) PORT=$(PORT) WEB_CONCURRENCY=$(WEB_CONCURRENCY) WEB_THREADS=$(WEB_THREADS) \
		$(VENV)/bin/gunicorn -c python:revid.gunicorn_conf revid.asgi:application

# The removal cluster (Q_CLUSTER_NAME unset, whatever the shell has): it runs
# the models. Webhook deliveries wait on their own cluster, so a slow
# receiver never holds a worker that removes backgrounds. Both worker
# targets run through revid/run_worker.py, which drains on SIGTERM (to it or
# to its whole process group): tasks taken but not started go back to the
# queue, running jobs finish within WORKER_STOP_GRACE_SECONDS. Each also runs
# the one-process housekeeping cluster (the reaper, the expiry) beside its own.
worker: venv
	@test -n "$$SECRET_KEY" || { echo "make worker: set SECRET_KEY (see docs/deploy.md)" >&2; exit 1; }
	exec env -u Q_CLUSTER_NAME $(PY) -m revid.run_worker --housekeeping

# The webhook cluster: WEBHOOK_WORKERS processes that deliver webhooks, run
# their retries and the sweep that recovers deliveries lost to a killed
# worker. It loads no model.
webhook-worker: venv
	@test -n "$$SECRET_KEY" || { echo "make webhook-worker: set SECRET_KEY (see docs/deploy.md)" >&2; exit 1; }
	exec env Q_CLUSTER_NAME=webhooks $(PY) -m revid.run_worker --housekeeping

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

test: setup chromium container-tools redis
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

# The browser tests write their screenshots under var/screenshots (ignored);
# this refreshes the README's copies in docs/screenshots on purpose.
screenshots: setup chromium
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest tests/e2e/test_browser.py \
		tests/e2e/test_browser_batches.py \
		-k "test_a_customer_removes_a_background_and_downloads_a_transparent_png or 1280"

lint: venv-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

format: venv-dev
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Regenerates the two locks from pyproject.toml's ranges with uv (keeping
# every pin that still fits; `make lock LOCK_ARGS=--upgrade` moves them to
# the newest), for Python 3.11 and 3.12 on every platform.
LOCK_ARGS ?=
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --system-certs --universal $(LOCK_ARGS) pyproject.toml
lock: venv-dev
	$(UV_COMPILE) -o requirements.txt
	$(UV_COMPILE) --extra dev -c requirements.txt -o requirements-dev.txt

clean:
	rm -rf $(VENV) var staticfiles

# A benchmark, not a test: rembg.remove() and `rembg s` vs our pipeline and
# the whole service, on this machine; prints PASS/FAIL per target and writes
# docs/benchmarks.md (about 25 minutes on 2 cores; BENCH_ARGS=--no-options
# skips the output options' rows, BENCH_ARGS=--no-engines the MODEL_ENGINE
# comparison, BENCH_ARGS=--no-edges the edges on photos with known answers;
# BENCH_ARGS=--quick runs only the side by side with `rembg s` on small
# photos). Then bench/bench_waiters.py adds the waiting clients' rows: 10,
# 100 and 1,000 waiters under `make run`'s and `make serve`'s servers (a
# few more minutes).
bench: setup
	$(PY) bench/run_bench.py $(BENCH_ARGS)
	$(PY) bench/bench_waiters.py

# Batches against the model's own limit and `rembg s` (bench/bench_batches.py;
# several minutes; BENCH_ARGS=--quick: 20 photos, 0.3 and 1 MP only).
bench-batches: setup
	$(PY) bench/bench_batches.py $(BENCH_ARGS)

# How Q_WORKERS x ORT_INTRA_OP_THREADS compare on this machine (~4 minutes).
bench-workers: setup
	$(PY) bench/worker_matrix.py $(BENCH_ARGS)
