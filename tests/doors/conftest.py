from tests.doors.seed_requests import redirector  # noqa: F401  (the fixture, shared by the seed API tests)
from tests.ledger_history import history  # noqa: F401  (the fixture, shared with tests/billing)
