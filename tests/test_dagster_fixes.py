"""The Dagster bugs fulfil works around are still there (when one is fixed upstream its test fails, saying the
fix can go) and fulfil's fix does what it says."""

from __future__ import annotations

import time

from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

import fulfil_assets.definitions  # noqa: F401 - loading the code location applies the fixes, as in a run process
from fulfil_assets import dagster_fixes


def waiting_context(due_in_s: float) -> InstanceConcurrencyContext:
    """A concurrency context with one step waiting for a pool slot, its next claim check `due_in_s` away."""
    context = InstanceConcurrencyContext.__new__(InstanceConcurrencyContext)
    context._pending_claims = {"raw_cin7"}  # type: ignore[attr-defined]
    context._pending_timeouts = {"raw_cin7": time.time() + due_in_s}  # type: ignore[attr-defined]
    return context


def test_a_step_waiting_for_a_pool_slot_sleeps_until_its_next_claim_check() -> None:
    context = waiting_context(5.0)
    # Upstream: never more than 0, so the in-process executor never sleeps (a busy loop on one core).
    assert dagster_fixes.UPSTREAM_INTERVAL(context) <= 0, (
        "fixed upstream: drop the fix in fulfil_assets/dagster_fixes.py"
    )
    assert InstanceConcurrencyContext.interval_to_next_pending_claim_check is (
        dagster_fixes.interval_to_next_pending_claim_check
    )
    assert 4.0 < context.interval_to_next_pending_claim_check() <= 5.0
    assert waiting_context(-1.0).interval_to_next_pending_claim_check() == 0.0  # due now: try at once
    context._pending_timeouts["done_step"] = time.time() - 60  # type: ignore[attr-defined]  # a stale entry
    assert 4.0 < context.interval_to_next_pending_claim_check() <= 5.0  # never makes the wait spin again


def test_a_step_waiting_for_a_pool_checks_for_its_slot_every_two_seconds_at_most() -> None:
    """Upstream backs off to a check every 15 s, and a slot freed waits for the step it is given to check."""
    from dagster._core.execution.plan.instance_concurrency_context import _calculate_timeout_interval

    assert dagster_fixes.UPSTREAM_CLAIM_CHECK_MAX_S == 15, "changed upstream: review the cap in dagster_fixes.py"
    assert _calculate_timeout_interval(None, 100) == dagster_fixes.CLAIM_CHECK_MAX_S == 2.0
    assert _calculate_timeout_interval(None, 0) == 1.0  # the first checks as before
