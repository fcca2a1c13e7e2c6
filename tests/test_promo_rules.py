"""Each promo restriction accepted and refused at its edge (the pure rules)."""

from datetime import UTC, datetime, timedelta

import pytest

from services.errors import InvalidPromoCode
from services.promos.rules import Target, Usage, evaluate

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PACK = Target("pack", "pack_50", 4500, "usd")
PLAN = Target("plan", "plan_plus", 9900, "usd")
FRESH = Usage(total=0, by_user=0, user_has_purchased=False)


def code(**overrides):
    base = {
        "active": True, "kind": "percentage", "percent_off": 20, "amount_off_minor": None,
        "currency": None, "bonus_credits": None, "bonus_expiry_days": None, "trial_days": None,
        "usage_limit": None, "per_user_limit": 1, "new_customers_only": False,
        "allowed_users": None, "valid_from": None, "valid_until": None,
        "minimum_amount_minor": None, "pack_ids": None, "plan_ids": None,
    }
    return base | overrides


def reason(promo, target=PACK, usage=FRESH, user="u-1", now=NOW) -> str:
    with pytest.raises(InvalidPromoCode) as refused:
        evaluate(promo, target, usage, user, now)
    assert refused.value.code == "PAY003"
    return refused.value.details["reason"]


def test_kinds_give_what_they_say():
    assert evaluate(code(), PACK, FRESH, "u", NOW).as_dict() == {
        "original_price": 4500, "discount": 900, "final_price": 3600, "currency": "usd",
        "bonus_credits": 0, "trial_days": 0}
    odd = evaluate(code(percent_off=15), Target("pack", "p", 999, "usd"), FRESH, "u", NOW)
    assert (odd.discount, odd.final) == (149, 850), "a percentage is rounded down"
    fixed = evaluate(code(kind="fixed_amount", percent_off=None, amount_off_minor=500,
                          currency="usd"), PACK, FRESH, "u", NOW)
    assert (fixed.discount, fixed.final) == (500, 4000)
    bonus = evaluate(code(kind="bonus_credits", percent_off=None, bonus_credits=7), PACK, FRESH,
                     "u", NOW)
    assert (bonus.discount, bonus.bonus_credits) == (0, 7)
    trial = evaluate(code(kind="free_trial", percent_off=None, trial_days=14), PLAN, FRESH, "u", NOW)
    assert (trial.trial_days, trial.final) == (14, 9900)


def test_validity_window_edges():
    until = code(valid_until=NOW + timedelta(seconds=1))
    assert evaluate(until, PACK, FRESH, "u", NOW).discount == 900, "the second before expiry"
    assert reason(until, now=NOW + timedelta(seconds=1)) == "expired", "from validUntil on"
    start = code(valid_from=NOW)
    assert evaluate(start, PACK, FRESH, "u", NOW).discount == 900, "from validFrom on"
    assert reason(start, now=NOW - timedelta(seconds=1)) == "not_started"


def test_usage_limits_allow_the_last_use_and_refuse_the_next():
    limited = code(usage_limit=10)
    assert evaluate(limited, PACK, Usage(9, 0, False), "u", NOW).final == 3600
    assert reason(limited, usage=Usage(10, 0, False)) == "usage_limit_reached"
    twice = code(per_user_limit=2)
    assert evaluate(twice, PACK, Usage(1, 1, False), "u", NOW).final == 3600
    assert reason(twice, usage=Usage(2, 2, False)) == "already_used"
    assert reason(code(), usage=Usage(1, 1, False)) == "already_used", "once per customer by default"


def test_eligibility_minimum_and_targets():
    assert reason(code(new_customers_only=True), usage=Usage(0, 0, True)) == "not_eligible"
    assert evaluate(code(new_customers_only=True), PACK, FRESH, "u", NOW).final == 3600
    assert reason(code(allowed_users=["u-2"]), user="u-1") == "not_eligible"
    assert evaluate(code(allowed_users=["u-1"]), PACK, FRESH, "u-1", NOW).final == 3600
    assert evaluate(code(minimum_amount_minor=4500), PACK, FRESH, "u", NOW).final == 3600, "exactly"
    assert reason(code(minimum_amount_minor=4501)) == "minimum_not_met"
    assert reason(code(pack_ids=["pack_10"])) == "not_applicable"
    assert evaluate(code(pack_ids=["pack_50"]), PACK, FRESH, "u", NOW).final == 3600
    assert reason(code(), target=PLAN) == "not_applicable", "discounts are for packs"
    assert reason(code(kind="free_trial", percent_off=None, trial_days=7)) == "not_applicable"
    assert reason(code(kind="fixed_amount", percent_off=None, amount_off_minor=500,
                       currency="eur")) == "not_applicable"
    small = Target("pack", "p", 540, "usd")
    assert reason(code(kind="fixed_amount", percent_off=None, amount_off_minor=500, currency="usd"),
                  target=small) == "not_applicable", "never below Stripe's smallest charge"


def test_unknown_and_inactive_codes():
    assert reason(None) == "unknown"
    assert reason(code(active=False)) == "unknown"


def test_a_free_trial_code_is_for_accounts_that_never_had_a_trial():
    trial = code(kind="free_trial", percent_off=None, trial_days=14)
    had = Usage(0, 0, False, user_had_trial=True)
    assert reason(trial, target=PLAN, usage=had) == "trial_used"
    assert evaluate(trial, PLAN, FRESH, "u", NOW).trial_days == 14
    assert reason(code(kind="free_trial", percent_off=None, trial_days=14, allowed_users=["u-2"]),
                  target=PLAN, usage=had) == "not_eligible", "checked after not_eligible"
    assert reason(trial, target=PLAN, usage=Usage(0, 1, False, user_had_trial=True)) == "trial_used"


def test_a_late_use_is_flagged_only_past_a_limit():
    from services.fraud.rules import promo_over_limit

    assert promo_over_limit("ONE", uses=1, usage_limit=1, user_uses=1, per_user_limit=1) is None
    assert promo_over_limit("ANY", uses=50, usage_limit=None, user_uses=1, per_user_limit=1) is None
    over = promo_over_limit("ONE", uses=2, usage_limit=1, user_uses=1, per_user_limit=1)
    assert over is not None and (over.rule, over.severity, over.subject) == (
        "promo_over_limit", "medium", "ONE")
    mine = promo_over_limit("ANY", uses=2, usage_limit=None, user_uses=2, per_user_limit=1)
    assert mine is not None and mine.details["userUses"] == 2
