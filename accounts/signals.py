"""What the accounts layer tells the layers above it, without importing them."""

from django.dispatch import Signal

# A person signed up and got a new account: sent with ``account`` and
# ``user`` inside the transaction that made them (billing grants the
# sign-up credits in it, so both happen or neither).
signed_up = Signal()

# A user verified an email address: sent with ``account`` (theirs) and
# ``user`` (billing grants the sign-up credits still owed, once).
email_verified = Signal()
