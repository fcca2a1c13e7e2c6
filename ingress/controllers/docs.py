"""Contracts for other teams: JSON Schemas of every message and the AsyncAPI document."""

from functools import lru_cache
from typing import Any

from faststream.specification.asyncapi.site import get_asyncapi_html
from litestar import Controller, MediaType, Request, get

from schemas.commands import COMMAND_MODELS
from schemas.events import EVENT_MODELS
from workers.contracts import asyncapi_document, contract_broker


@lru_cache(maxsize=1)
def message_schemas() -> dict[str, Any]:
    def of(models: tuple[type, ...]) -> dict[str, Any]:
        out = {}
        for model in models:
            schema = model.model_json_schema(by_alias=True)  # type: ignore[attr-defined]
            kind = schema["properties"]["type"]
            name = kind.get("const") or model.__name__
            out[name] = schema
        return out

    return {"commands": of(COMMAND_MODELS), "events": of(EVENT_MODELS)}


class DocsController(Controller):
    path = "/payment"
    tags = ["docs"]

    @get("/schemas", operation_id="getMessageSchemas")
    async def schemas(self) -> dict[str, Any]:
        """JSON Schema of every command and event, keyed by message type."""
        return message_schemas()

    @get("/asyncapi.json", operation_id="getAsyncApi")
    async def asyncapi_json(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """The AsyncAPI 3 document of payment.commands and payment.events."""
        return asyncapi_document(request.app.state.settings)

    @get("/asyncapi", media_type=MediaType.HTML, operation_id="getAsyncApiPage")
    async def asyncapi_page(self, request: Request[Any, Any, Any]) -> str:
        """Interactive AsyncAPI page (its viewer script loads from a CDN)."""
        from faststream.specification import AsyncAPI

        spec = AsyncAPI(contract_broker(request.app.state.settings), title="pika-payment")
        return get_asyncapi_html(spec.to_specification(), try_it_out_path=None)
