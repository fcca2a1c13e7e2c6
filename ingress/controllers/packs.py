"""Credit packs: the catalogue for everyone, changes for admins, purchase for users."""

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.params import Parameter

from ingress.auth import BEARER, Principal, admin_only, authenticated
from ingress.deps import (
    IdempotencyKey,
    client_address,
    create_idempotently,
    provide_principal,
    reply_idempotently,
    resources_of,
)
from ingress.errors import AUTHED_ERRORS, READ_ERRORS, WRITE_ERRORS, error_responses
from ingress.gateway import Reply
from schemas.api import PackCreate, PackRead, PackUpdate, PurchaseRead, PurchaseRequest
from services.memberships.plan_sync import sync_plans
from services.purchases import use_cases as packs
from services.purchases.checkout import start_purchase
from services.purchases.product_sync import sync_products

PackPath = Annotated[str, Parameter(pattern=r"^[a-z0-9_-]{1,64}$")]


class ProductsController(Controller):
    path = "/payment/products"
    tags = ["credit packs"]
    dependencies = {"principal": Provide(provide_principal)}

    @post("/sync", guards=[admin_only], security=BEARER, operation_id="syncStripeProducts", status_code=200,
          responses=error_responses(*WRITE_ERRORS))
    async def sync(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[list[dict[str, Any]]]:
        """Create or update the Stripe Product and Price of every pack, and the Product and
        Stripe plan of every membership plan; returns their ids."""
        res = resources_of(request)

        async def action(_: uuid.UUID) -> Reply:
            packs = await sync_products(res.engine, res.payments)
            synced = packs + await sync_plans(res.engine, res.payments)
            return Reply(200, synced, {})

        return await reply_idempotently(request, principal, {}, action, key=idempotency_key)


class CreditPacksController(Controller):
    path = "/payment/credit-packs"
    tags = ["credit packs"]
    dependencies = {"principal": Provide(provide_principal)}

    @get("/", operation_id="listCreditPacks", responses=error_responses(429))
    async def list_packs(self, request: Request[Any, Any, Any]) -> list[PackRead]:
        """Active packs, cheapest first."""
        return [PackRead.model_validate(p) for p in await packs.list_packs(resources_of(request).uow)]

    @get("/{pack_id:str}", operation_id="getCreditPack", responses=error_responses(*READ_ERRORS, 404))
    async def get_pack(self, request: Request[Any, Any, Any], pack_id: PackPath) -> PackRead:
        return PackRead.model_validate(await packs.get_pack(resources_of(request).uow, pack_id))

    @post("/", guards=[admin_only], security=BEARER, operation_id="createCreditPack", status_code=201,
          responses=error_responses(*WRITE_ERRORS))
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        data: PackCreate,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PackRead]:
        return await create_idempotently(request, principal, data, packs.create_pack, PackRead,
                                         key=idempotency_key)

    @patch("/{pack_id:str}", guards=[admin_only], security=BEARER, operation_id="updateCreditPack",
           responses=error_responses(*AUTHED_ERRORS, 404))
    async def update(
        self, request: Request[Any, Any, Any], pack_id: PackPath, data: PackUpdate
    ) -> PackRead:
        """Change a pack; open purchases keep the terms they were made at."""
        changes = data.model_dump(exclude_unset=True, by_alias=False)
        return PackRead.model_validate(
            await packs.change_pack(resources_of(request).uow, pack_id, changes)
        )

    @delete("/{pack_id:str}", guards=[admin_only], operation_id="archiveCreditPack", status_code=200,
            security=BEARER, responses=error_responses(*AUTHED_ERRORS, 404))
    async def archive(self, request: Request[Any, Any, Any], pack_id: PackPath) -> PackRead:
        """Archive (never delete: purchases refer to it)."""
        return PackRead.model_validate(await packs.archive_pack(resources_of(request).uow, pack_id))

    @post("/{pack_id:str}/purchase", guards=[authenticated], operation_id="purchaseCreditPack",
          security=BEARER, status_code=200, responses=error_responses(*WRITE_ERRORS, 402, 404))
    async def purchase(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        pack_id: PackPath,
        data: PurchaseRequest | None = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PurchaseRead]:
        """Start a purchase: returns the PaymentIntent's client secret for the frontend.

        Credits arrive when Stripe's signed `payment_intent.succeeded` reaches the
        webhook, never from this call.
        """
        res = resources_of(request)
        body = data or PurchaseRequest()

        async def action(purchase_id: uuid.UUID) -> Reply:
            started = await start_purchase(
                res.engine,
                res.payments,
                res.settings,
                user_id=principal.subject,
                pack_id=pack_id,
                purchase_id=purchase_id,
                email=principal.email,
                payment_method=body.payment_method_id,
                checkout=body.mode == "checkout",
                promo_code=body.promo_code,
                redemption_id=body.redemption_id,
                source=client_address(request),
            )
            return Reply(200, PurchaseRead.model_validate(started).model_dump(mode="json"), {})

        return await reply_idempotently(request, principal, body.model_dump(mode="json"), action,
                                        key=idempotency_key)
