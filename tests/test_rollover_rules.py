"""The rollover policies as pure rules: what a renewal carries, keeps and expires."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.memberships.rollover import OpenCredits, Policy, batch_expiry, decide

START = datetime(2026, 12, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)
GRACE = timedelta(hours=24)


def test_policies_parse_and_unknown_ones_are_refused():
    assert Policy.parse("none") == Policy("none")
    assert Policy.parse("one_cycle") == Policy("one_cycle")
    assert Policy.parse("capped:12") == Policy("capped", 12)
    for bad in ("capped:0", "capped:", "capped:x", "forever", "capped:-1"):
        with pytest.raises(ValueError):
            Policy.parse(bad)


def test_one_cycle_credits_live_through_the_next_period():
    assert batch_expiry(Policy("none"), START, END, GRACE) == END + GRACE
    assert batch_expiry(Policy("capped", 5), START, END, GRACE) == END + GRACE
    assert batch_expiry(Policy("one_cycle"), START, END, GRACE) == END + (END - START) + GRACE


def test_capped_carries_only_the_previous_grant_up_to_the_cap():
    grant, carried_before, older = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    decision = decide(Policy("capped", 5), [
        OpenCredits(carried_before, 2, previous_grant=False),
        OpenCredits(grant, 7, previous_grant=True),
        OpenCredits(older, 1, previous_grant=False),
    ])
    assert decision.carry == {grant: 5}
    assert decision.expire == {carried_before: 2, grant: 2, older: 1}


batches = st.lists(
    st.tuples(st.integers(0, 10_000), st.booleans()), max_size=6
).map(lambda items: [OpenCredits(uuid.uuid4(), n, prev) for n, prev in items])
policies = st.one_of(
    st.just(Policy("none")), st.just(Policy("one_cycle")),
    st.integers(1, 20_000).map(lambda cap: Policy("capped", cap)),
)


@given(policies, batches)
def test_no_credit_is_lost_or_made_by_a_renewal(policy, open_batches):
    decision = decide(policy, open_batches)
    kept = sum(
        b.remaining for b in open_batches if b.previous_grant and policy.kind == "one_cycle"
    )
    assert decision.carried + decision.expired + kept == sum(b.remaining for b in open_batches)
    assert decision.carried <= policy.cap
    for batch in open_batches:
        taken = decision.carry.get(batch.batch_id, 0) + decision.expire.get(batch.batch_id, 0)
        assert 0 <= taken <= batch.remaining
        if not batch.previous_grant:
            assert batch.batch_id not in decision.carry, "carried credits are not carried again"
    if policy.kind == "none":
        assert decision.carried == 0
