"""Any report as CSV: one row per bucket or item, camelCase headers as in the JSON.

Report cells carry text that users and admins chose (pack names, promo codes, plan
ids). A spreadsheet opening the file runs a cell that starts with `=`, `+`, `-`, `@`,
a tab or a carriage return as a formula (`=cmd|' /C calc'!A0`), so such text cells are
prefixed with a single quote (OWASP "CSV injection"). Only text is escaped, decided by
the value's type and never by its look: counts and amounts are ints, and a negative
amount stays a number that the spreadsheet and a CSV reader parse as one.

Rows end in CRLF (RFC 4180): the writer then quotes any cell holding a CR or an LF, so
a carriage return inside a name cannot split a row either.
"""

import csv
import io
from datetime import datetime
from typing import Any

from pydantic.alias_generators import to_camel

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(text: str) -> str:
    """`text` as a spreadsheet shows it literally."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return escape_formula(value)
    return value


def to_csv(report: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = report.get("buckets") or report.get("items") or []
    out = io.StringIO()
    if not rows:
        return ""
    writer = csv.DictWriter(out, fieldnames=[to_camel(k) for k in rows[0]], lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({to_camel(k): _cell(v) for k, v in row.items()})
    return out.getvalue()
