"""What the ledger applies commands with, handed in by whoever runs it.

The ledger defines the shape; services/bootstrap.py fills it with the ledger's own
handlers and those of the domains built on it (purchases, memberships, fraud), so
services/ledger imports none of them and they may import the ledger freely.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.ledger.context import ReturnClaims
from services.ledger.handlers.common import Handler, SetHandler


@dataclass(frozen=True)
class CommandRegistry:
    handlers: Mapping[str, Handler]
    """The handler of each command type."""
    set_handlers: Mapping[str, SetHandler] = field(default_factory=dict)
    """Types that also have a set-based path (charges, goodwill grants): a round's
    commands of such a type are applied together, one by one only if that fails."""
    return_claims: ReturnClaims | None = None
    """Who may claim credits that come back to their batches (see LedgerContext)."""
