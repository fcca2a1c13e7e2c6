"""The result table of `make bench-http` (stdout) and the notes under it."""

import math

from devtools.bench_http.phases import Figure, Results

BALANCE_GOAL = 0.3  # issue 14: balance reads >= 0.3 x the bare endpoint now, 0.5 later
QUERIES_GOAL = 3  # Postgres queries (SQL statements) per waiting write


def _ratio(figure: Figure | None, bare: Figure | None) -> str:
    if figure is None or bare is None or not bare.wrk.rate:
        return "-"
    return f"{figure.wrk.rate / bare.wrk.rate:.3f}"


def _trips(figure: Figure) -> str:
    if not figure.trips:
        return "-"
    statements = figure.trips.get("statement", 0.0)
    total = sum(figure.trips.values())
    return f"{statements:.2f} ({total:.2f})"


def print_results(results: Results) -> None:
    bare = results.figures.get("bare")
    rows = [("phase", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "queries (round trips)/req", "x bare")]
    for name, figure in results.figures.items():
        w = figure.wrk
        rows.append((
            figure.label, f"{w.rate:,.0f}", f"{w.p50_ms:.1f}", f"{w.p99_ms:.1f}",
            "-" if math.isnan(figure.cpu_ms) else f"{figure.cpu_ms:.2f}", _trips(figure),
            "1" if figure is bare else (_ratio(figure, bare) if name != "grant" else "-"),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                        enumerate(zip(row, widths, strict=True))))
    balance, history, grant = (results.figures.get(n) for n in ("balance", "history", "grant"))
    print()
    print(f"balance / bare = {_ratio(balance, bare)} (goal >= {BALANCE_GOAL}), "
          f"history / bare = {_ratio(history, bare)}")
    if grant is not None:
        queries = grant.trips.get("statement", math.nan)
        print(f"grants over HTTP: {grant.wrk.rate:,.0f}/s, p50 {grant.wrk.p50_ms:.1f} ms, "
              f"p99 {grant.wrk.p99_ms:.1f} ms, {queries:.2f} queries per request (goal <= {QUERIES_GOAL})")
    for figure in results.figures.values():
        if figure.wrk.non_2xx or figure.wrk.socket_errors:
            print(f"WARNING {figure.label}: {figure.wrk.non_2xx} non-2xx answers, "
                  f"{figure.wrk.socket_errors} socket errors")
    print()
    print("notes:")
    print("- queries = SQL statements the ingress sent per request it answered (its /metrics, "
          "after the requests still running finished); round trips add BEGIN, COMMIT/ROLLBACK "
          "and SQLAlchemy's pre-ping (ingress.db_metrics)")
    print("- CPU ms/req: the server process's own CPU (user + system) over the measured run")
    for note in results.notes:
        print(f"- {note}")
