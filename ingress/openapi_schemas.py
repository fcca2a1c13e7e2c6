"""Serve pydantic's own JSON Schema of our wire models in the OpenAPI document.

Litestar builds component schemas itself and loses some of what the models say:
`pattern`s of annotated fields, `additionalProperties: false` (the models forbid
unknown keys), and a dict with a size limit becomes an array. Other teams code
against this document (and the fuzz tests generate requests from it), so the
components named after our models are replaced by what pydantic validates with.
"""

import copy
from functools import lru_cache
from typing import Any

from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin

from ingress.replies import LOCATION_HEADER
from schemas.base import WireModel

REF = "#/components/schemas/{model}"


def _wire_models() -> dict[str, type[WireModel]]:
    found: dict[str, type[WireModel]] = {}
    pending = list(WireModel.__subclasses__())
    while pending:
        model = pending.pop()
        found.setdefault(model.__name__, model)
        pending += model.__subclasses__()
    return found


@lru_cache(maxsize=1)
def _models() -> dict[str, type[WireModel]]:
    return _wire_models()


def faithful(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of `document` whose model components are pydantic's schemas."""
    fixed = copy.deepcopy(document)
    components = fixed.setdefault("components", {}).setdefault("schemas", {})
    models = _models()
    for name in list(components):
        model = models.get(name)
        if model is None:
            continue
        schema = model.model_json_schema(by_alias=True, ref_template=REF)
        for def_name, definition in schema.pop("$defs", {}).items():
            components.setdefault(def_name, definition)
        components[name] = schema
    _declare_pending_location(fixed)
    _no_content_has_no_body(fixed)
    return fixed


def _no_content_has_no_body(document: dict[str, Any]) -> None:
    """A 204 sends no body; Litestar documents `Response[None]` as JSON `null`, which a
    client (or schemathesis) would then expect with a Content-Type."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            empty = operation.get("responses", {}).get("204") if isinstance(operation, dict) else None
            if isinstance(empty, dict):
                empty.pop("content", None)


def _declare_pending_location(document: dict[str, Any]) -> None:
    """Every 202 (ingress.replies) carries `Location`; Litestar's ResponseSpec cannot say so."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            accepted = operation.get("responses", {}).get("202") if isinstance(operation, dict) else None
            if isinstance(accepted, dict):
                accepted.setdefault("headers", {})["Location"] = LOCATION_HEADER


class FaithfulJsonRenderPlugin(JsonRenderPlugin):
    """`/openapi.json` with the models' own schemas (see the module docstring).

    Litestar builds the document once and hands the same dict to every request, so the
    substituted document is rendered once per process, not per request.
    """

    _source: dict[str, Any] | None = None
    _rendered: bytes = b""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if openapi_schema is not self._source:
            self._rendered = self.render_json(request, faithful(openapi_schema))
            self._source = openapi_schema
        return self._rendered
