"""How many requests may wait for a job at once, per API key and per client address.

``WAIT_MAX_PER_KEY`` (an API key; on the web page, the signed-in account)
and ``WAIT_MAX_PER_ADDRESS`` (the client's address, as the server sees it:
behind a proxy, from X-Forwarded-For when the proxy's address is in
``FORWARDED_ALLOW_IPS``); 0 turns a limit off. A request over a limit is
never held: ``?wait=`` answers at once with the job's current status, and
``POST /v1.0/removebg`` is refused with 429 and Retry-After before anything
is charged.

Where the count lives:

- With ``REDIS_URL``, in Redis, shared by every web process and machine:
  one sorted set per key and per address, one member per waiting request,
  scored by the time by which that wait must have ended (its bound plus a
  margin). Taking a slot is one Lua script (drop expired members, compare,
  add, all or nothing); releasing is one ZREM. A process killed mid-wait
  leaks its slots only until their bound passes. If Redis cannot be
  reached the request is let through (and logged): the limit protects the
  service, it must not take it down with Redis.
- Without Redis (``make run``: one web process), in this process's memory.
  Several web processes without Redis each count their own, so a client
  could hold up to that many times the limit: production runs with Redis.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings

logger = logging.getLogger(__name__)

# A slot in Redis outlives its wait by this much before it expires by itself.
EXPIRY_MARGIN_SECONDS = 30
# What remove.bg's door tells a refused client to wait (Retry-After).
RETRY_AFTER_SECONDS = 5

_TAKE_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
    return i
  end
end
local expires = now_ms + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, expires, ARGV[2])
  redis.call('PEXPIRE', key, tonumber(ARGV[1]))
end
return 0
"""


@dataclass
class WaitSlot:
    """A taken place in the limits; ``release`` it when the wait ends."""

    names: list[str]
    member: str = field(default_factory=lambda: uuid.uuid4().hex)
    in_redis: bool = False
    released: bool = False

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.in_redis:
            try:
                client = _redis()
                async with client.pipeline(transaction=False) as pipe:
                    for name in self.names:
                        pipe.zrem(name, self.member)
                    await pipe.execute()
            except Exception:
                logger.warning("Could not release a wait slot in Redis", exc_info=True)
        else:
            _local.release(self.names)


@dataclass(frozen=True)
class Refusal:
    """Which limit refused the wait, for the answer."""

    limit: str  # "key" or "address"
    maximum: int


async def take(*, key: str | None, address: str | None, seconds: float) -> WaitSlot | Refusal:
    """A slot for a wait of at most ``seconds``, or the limit that refuses it."""
    wanted = []
    if key and settings.WAIT_MAX_PER_KEY:
        wanted.append(("key", f"revid:waits:key:{key}", settings.WAIT_MAX_PER_KEY))
    if address and settings.WAIT_MAX_PER_ADDRESS:
        wanted.append(("address", f"revid:waits:address:{address}", settings.WAIT_MAX_PER_ADDRESS))
    slot = WaitSlot(names=[name for _, name, _ in wanted])
    if not wanted:
        slot.released = True  # nothing to count
        return slot
    if settings.REDIS_URL:
        try:
            refused = await _redis_script()(
                keys=slot.names,
                args=[int((seconds + EXPIRY_MARGIN_SECONDS) * 1000), slot.member]
                + [maximum for _, _, maximum in wanted],
            )
        except Exception:
            logger.warning("Could not count a wait in Redis; letting it through", exc_info=True)
            slot.released = True
            return slot
        if refused:
            limit, _, maximum = wanted[int(refused) - 1]
            return Refusal(limit=limit, maximum=maximum)
        slot.in_redis = True
        return slot
    refused_index = _local.take(slot.names, [maximum for _, _, maximum in wanted])
    if refused_index is not None:
        limit, _, maximum = wanted[refused_index]
        return Refusal(limit=limit, maximum=maximum)
    return slot


class _LocalCounts:
    """This process's counts (no Redis). Sync code and several loops may
    count here (tests run views on short-lived loops), hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def take(self, names: list[str], maxima: list[int]) -> int | None:
        with self._lock:
            for index, (name, maximum) in enumerate(zip(names, maxima, strict=True)):
                if self._counts[name] >= maximum:
                    return index
            for name in names:
                self._counts[name] += 1
        return None

    def release(self, names: list[str]) -> None:
        with self._lock:
            for name in names:
                self._counts[name] -= 1
                if self._counts[name] <= 0:
                    del self._counts[name]

    def count(self, name: str) -> int:
        with self._lock:
            return self._counts[name]


_local = _LocalCounts()
_clients: dict[tuple[asyncio.AbstractEventLoop, str], object] = {}


def _redis():
    """A redis.asyncio client for this loop (its connections belong to one loop)."""
    import redis.asyncio as redis

    loop = asyncio.get_running_loop()
    key = (loop, settings.REDIS_URL)
    client = _clients.get(key)
    if client is None:
        for old in [old for old in _clients if old[0].is_closed()]:
            del _clients[old]
        client = _clients[key] = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2
        )
    return client


def _redis_script():
    return _redis().register_script(_TAKE_SCRIPT)
