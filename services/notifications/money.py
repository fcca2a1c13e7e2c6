"""Money for people: integer minor units + ISO currency, formatted without floats.

A float would print 0.1 + 0.2 cents wrong one day; `divmod` on the integer never
does. The exponent table follows Stripe's zero- and three-decimal currencies.
"""

ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
     "xaf", "xof", "xpf"}
)
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def exponent(currency: str) -> int:
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    return 3 if code in THREE_DECIMAL else 2


def format_money(minor: int, currency: str) -> str:
    """`1250, "usd"` → `"12.50 USD"`; `-5, "usd"` → `"-0.05 USD"`; `1000, "jpy"` → `"1,000 JPY"`."""
    places = exponent(currency)
    sign = "-" if minor < 0 else ""
    major, fraction = divmod(abs(minor), 10**places)
    digits = f"{major:,}" + (f".{fraction:0{places}d}" if places else "")
    return f"{sign}{digits} {currency.upper()}"
