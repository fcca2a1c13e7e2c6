"""Support console reads for admins: find a customer, their page, the explanation of
their balance, and the story of one batch (what the console's pages are drawn from)."""

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import Parameter

from ingress.auth import BEARER, admin_only
from ingress.deps import resources_of
from ingress.errors import AUTHED_ERRORS, error_responses
from schemas.support_api import BatchStoryRead, CustomerRead, CustomerSearchRead, ExplanationPage
from services.support.use_cases import (
    MAX_QUERY,
    explain_balance,
    find_customers,
    load_batch,
    load_customer,
)

UserIdPath = Annotated[str, Parameter(max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$",
                                      description="The customer's user id.")]


class SupportController(Controller):
    path = "/payment/admin"
    tags = ["support"]
    guards = [admin_only]
    security = BEARER

    @get("/customers/search", operation_id="searchCustomers",
         responses=error_responses(*AUTHED_ERRORS))
    async def search(
        self,
        request: Request[Any, Any, Any],
        q: Annotated[str, Parameter(
            min_length=1, max_length=MAX_QUERY,
            description="A user id, email, Stripe customer id, PaymentIntent id or transaction "
            "id, matched exactly (emails case-insensitively).")],
    ) -> CustomerSearchRead:
        """Every customer the query names, each with the key it matched by."""
        matches = await find_customers(resources_of(request).uow, q)
        return CustomerSearchRead.model_validate({"matches": matches})

    @get("/customers/{user_id:str}", operation_id="getCustomer",
         responses=error_responses(*AUTHED_ERRORS, 404))
    async def customer(self, request: Request[Any, Any, Any], user_id: UserIdPath) -> CustomerRead:
        """Balance, open batches in spend order, open holds, membership, purchases with
        refunds and disputes, promo redemptions, fraud flags and emails sent; 404 PAY008
        when the service knows nothing of the user."""
        return CustomerRead.model_validate(await load_customer(resources_of(request).uow, user_id))

    @get("/customers/{user_id:str}/explanation", operation_id="explainBalance",
         responses=error_responses(*AUTHED_ERRORS, 404))
    async def explanation(
        self,
        request: Request[Any, Any, Any],
        user_id: UserIdPath,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Parameter(max_length=200)] = None,
    ) -> ExplanationPage:
        """Transactions newest first with every posting, the batches each took from or
        gave to, and the running balance after it (the first entry's is `balance`); pass
        `nextCursor` back as `cursor` while `hasMore`. 404 PAY008 without an account."""
        page = await explain_balance(resources_of(request).uow, user_id, limit=limit, cursor=cursor)
        return ExplanationPage.model_validate(page)

    @get("/batches/{batch_id:uuid}", operation_id="getBatch",
         responses=error_responses(*AUTHED_ERRORS, 404))
    async def batch(self, request: Request[Any, Any, Any], batch_id: uuid.UUID) -> BatchStoryRead:
        """A batch and everything that spent from, held, returned to, expired or took back
        its credits, oldest first: `amount` plus the movements' credits is `remaining`."""
        return BatchStoryRead.model_validate(await load_batch(resources_of(request).uow, batch_id))
