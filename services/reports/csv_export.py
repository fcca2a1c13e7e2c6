"""Any report as CSV: one row per bucket or item, camelCase headers as in the JSON."""

import csv
import io
from datetime import datetime
from typing import Any

from pydantic.alias_generators import to_camel


def _cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def to_csv(report: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = report.get("buckets") or report.get("items") or []
    out = io.StringIO()
    if not rows:
        return ""
    writer = csv.DictWriter(out, fieldnames=[to_camel(k) for k in rows[0]], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({to_camel(k): _cell(v) for k, v in row.items()})
    return out.getvalue()
