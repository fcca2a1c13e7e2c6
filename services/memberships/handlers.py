"""Ledger-worker handlers of memberships: period grants, failed renewals, Stripe state.

An invoice grants at most once, however many events mention it (`invoice.paid` and
`invoice.payment_succeeded` both come for one payment): `membership_periods` is keyed
by invoice id, and the database refuses a second MEMBERSHIP_PAYMENT naming the same
invoice. A renewal first applies the plan's rollover policy to the earlier periods'
credits (see `rollover`), then grants the new period, all in one transaction.
"""

import uuid
from datetime import timedelta
from typing import Any

from schemas.commands import FailMembershipPayment, GrantMembershipPeriod, SyncMembership
from schemas.events import (
    EventEnvelope,
    MembershipActivated,
    MembershipCanceled,
    MembershipCanceledPayload,
    MembershipPayload,
    MembershipRenewed,
    MembershipStatePayload,
    MembershipUpdated,
    PaymentFailed,
    PaymentPayload,
)
from services.errors import PaymentNotAccepted
from services.fraud.checks import after_failed_payment
from services.ledger import batch_store, journal_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import announce, envelope_of, ledger_fact
from services.ledger.handlers import grant_batch
from services.ledger.handlers.common import Handler, applied, lock_one, write
from services.ledger.models import AVAILABLE, MEMBERSHIP, Account, Allocation, Leg, TransactionDraft
from services.memberships import store
from services.memberships.plan_store import plan_by_stripe_id, plan_row
from services.memberships.rollover import OpenCredits, Policy, RolloverDecision, batch_expiry, decide

ENDED = ("canceled", "incomplete_expired")


async def _debit(
    ctx: LedgerContext, draft: TransactionDraft, batches: dict[Any, Any], amounts: dict[Any, int]
) -> list[Allocation]:
    """Write the transaction and take `amounts` from the membership batches it names."""
    await journal_store.insert_transactions(ctx.conn, [draft])
    taken = [
        Allocation(draft.id, batch_id, -n, batches[batch_id].expires_at, MEMBERSHIP)
        for batch_id, n in amounts.items()
    ]
    await batch_store.debit_batches(ctx.conn, taken)
    return taken


async def _expire(
    ctx: LedgerContext, command: GrantMembershipPeriod, account: Account, batches: dict[Any, Any],
    amounts: dict[Any, int],
) -> tuple[uuid.UUID | None, list[EventEnvelope]]:
    """One CREDIT_EXPIRY transaction for what the policy lets go at this renewal."""
    credits = sum(amounts.values())
    if not credits:
        return None, []
    draft = TransactionDraft(
        type="CREDIT_EXPIRY",
        user_id=command.user_id,
        credits=credits,
        command_id=command.id,
        reference="membership rollover",
        metadata={"invoiceId": command.payload.invoice_id, "rollover": True},
        legs=[Leg(account.id, AVAILABLE, -credits), Leg(ctx.system("expired"), AVAILABLE, credits)],
    )
    taken = await _debit(ctx, draft, batches, amounts)
    after = await write(ctx, [draft], {account.id: (-credits, 0)})
    account.available = after[account.id][0]
    events = announce("credits.expired", command, command.user_id, draft, after=after[account.id],
                      delta=-credits, allocations=taken)
    return draft.id, events


async def _carry(
    ctx: LedgerContext, command: GrantMembershipPeriod, account: Account, batches: dict[Any, Any],
    decision: RolloverDecision, expires_at: Any,
) -> tuple[uuid.UUID | None, list[EventEnvelope]]:
    """Move carried credits into a new batch ending with the new period: the balance is
    unchanged (two postings on the user's account), the expiry is not."""
    credits = decision.carried
    if not credits:
        return None, []
    draft = TransactionDraft(
        type="MEMBERSHIP_ROLLOVER",
        user_id=command.user_id,
        credits=credits,
        command_id=command.id,
        reference="membership rollover",
        metadata={"invoiceId": command.payload.invoice_id},
        legs=[Leg(account.id, AVAILABLE, -credits), Leg(account.id, AVAILABLE, credits)],
    )
    taken = await _debit(ctx, draft, batches, decision.carry)
    new_batch = uuid.uuid4()
    await batch_store.insert_batch(
        ctx.conn, batch_id=new_batch, account_id=account.id, user_id=command.user_id,
        source=MEMBERSHIP, credits=credits, expires_at=expires_at, transaction_id=draft.id,
        source_ref=str(command.id),
    )
    added = Allocation(draft.id, new_batch, credits, expires_at, MEMBERSHIP)
    await batch_store.insert_allocations(ctx.conn, [added])
    after = await write(ctx, [draft], {account.id: (0, 0)})
    fact = ledger_fact(
        "credits.rolled_over", command, command.user_id, transaction_id=draft.id,
        transaction_type=draft.type, credits=credits, reference=draft.reference,
        allocations=[*taken, added], metadata={**draft.metadata, "availableAfter": after[account.id][0]},
    )
    return draft.id, [fact]


