"""What tests/test_readme.py does with each command the README and docs show:
run it in a test (RUN), or why it cannot be run there (EXEMPT, MAKE_TARGETS).
A list of facts, kept apart from the code that checks them.
"""

# Commands and snippets that run in the tests below, by (file, first line).
RUN = {
    ("README.md", "curl -X POST \\"): "test_the_readme_curl_examples_remove_a_background",
    (
        "README.md",
        "curl 'http://127.0.0.1:8000/api/get/30063660-c7f2-49dd-935f-ab48d69e3f51?wait=30'",
    ): ("test_the_readme_curl_examples_remove_a_background"),
    ("README.md", '.venv/bin/python -c "import skimage.data, PIL.Image; '): (
        "test_the_readme_curl_examples_remove_a_background"
    ),
    ("README.md", '.venv/bin/python manage.py create_account "Acme" --credits 500'): (
        "test_the_account_commands_work_in_a_plain_shell"
    ),
    ("README.md", ".venv/bin/python manage.py migrate --noinput"): (
        "test_the_account_commands_work_in_a_plain_shell"
    ),
    ("deploy.md", "make venv && .venv/bin/python manage.py migrate --noinput"): (
        "test_the_account_commands_work_in_a_plain_shell"
    ),
    ("deploy.md", ".venv/bin/python manage.py create_account acme --credits 1000"): (
        "test_the_account_commands_work_in_a_plain_shell"
    ),
    ("README.md", ".venv/bin/python manage.py webhook_secret ACCOUNT [--rotate]"): (
        "test_the_webhook_secret_command_prints_what_the_python_snippet_verifies_with"
    ),
    ("README.md", "from standardwebhooks import Webhook"): (
        "test_the_webhook_secret_command_prints_what_the_python_snippet_verifies_with"
    ),
    ("README.md", "import remove_bg_api  # pip install remove-bg-api"): (
        "test_the_remove_bg_api_snippet_removes_a_background"
    ),
}

