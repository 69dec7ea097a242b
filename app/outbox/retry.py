"""One retry policy for every message the worker runs, and the schedules in use.

One convention: ``delay(attempt)`` is the wait after failed attempt ``attempt`` (1-based, the
value of ``outbox_message.attempts`` once claimed); the schedule's last wait repeats.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed message is tried again, and how many tries it gets."""

    waits: tuple[int, ...]  # seconds after failed attempt 1, 2, ...; the last one repeats
    jitter: float = 0.1  # ± this fraction, so retries from many workers spread out
    max_attempts: int | None = None  # None: retried until an operator acts

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based), with jitter."""
        base = self.waits[min(max(attempt, 1), len(self.waits)) - 1]
        spread = random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311 - jitter only
        return timedelta(seconds=base * spread)

    def exhausted(self, attempts: int, *, cap: int | None = None) -> bool:
        """True when ``attempts`` tries used the budget (``cap``: the message's own, if set)."""
        limit = cap if cap is not None else self.max_attempts
        return limit is not None and attempts >= limit


# Messages whose handler does not name a schedule (notices to subjects, handler errors).
DEFAULT_RETRY = RetryPolicy(
    waits=(5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600)
)

# Webhooks to processors (docs/webhooks.md): immediately, then 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 14 h, 20 h, 24 h: ten tries over about 3 days, then dead and the officer is alerted.
WEBHOOK_RETRY = RetryPolicy(
    waits=(5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400), max_attempts=10
)

# Fulfilment jobs (``fulfil.*``): a source that does not answer is asked again, then the
# request's fulfilment is marked failed for an operator to retry.
FULFILMENT_RETRY = RetryPolicy(waits=(30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600), max_attempts=8)
