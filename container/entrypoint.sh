#!/bin/sh
# The image's entry point: the first argument chooses what this container is.
#   web              gunicorn on $HOST:$PORT (WEB_CONCURRENCY uvicorn processes, revid.asgi)
#   worker           the removal cluster (qcluster, Q_WORKERS processes running the models)
#   webhook-worker   the webhook cluster (WEBHOOK_WORKERS processes, no model)
#   migrate          apply the migrations, then exit (once per release)
#   anything else    run as given, e.g. `python manage.py create_account acme --credits 500`
set -e
role="${1:-web}"
# What this container is, for container/healthcheck.py.
echo "$role" > /tmp/revid-role
case "$role" in
web)
    shift
    # revid/gunicorn_conf.py, as `make serve`: $HOST:$PORT, WEB_CONCURRENCY
    # uvicorn processes (revid.server.Worker), the control socket in $DATA_DIR.
    exec gunicorn -c python:revid.gunicorn_conf revid.asgi:application "$@"
    ;;
worker)
    shift
    unset Q_CLUSTER_NAME
    exec python -m revid.run_worker --housekeeping "$@"
    ;;
webhook-worker)
    shift
    export Q_CLUSTER_NAME=webhooks
    exec python -m revid.run_worker --housekeeping "$@"
    ;;
migrate)
    shift
    exec python manage.py migrate --noinput "$@"
    ;;
*)
    exec "$@"
    ;;
esac
