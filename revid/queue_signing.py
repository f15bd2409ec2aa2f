"""django-q2's task signatures, checked against SECRET_KEY_FALLBACKS too.

django-q2 signs every queued task (and its result in the cache) with
SECRET_KEY and checks it with SECRET_KEY alone: rotating the key would drop
every task queued before the rotation (the pusher logs "Failed to push task"
and fails it) and every scheduled one-off retry. Django's own signing
accepts the keys in SECRET_KEY_FALLBACKS; this makes the queue do the same,
while it still signs only with the current key.

Installed by ``removal.apps`` in every process that sets Django up, before
any cluster forks its workers.
"""

from __future__ import annotations

from django.conf import settings
from django_q import core_signing
from django_q.conf import Conf
from django_q.signing import PickleSerializer, SignedPackage


def loads(obj) -> object:
    """A signed package's content, if any current or fallback key signed it."""
    keys = [Conf.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    for index, key in enumerate(keys):
        try:
            return core_signing.loads(obj, key=key, salt=Conf.PREFIX, serializer=PickleSerializer)
        except core_signing.BadSignature:
            if index == len(keys) - 1:
                raise
    raise core_signing.BadSignature("no key to check the signature with")


def install() -> None:
    """Every django-q2 module reads ``SignedPackage.loads`` at call time."""
    SignedPackage.loads = staticmethod(loads)
