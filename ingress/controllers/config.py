"""`GET /payment/config`: the public settings a frontend starts from.

Public on purpose: the publishable key is made for browsers, and the catalogue's
currencies are public anyway (`GET /payment/credit-packs/`). Cacheable for a minute,
so a page load per visitor does not become a query per visitor.
"""

from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import CacheControlHeader

from ingress.deps import resources_of
from ingress.errors import error_responses
from schemas.api import CreditPriceRead, PublicConfigRead
from services.purchases.use_cases import list_sale_currencies

CONFIG_MAX_AGE_SECONDS = 60


class ConfigController(Controller):
    path = "/payment/config"
    tags = ["config"]

    @get("/", operation_id="getPublicConfig", responses=error_responses(429),
         cache_control=CacheControlHeader(max_age=CONFIG_MAX_AGE_SECONDS, public=True))
    async def config(self, request: Request[Any, Any, Any]) -> PublicConfigRead:
        """Stripe publishable key, the currencies packs and plans are sold in, the credit price."""
        res = resources_of(request)
        settings = res.settings
        return PublicConfigRead(
            stripe_publishable_key=settings.stripe_publishable_key,
            currencies=await list_sale_currencies(res.uow),
            credit_price=CreditPriceRead(
                amount=settings.default_credit_price, currency=settings.default_currency
            ),
        )