async def grant_membership_period(ctx: LedgerContext, command: GrantMembershipPeriod) -> Outcome:
    """A paid (or trial) period: roll over the earlier periods' credits, then grant."""
    p = command.payload
    membership = await store.lock_membership(ctx.conn, command.user_id, p.subscription_id,
                                             p.membership_id)
    granted_before = await store.period_of_invoice(ctx.conn, p.invoice_id) or (
        await store.period_starting(ctx.conn, membership["id"], p.period_start)
    )
    if granted_before is not None:
        return applied(command, {"membershipId": str(membership["id"]), "invoiceId": p.invoice_id,
                                 "grantedBy": granted_before["invoice_id"], "already": True}, [])
    plan_id = await plan_by_stripe_id(ctx.conn, p.stripe_plan_id) or membership["plan_id"]
    plan = await plan_row(ctx.conn, plan_id)
    assert plan is not None  # memberships reference their plan
    previous = await store.previous_period(ctx.conn, membership["id"], p.period_start)
    # A trial is the first period, unpaid, of a membership that claimed a trial at subscribe
    # (`membership_trials`: once per user and per card); a $0 invoice of a membership
    # without a claim, or a later one (a 100% coupon), is a period like any other.
    trial = p.amount_paid == 0 and previous is None and membership["trial_days"] > 0
    credits = plan["trial_credits"] if trial else plan["credits_per_period"]
    policy = Policy.parse(plan["rollover"])
    grace = timedelta(hours=ctx.settings.membership_renewal_grace_hours)
    expires_at = max(batch_expiry(policy, p.period_start, p.period_end, grace), ctx.now + grace)
    account = await lock_one(ctx, command.user_id, create=True)
    assert account is not None
    # Only earlier periods' batches: a late invoice never touches a later period's credits.
    earlier = await store.open_membership_batches(ctx.conn, membership["id"], p.period_start)
    rows = {row.id: row for row in earlier}
    previous_grant = previous["grant_transaction_id"] if previous else None
    decision = decide(policy, [
        OpenCredits(r.id, r.remaining, previous_grant is not None and r.transaction_id == previous_grant)
        for r in rows.values()
    ])
    expiry_tx, events = await _expire(ctx, command, account, rows, decision.expire)
    rollover_tx, carried_events = await _carry(ctx, command, account, rows, decision,
                                               max(p.period_end + grace, ctx.now + grace))
    events += carried_events
    drained = [b for b in rows if rows[b].remaining == decision.carry.get(b, 0) + decision.expire.get(b, 0)]
    for batch_id in drained:
        await batch_store.expire_batch_row(ctx.conn, batch_id)
    grant_tx = None
    balance_after = account.available
    currency = p.currency
    if credits:
        granted = await grant_batch(
            ctx, command, credits=credits, source=MEMBERSHIP, transaction_type="MEMBERSHIP_PAYMENT",
            system_code="membership", expires_at=expires_at, reason=f"membership {plan_id}",
            metadata={"membershipId": str(membership["id"]), "planId": plan_id,
                      "invoiceId": p.invoice_id, "periodStart": p.period_start.isoformat(),
                      "periodEnd": p.period_end.isoformat(), "trial": trial},
            amount_minor=p.amount_paid, currency=currency, paid=True,
        )
        events += granted.events
        grant_tx = uuid.UUID(granted.result["transactionId"])
        balance_after = granted.result["balance"]["available"]
    await store.insert_period(
        ctx.conn, invoice=p.invoice_id, membership=membership["id"], plan=plan_id,
        start=p.period_start, end=p.period_end, credits=credits, amount=p.amount_paid,
        currency=currency, grant_tx=grant_tx, rollover_tx=rollover_tx, expiry_tx=expiry_tx,
        carried=decision.carried, expired=decision.expired,
    )
    await store.mark_paid(ctx.conn, id=membership["id"], status="trialing" if trial else "active",
                          plan=plan_id, start=p.period_start, end=p.period_end)
    receipt = MembershipPayload(
        membership_id=str(membership["id"]), plan_id=plan_id, plan_name=plan["name"],
        period_start=p.period_start, period_end=p.period_end, credits_granted=credits,
        amount=p.amount_paid, currency=currency, email=membership["email"],
        balance_after=balance_after,
    )
    model = MembershipRenewed if previous else MembershipActivated
    events.append(model(**envelope_of(command), payload=receipt))
    return applied(
        command,
        {
            "membershipId": str(membership["id"]),
            "invoiceId": p.invoice_id,
            "planId": plan_id,
            "credits": credits,
            "trial": trial,
            "carried": decision.carried,
            "expired": decision.expired,
            "transactionId": str(grant_tx) if grant_tx else None,
            "expiresAt": expires_at.isoformat(),
        },
        events,
    )


