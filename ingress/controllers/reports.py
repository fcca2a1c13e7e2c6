"""Reports for admins (finance, product): JSON by default, CSV with `?format=csv` or
`Accept: text/csv`. Read straight from Postgres, never through the ledger worker."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from litestar import Controller, MediaType, Request, Response, get
from litestar.params import Parameter
from pydantic.alias_generators import to_camel

from ingress.auth import BEARER, admin_only
from ingress.deps import resources_of
from ingress.errors import AUTHED_ERRORS, error_responses
from services.errors import ValidationFailed
from services.reports import queries
from services.reports import use_cases as reports
from services.reports.csv_export import to_csv

From = Annotated[date | None, Parameter(query="from", description="First day (UTC); default 30 days ago.")]
To = Annotated[date | None, Parameter(query="to", description="Day after the last (UTC); default tomorrow.")]
Currency = Annotated[str, Parameter(pattern=r"^[a-z]{3}$")]
Format = Annotated[Literal["json", "csv"] | None, Parameter(query="format")]
Gran = Literal["day", "month"]


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {to_camel(k): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _period(start: date | None, end: date | None, granularity: Gran) -> queries.Range:
    today = datetime.now(UTC).date()
    try:
        end = end or today + timedelta(days=1)
        start = start or end - timedelta(days=30)
    except OverflowError as error:  # `to` within 30 days of year 1: no default `from`
        raise ValidationFailed("from/to are outside the calendar reports cover") from error
    return queries.Range(datetime.combine(start, time(), UTC), datetime.combine(end, time(), UTC),
                         granularity)


def _answer(
    request: Request[Any, Any, Any],
    name: str,
    period: queries.Range,
    fmt: str | None,
    report: dict[str, Any],
) -> Response[Any]:
    report = {"granularity": period.granularity, "from": period.start.date().isoformat(),
              "to": period.end.date().isoformat(), **report}
    wants_csv = fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))
    if wants_csv:
        filename = f"{name}-{report['from']}-{report['to']}.csv"
        return Response(to_csv(report), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return Response(_camel(report), media_type=MediaType.JSON)


class ReportsController(Controller):
    path = "/payment/reports"
    tags = ["reports"]
    guards = [admin_only]
    security = BEARER

    @get("/revenue", operation_id="revenueReport", responses=error_responses(*AUTHED_ERRORS))
    async def revenue(
        self, request: Request[Any, Any, Any], start: From = None, end: To = None,
        granularity: Gran = "day", currency: Currency = "usd", format: Format = None,
    ) -> Response[Any]:
        """Gross (packs + memberships), refunds and net money per bucket, in minor units."""
        period = _period(start, end, granularity)
        report = await reports.build_revenue_report(resources_of(request).uow, period, currency)
        return _answer(request, "revenue", period, format, report)

    @get("/credits", operation_id="creditsReport", responses=error_responses(*AUTHED_ERRORS))
    async def credits(
        self, request: Request[Any, Any, Any], start: From = None, end: To = None,
        granularity: Gran = "day", format: Format = None,
    ) -> Response[Any]:
        """Credits issued by source, consumed, expired (breakage), clawed back, and the
        outstanding liability at each bucket's end (the sum of user balances then)."""
        period = _period(start, end, granularity)
        report = await reports.build_credits_report(resources_of(request).uow, period)
        return _answer(request, "credits", period, format, report)

    @get("/packs", operation_id="packsReport", responses=error_responses(*AUTHED_ERRORS))
    async def packs(
        self, request: Request[Any, Any, Any], start: From = None, end: To = None,
        currency: Currency = "usd", format: Format = None,
    ) -> Response[Any]:
        """Paid purchases and revenue per pack, best-selling first."""
        period = _period(start, end, "day")
        report = await reports.build_packs_report(resources_of(request).uow, period, currency)
        return _answer(request, "packs", period, format, report)

    @get("/churn", operation_id="churnReport", responses=error_responses(*AUTHED_ERRORS))
    async def churn(
        self, request: Request[Any, Any, Any], start: From = None, end: To = None,
        granularity: Gran = "month", format: Format = None,
    ) -> Response[Any]:
        """Per plan and bucket: members at the start, new, canceled, churn rate (basis points)."""
        period = _period(start, end, granularity)
        report = await reports.build_churn_report(resources_of(request).uow, period)
        return _answer(request, "churn", period, format, report)

    @get("/promo-codes", operation_id="promoCodesReport", responses=error_responses(*AUTHED_ERRORS))
    async def promo_codes(
        self, request: Request[Any, Any, Any], start: From = None, end: To = None,
        format: Format = None,
    ) -> Response[Any]:
        """Per code redeemed in the range: redemptions, discount, revenue, bonus credits."""
        period = _period(start, end, "day")
        report = await reports.build_promo_codes_report(resources_of(request).uow, period)
        return _answer(request, "promo-codes", period, format, report)
