"""Replies a route documents besides its success and its errors (ingress.errors).

A route that publishes a command waits PAYMENT_REPLY_TIMEOUT for the ledger, then
answers 202 with where to ask (ingress.gateway). A client generated from the document
must know that reply exists, or it treats a slow grant as an unexpected status.
ResponseSpec cannot declare headers, so ingress.openapi_schemas adds the 202's
`Location` header to the document.
"""

from litestar.openapi import ResponseSpec

from schemas.api import CommandPendingRead

PENDING_DESCRIPTION = (
    "Published but not applied within PAYMENT_REPLY_TIMEOUT: poll the `Location` "
    "(`GET /payment/commands/{id}`); the command is applied once."
)
LOCATION_HEADER = {
    "description": "Where the command's status is: `/payment/commands/{commandId}`.",
    "required": True,
    "schema": {"type": "string"},
}


def pending_response() -> dict[int, ResponseSpec]:
    """`responses=` entry for a command-publishing route: the 202 pending reply."""
    return {202: ResponseSpec(data_container=CommandPendingRead, description=PENDING_DESCRIPTION)}