async def fail_membership_payment(ctx: LedgerContext, command: FailMembershipPayment) -> Outcome:
    """A renewal could not be collected: past_due, and a dunning event (PAY002)."""
    p = command.payload
    membership = await store.lock_membership(ctx.conn, command.user_id, p.subscription_id,
                                             p.membership_id)
    if await store.period_of_invoice(ctx.conn, p.invoice_id) is not None:
        return applied(command, {"membershipId": str(membership["id"]), "already": True,
                                 "reason": "the invoice was paid"}, [])
    status = membership["status"]
    if status in ("active", "trialing", "past_due"):
        status = "past_due"
    await store.mark_failed(ctx.conn, membership["id"], status, p.attempt)
    plan = await plan_row(ctx.conn, membership["plan_id"])
    assert plan is not None
    event = PaymentFailed(
        **envelope_of(command),
        payload=PaymentPayload(
            membership_id=membership["id"], plan_id=plan["id"], plan_name=plan["name"],
            invoice_id=p.invoice_id, amount=p.amount_due, currency=p.currency,
            credits=plan["credits_per_period"], code=PaymentNotAccepted.code,
            failure_code=p.failure_code, attempt=p.attempt, email=membership["email"],
        ),
    )
    flags = await after_failed_payment(ctx, command, attempts=p.attempt)
    return applied(
        command,
        {"membershipId": str(membership["id"]), "status": status, "attempt": p.attempt,
         "code": PaymentNotAccepted.code},
        [event, *flags],
    )


async def sync_membership(ctx: LedgerContext, command: SyncMembership) -> Outcome:
    """Keep Stripe's view of the subscription; an older state than the last one applied,
    or anything after the membership ended, changes nothing."""
    p = command.payload
    membership = await store.lock_membership(ctx.conn, command.user_id, p.subscription_id,
                                             p.membership_id)
    result = {"membershipId": str(membership["id"]), "status": membership["status"]}
    if membership["status"] in ENDED or p.stripe_created < membership["stripe_state_at"]:
        return applied(command, {**result, "already": True, "stale": True}, [])
    status = "past_due" if p.status == "unpaid" else p.status
    plan_id = await plan_by_stripe_id(ctx.conn, p.stripe_plan_id) or membership["plan_id"]
    ended_at = p.ended_at or p.canceled_at or ctx.now
    await store.apply_state(
        ctx.conn, id=membership["id"], status=status, plan=plan_id, start=p.current_period_start,
        end=p.current_period_end, cape=p.cancel_at_period_end,
        canceled=(p.canceled_at or ended_at) if status == "canceled" else p.canceled_at,
        at=p.stripe_created,
    )
    events: list[EventEnvelope] = []
    if status == "canceled":
        plan = await plan_row(ctx.conn, plan_id)
        assert plan is not None
        events.append(MembershipCanceled(
            **envelope_of(command),
            payload=MembershipCanceledPayload(
                membership_id=membership["id"], plan_id=plan_id, plan_name=plan["name"],
                canceled_at=ended_at, access_until=ended_at,
            ),
        ))
    else:
        events.append(MembershipUpdated(
            **envelope_of(command),
            payload=MembershipStatePayload(
                membership_id=membership["id"], plan_id=plan_id, status=status,
                cancel_at_period_end=p.cancel_at_period_end,
                current_period_end=p.current_period_end or membership["current_period_end"],
            ),
        ))
    return applied(command, {**result, "status": status, "planId": plan_id}, events)


HANDLERS: dict[str, Handler] = {
    "membership.grant_period": grant_membership_period,
    "membership.fail_payment": fail_membership_payment,
    "membership.sync": sync_membership,
}
