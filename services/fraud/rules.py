"""The fraud rules as pure decisions: counts and thresholds in, a verdict (or none) out.

The worker evaluates them on the commands that can reveal abuse: paid purchases
(velocity, a card shared by several accounts), failed payments (card testing, a
dying card), refunds of spent credits and disputes. Charges are not evaluated: the
hot path stays set-based, and charge velocity is already capped by
MAX_DAILY_TRANSACTIONS.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class Verdict:
    rule: str
    severity: Severity
    details: dict[str, Any] = field(default_factory=dict)
    subject: str = ""
    """What the flag is about within its rule ('' for the user as a whole)."""


def purchase_velocity(purchases: int, limit: int, window_minutes: int) -> Verdict | None:
    """More than `limit` paid purchases in the window: medium; more than twice: high."""
    if purchases <= limit:
        return None
    severity: Severity = "high" if purchases > 2 * limit else "medium"
    # The severity is the subject, so an open medium flag does not hide the escalation.
    return Verdict("purchase_velocity", severity,
                   {"purchases": purchases, "limit": limit, "windowMinutes": window_minutes},
                   subject=severity)


def payment_failures(failures: int, limit: int, window_minutes: int) -> Verdict | None:
    """`limit` or more failed payments in the window (card testing or a dying card)."""
    if failures < limit:
        return None
    return Verdict("repeated_payment_failures", "medium",
                   {"failures": failures, "limit": limit, "windowMinutes": window_minutes})


def shared_card(accounts: int, limit: int, fingerprint: str) -> Verdict | None:
    """One card paying for more than `limit` accounts: likely one person farming accounts."""
    if accounts <= limit:
        return None
    return Verdict("shared_card", "high", {"accounts": accounts, "limit": limit},
                   subject=fingerprint)


def promo_abuse(accounts: int, limit: int, code: str, source: str) -> Verdict | None:
    """More than `limit` accounts redeeming one code from one client address."""
    if accounts <= limit:
        return None
    return Verdict("promo_abuse", "medium",
                   {"accounts": accounts, "limit": limit, "code": code, "source": source},
                   subject=f"{code}:{source}"[:200])


def promo_over_limit(code: str, uses: int, usage_limit: int | None, user_uses: int,
                     per_user_limit: int) -> Verdict | None:
    """A discounted payment that succeeded after its reservation was released or lapsed
    took the code past its usage limit or the user past theirs. The use counts (the
    money arrived); a human decides whether it was a retry or a way around the limit."""
    over_total = usage_limit is not None and uses > usage_limit
    if not over_total and user_uses <= per_user_limit:
        return None
    return Verdict("promo_over_limit", "medium",
                   {"code": code, "uses": uses, "usageLimit": usage_limit, "userUses": user_uses,
                    "perUserLimit": per_user_limit},
                   subject=code)
