"""ffe.kv: cache, rate-limit counters and event fan-out, in process or on Redis.

``make_backends(settings.redis.url)`` gives all three; each has a memory implementation and a
Redis one that degrades to in-process behaviour while Redis is unreachable.
"""

from ffe.kv.backends import KvBackends, KvUnavailableError, make_backends, redact_url
from ffe.kv.bus import (
    EventBus,
    MemoryEventBus,
    RedisEventBus,
    Subscription,
    SubscriptionClosedError,
)
from ffe.kv.cache import Cache, CacheObserver, MemoryCache, RedisCache, get_json, set_json
from ffe.kv.outage import Outage
from ffe.kv.ratelimit import MemoryRateLimiter, RateDecision, RateLimiter, RedisRateLimiter

__all__ = [
    "Cache",
    "CacheObserver",
    "EventBus",
    "KvBackends",
    "KvUnavailableError",
    "MemoryCache",
    "MemoryEventBus",
    "MemoryRateLimiter",
    "Outage",
    "RateDecision",
    "RateLimiter",
    "RedisCache",
    "RedisEventBus",
    "RedisRateLimiter",
    "Subscription",
    "SubscriptionClosedError",
    "get_json",
    "make_backends",
    "redact_url",
    "set_json",
]
