#!/bin/sh
# The image's entry point: the first argument chooses what this container is.
#   web              gunicorn on $HOST:$PORT (WEB_CONCURRENCY processes of WEB_THREADS threads)
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
    exec gunicorn revid.wsgi:application --bind "$HOST:$PORT" \
        --control-socket "$DATA_DIR/gunicorn.ctl" \
        --workers "${WEB_CONCURRENCY:-2}" --worker-class gthread --threads "${WEB_THREADS:-16}" \
        --worker-connections "${WEB_THREADS:-16}" --keep-alive 0 --timeout 60 --graceful-timeout 30 \
        --max-requests 1000 --max-requests-jitter 100 --access-logfile - "$@"
    ;;
worker)
    shift
    unset Q_CLUSTER_NAME
    exec python -m revid.run_worker "$@"
    ;;
webhook-worker)
    shift
    Q_CLUSTER_NAME=webhooks exec python -m revid.run_worker "$@"
    ;;
migrate)
    shift
    exec python manage.py migrate --noinput "$@"
    ;;
*)
    exec "$@"
    ;;
esac