# Commands that cannot run in a test, by (file, first line), and why.
EXEMPT = {
    ("README.md", ".venv/bin/python manage.py install_models [names...]"): (
        "`[names...]` is a placeholder; `make models` (run here) runs it without names"
    ),
    ("README.md", "pip install standardwebhooks"): (
        "installs into the reader's own receiver project from PyPI, which a test cannot "
        "reach; requirements.txt pins it here and the Python snippet runs with it"
    ),
    ("README.md", "npm install standardwebhooks"): (
        "installs into the reader's own JavaScript receiver from npm, which a test cannot reach"
    ),
    ("README.md", 'import { Webhook } from "standardwebhooks";'): (
        "needs the standardwebhooks npm package, which this machine has no registry to "
        "install from; the Python snippet runs the same verification on a real signature"
    ),
    ("README.md", ".venv/bin/python manage.py qcluster"): (
        "the removal worker, which serves until stopped: every end-to-end test runs it "
        "(start_worker)"
    ),
    ("deploy.md", "export SECRET_KEY='a long random string, THE SAME on every web and worker"): (
        "sets a production machine's environment; every value is a placeholder"
    ),
    ("deploy.md", "curl -H 'Host: api.example.com' http://web-1:8000/readyz"): (
        "a host of the reader's own deployment; tests/removal/test_health.py tests /readyz"
    ),
    ("README.md", ".venv/bin/python manage.py options_table --write"): (
        "rewrites README.md's options table; tests/doors/test_option_table.py checks the table "
        "in README.md is the one it writes"
    ),
    ("architecture.md", ".venv/bin/python manage.py options_table --write"): (
        "rewrites README.md's options table; tests/doors/test_option_table.py checks the table "
        "in README.md is the one it writes"
    ),
    ("README.md", "curl -s http://127.0.0.1:8000/metrics | grep '^revid_'"): (
        "needs make run's server; tests/doors/test_metrics.py scrapes /metrics the same way, "
        "from loopback with DJANGO_DEBUG on"
    ),
    ("README.md", "curl -X POST http://127.0.0.1:8000/paid/image/remove/background/batch \\"): (
        "shoe.jpg and bag.jpg are the reader's own files; tests/doors/test_batches.py sends "
        "the same multipart fields (files, model, format) through HTTP"
    ),
    ("deploy.md", "Q_CLUSTER_NAME=webhooks manage.py qcluster"): (
        "names what `make webhook-worker` runs, which serves until stopped "
        "(tests/e2e/test_webhooks_e2e.py runs it)"
    ),
    ("deploy.md", "manage.py qcluster"): (
        "names what `make worker` runs, which serves until stopped (every end-to-end test runs it)"
    ),
    ("deploy.md", "manage.py install_models"): (
        "names what `make models` runs; `make models` runs here"
    ),
    ("README.md", "Q_CLUSTER_NAME=webhooks .venv/bin/python -m revid.run_worker --housekeeping"): (
        "names what `make webhook-worker` runs, which serves until stopped "
        "(tests/e2e/test_webhooks_e2e.py and tests/e2e/test_worker_drain.py run it)"
    ),
    ("README.md", "manage.py connection_budget"): (
        "names the command; tests/revid/test_connection_budget.py runs it"
    ),
    ("README.md", "manage.py queue_stats"): (
        "names the command; tests/removal/test_queue_stats.py runs it"
    ),
    ("deploy.md", "manage.py check --deploy"): (
        "a production host's check; tests/test_deploy_check.py runs it with production settings"
    ),
    ("deploy.md", "manage.py check"): (
        "a production host's check; tests/test_deploy_check.py runs it with production settings"
    ),
    ("deploy.md", "python -m revid.run_worker --housekeeping"): (
        "names what `make worker` runs on a worker machine, which serves until stopped "
        "(tests/e2e/test_worker_drain.py runs it)"
    ),
    ("deploy.md", "python manage.py queue_stats"): (
        "a production host's command; tests/removal/test_queue_stats.py runs it"
    ),
    ("deploy.md", "python manage.py connection_budget"): (
        "a production host's command (it asks PostgreSQL); tests/revid/test_connection_budget.py "
        "runs it"
    ),
    ("benchmarks.md", "python bench/bench_edges.py --docs"): (
        "a benchmark: about 20 minutes of every core, which would skew the suite's measured "
        "deadlines; it rewrites docs/benchmarks.md (`make bench` runs the same code as its "
        "part (j))"
    ),
    ("benchmarks.md", "python bench/bench_engines.py"): (
        "a benchmark: minutes of every core, which would skew the suite's measured deadlines "
        "(`make bench` runs the same code as its part (i))"
    ),
    ("README.md", "manage.py install_models --from DIR"): (
        "`DIR` is a placeholder for the operator's folder of weights; "
        "tests/removal/test_commands.py runs install_models --from on a folder of its own"
    ),
    (
        "README.md",
        'curl -X POST http://127.0.0.1:8000/v1.0/removebg -H "X-Api-Key: YOUR_API_KEY"',
    ): (
        "YOUR_API_KEY and /path/to/image.jpg are placeholders; tests/e2e/test_removebg_server.py "
        "sends the same request to a live server"
    ),
    ("README.md", "WEBHOOK_SECRET=$(.venv/bin/python manage.py webhook_secret demo"): (
        "waits for a webhook from make run's server; tests/e2e/test_make_run.py runs this receiver "
        "against a real make run"
    ),
    (
        "README.md",
        (
            'curl -X POST http://127.0.0.1:8000/paid/image/remove/background -H "x-api-key: '
            'YOUR_API_KEY" -F "file=@/path/to/image.jpg" -F "webhook_url='
        ),
    ): (
        "YOUR_API_KEY and /path/to/image.jpg are placeholders; tests/e2e/test_webhooks_e2e.py "
        "submits with a webhook_url to a receiver on loopback"
    ),
    ("api-contract.md", "curl -X POST \\"): (
        "the contract's example against the original hosted service; the README's copy of the "
        "same request runs against a live server in this file"
    ),
}

# `make` targets: None when the target runs here (in a scratch copy of the
# checkout), else why it cannot. A command runs here when all its targets do.
MAKE_TARGETS = {
    "setup": None,
    "venv": None,
    "models": None,
    "lint": None,
    "format": None,
    "lock": None,
    "run": "serves until stopped: tests/e2e/test_make_run.py runs it and stops it",
    "test": "is this suite",
    "serve": (
        "a production server that runs until stopped; tests/e2e/test_production_server.py "
        "runs gunicorn as it does and checks its refusal without SECRET_KEY"
    ),
    "worker": "runs qcluster until stopped, as every end-to-end test does (start_worker)",
    "webhook-worker": (
        "runs the webhook qcluster until stopped, as tests/e2e/test_webhooks_e2e.py does"
    ),
    "bench": (
        "a benchmark: minutes of every core (even --quick), which would skew the suite's "
        "measured deadlines; it rewrites docs/benchmarks.md"
    ),
    "bench-workers": "a benchmark of several minutes of every core",
    "bench-batches": "a benchmark: minutes of every core, against rembg s",
    "screenshots": (
        "rewrites docs/screenshots; its browser test runs in tests/e2e/test_browser.py"
    ),
}
