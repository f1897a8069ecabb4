"""Fixes for Dagster bugs fulfil meets, applied when the code location loads (every run process loads it before it
executes a step). Each names the bug, the pinned version it was seen in, and the test that shows it gone.

- A step waiting for a concurrency pool slot busy-waits: `InstanceConcurrencyContext`'s
  `interval_to_next_pending_claim_check` returns `min([0, ...])`, never more than 0, so the in-process executor's
  `sleep_til_ready` never sleeps, and a run whose next step waits for a pool spins a whole CPU core until the slot
  frees (seen in dagster 1.13.27; on a 2-core machine two such runs starve every other run). Fixed here to wait
  until the next claim check is due. `tests/test_dagster_fixes.py` shows the upstream answer and a waiting run's
  CPU time.
- A step waiting for a pool checks for its slot less and less often, up to every 15 s: a slot freed is held for the
  step it is given to until that step next checks, so a system's pool stood idle 5-13 s between an order sync's read
  and the next (measured in `bench/live.py` on 1.13.27; up to a tenth of a rate limit at its share). Capped here at
  `CLAIM_CHECK_MAX_S`: a check is one small query.
"""

from __future__ import annotations

import time

from dagster._core.execution.plan import instance_concurrency_context
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

UPSTREAM_INTERVAL = InstanceConcurrencyContext.interval_to_next_pending_claim_check
UPSTREAM_CLAIM_CHECK_MAX_S = instance_concurrency_context.MAX_CONCURRENCY_CLAIM_BLOCKED_INTERVAL
CLAIM_CHECK_MAX_S = 2.0


def interval_to_next_pending_claim_check(self: InstanceConcurrencyContext) -> float:
    """Seconds until the soonest pending pool claim may be tried again (0 when one is due or none is pending)."""
    claims = getattr(self, "_pending_claims", set())
    due = [at for step, at in getattr(self, "_pending_timeouts", {}).items() if step in claims]
    return max(0.0, min(due) - time.time()) if due else 0.0


def apply() -> None:
    """Install the fixes (idempotent)."""
    InstanceConcurrencyContext.interval_to_next_pending_claim_check = interval_to_next_pending_claim_check  # type: ignore[method-assign]
    instance_concurrency_context.MAX_CONCURRENCY_CLAIM_BLOCKED_INTERVAL = CLAIM_CHECK_MAX_S  # type: ignore[assignment]
