"""A small stand-in for the Stripe endpoints localstripe lacks (Checkout Sessions, Prices).

It answers `POST /v1/checkout/sessions` and `/v1/prices` itself and forwards every
other request to localstripe unchanged, so the service's single STRIPE_API_BASE reaches both. Only
for tests; docs/stripe.md says so. Run: python -m tests.stripe_standin PORT UPSTREAM.
"""

import sys
import uuid
from typing import Any

from aiohttp import ClientSession, web

FORWARDED = ("Authorization", "Idempotency-Key", "Stripe-Version", "Content-Type")


def _nested(form: dict[str, str]) -> dict[str, Any]:
    """Stripe's form encoding (`a[b][0][c]=v`) back into nested dicts (lists as dicts)."""
    root: dict[str, Any] = {}
    for key, value in form.items():
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


async def create_session(request: web.Request) -> web.Response:
    data = _nested(dict(await request.post()))
    item = data["line_items"]["0"]["price_data"]
    session_id = f"cs_test_{uuid.uuid4().hex[:24]}"
    return web.json_response(
        {
            "id": session_id,
            "object": "checkout.session",
            "mode": data.get("mode", "payment"),
            "url": f"https://checkout.stripe.test/pay/{session_id}",
            "amount_total": int(item["unit_amount"]),
            "currency": item["currency"],
            "customer": data.get("customer"),
            "client_reference_id": data.get("client_reference_id"),
            "metadata": data.get("metadata", {}),
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
        }
    )


async def create_price(request: web.Request) -> web.Response:
    data = _nested(dict(await request.post()))
    price = {
        "id": f"price_{uuid.uuid4().hex[:24]}",
        "object": "price",
        "product": data["product"],
        "unit_amount": int(data["unit_amount"]),
        "currency": data["currency"],
        "active": True,
        "type": "one_time",
    }
    request.app["prices"][price["id"]] = price
    return web.json_response(price)


async def get_price(request: web.Request) -> web.Response:
    price = request.app["prices"].get(request.match_info["id"])
    if price is None:
        return web.json_response({"error": {"type": "invalid_request_error"}}, status=404)
    return web.json_response(price)


async def forward(request: web.Request) -> web.Response:
    upstream: str = request.app["upstream"]
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
    async with ClientSession() as client, client.request(
        request.method, upstream + request.path_qs, headers=headers, data=await request.read()
    ) as answer:
        return web.Response(
            status=answer.status, body=await answer.read(), content_type=answer.content_type
        )


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2]
    app = web.Application()
    app["upstream"] = upstream
    app["prices"] = {}
    app.router.add_post("/v1/checkout/sessions", create_session)
    app.router.add_post("/v1/prices", create_price)
    app.router.add_get("/v1/prices/{id}", get_price)
    app.router.add_route("*", "/{tail:.*}", forward)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
