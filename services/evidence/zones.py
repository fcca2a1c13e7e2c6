"""Who may publish which command, and what a value-creating command must rest on.

Two command topics, two trust zones:

- `payment.commands` (public zone): platform services such as booking publish here, and
  only the commands they own: charging, holding, capturing and releasing credits for a
  booking, and refunding a charge. None of them can create a credit that was not paid for.
- `payment.commands.internal` (payment zone): written only by the payment ingress and the
  payment CLI jobs. Every other command travels here: purchase and membership commands
  derived from verified Stripe events, admin grants and transfers, fraud resolutions,
  receipts resent, expiry runs.

The broker enforces the split with ACLs in production; the worker enforces it again
(defence in depth): a command of a payment-zone type read from the public topic is
dead-lettered. And a payment-zone command is applied only when its producer recorded
the evidence it rests on (`command_evidence`), of a kind that fits its type, for exactly
this command (same fingerprint).
"""

from dataclasses import dataclass

from services.errors import Forbidden

PUBLIC_COMMANDS = frozenset(
    {"credits.charge", "credits.hold", "credits.capture", "credits.release", "credits.refund"}
)
STRIPE = frozenset({"stripe_event", "stripe_api"})
ADMIN = frozenset({"admin_request"})
# What each payment-zone command may rest on. A type missing here has no evidence that
# fits it, so it cannot be applied from the payment zone by mistake.
EVIDENCE_KINDS: dict[str, frozenset[str]] = {
    "purchase.confirm": STRIPE,
    "purchase.fail": STRIPE,
    "purchase.revoke": STRIPE,
    "purchase.freeze": STRIPE,
    "purchase.settle_dispute": STRIPE,
    "membership.grant_period": STRIPE,
    "membership.fail_payment": STRIPE,
    "membership.sync": STRIPE,
    "fraud.record_card": STRIPE,
    "credits.grant": ADMIN,
    "credits.transfer": ADMIN,
    "fraud.resolve": ADMIN,
    "receipt.resend": ADMIN,
    "credits.expire": frozenset({"operator_job", "admin_request"}),
}
KINDS = frozenset().union(*EVIDENCE_KINDS.values())


@dataclass(frozen=True)
class Evidence:
    """What a payment-zone command rests on.

    `kind`: `stripe_event` (reference: the signature-verified event id), `stripe_api`
    (reference: the Stripe object read with the secret key), `admin_request` (reference:
    the request's Idempotency-Key or id; subject: the admin), `operator_job` (reference:
    the job run; subject: the job).
    """

    kind: str
    reference: str
    subject: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown evidence kind {self.kind!r}")


@dataclass(frozen=True)
class RecordedEvidence:
    """A `command_evidence` row as the worker reads it."""

    command_type: str
    user_id: str
    fingerprint: str
    kind: str


def needs_evidence(command_type: str) -> bool:
    return command_type not in PUBLIC_COMMANDS


def refused_on_public_topic(command_type: str, topic: str) -> str | None:
    """The dead-letter reason of a payment-zone command read from the public topic."""
    if command_type in PUBLIC_COMMANDS:
        return None
    return (
        f"{Forbidden.code} {command_type} is not accepted on {topic}: only the payment "
        "ingress and jobs may publish it, on the internal command topic"
    )


def evidence_refusal(
    command_type: str, user_id: str, fingerprint: str, recorded: RecordedEvidence | None
) -> str | None:
    """Why a payment-zone command may not be applied, or None when its evidence holds."""
    if not needs_evidence(command_type):
        return None
    if recorded is None:
        return f"{Forbidden.code} {command_type} has no recorded evidence; not applied"
    if (recorded.command_type, recorded.user_id, recorded.fingerprint) != (
        command_type, user_id, fingerprint
    ):
        return (
            f"{Forbidden.code} {command_type} differs from the command its evidence was "
            "recorded for"
        )
    if recorded.kind not in EVIDENCE_KINDS.get(command_type, frozenset()):
        return f"{Forbidden.code} {command_type} cannot rest on evidence of kind {recorded.kind}"
    return None
