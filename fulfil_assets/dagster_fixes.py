"""Fixes for Dagster bugs fulfil meets, applied when the code location loads (every run process loads it before it
executes a step). Each names the bug, the pinned version it was seen in, and the test that shows it gone.

- A step waiting for a concurrency pool slot busy-waits: `InstanceConcurrencyContext`'s
  `interval_to_next_pending_claim_check` returns `min([0, ...])`, never more than 0, so the in-process executor's
  `sleep_til_ready` never sleeps, and a run whose next step waits for a pool spins a whole CPU core until the slot
  frees (seen in dagster 1.13.27; on a 2-core machine two such runs starve every other run). Fixed here to wait
  until the next claim check is due. `tests/test_dagster_fixes.py` shows the upstream answer and a waiting run's
  CPU time.
"""

from __future__ import annotations

import time

from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

UPSTREAM_INTERVAL = InstanceConcurrencyContext.interval_to_next_pending_claim_check


def interval_to_next_pending_claim_check(self: InstanceConcurrencyContext) -> float:
    """Seconds until the soonest pending pool claim may be tried again (0 when one is due or none is pending)."""
    claims = getattr(self, "_pending_claims", set())
    due = [at for step, at in getattr(self, "_pending_timeouts", {}).items() if step in claims]
    return max(0.0, min(due) - time.time()) if due else 0.0


def apply() -> None:
    """Install the fixes (idempotent)."""
    InstanceConcurrencyContext.interval_to_next_pending_claim_check = interval_to_next_pending_claim_check  # type: ignore[method-assign]
