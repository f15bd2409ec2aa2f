from tests.ledger_history import history  # noqa: F401  (the fixture, shared with tests/billing)
