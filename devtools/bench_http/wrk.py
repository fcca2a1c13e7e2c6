"""Driving one phase with `wrk` (Debian's package) and reading its figures back.

The request comes from a Lua script written per phase: it picks the next bearer token
of a list (many users, so reads do not all hit one row), and for writes the next
JSON body and a fresh Idempotency-Key per request. wrk's `done` callback prints one
JSON line (requests, duration, p50/p99 in microseconds, non-2xx/3xx answers, socket
errors, and for writes how many answered 202 pending), which is what this module parses.
"""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MARKER = "BENCH_HTTP_RESULT "
# Shared by every script: the round-robin choice, the per-thread counters and the
# summary line. `tokens`, `bodies` and the request function are prepended per phase.
COMMON = r"""
local threads = {}
local counter = 0
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  counter = 0
  pending = 0
  prefix = args[1] or "k"
end
function next_index(n)
  counter = counter + 1
  return (counter + id * 7919) % n + 1
end
function done(summary, latency, requests)
  local pending_total = 0
  for _, t in ipairs(threads) do pending_total = pending_total + (t:get("pending") or 0) end
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non_2xx": %d, ' ..
    '"socket_errors": %d, "pending": %d}\n', "__MARKER__",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, pending_total))
end
""".replace("__MARKER__", MARKER)
READ = r"""
request = function()
  local token = tokens[next_index(#tokens)]
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
end
"""
WRITE = r"""
request = function()
  local i = next_index(#bodies)
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. tokens[1],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("%s-%d-%d", prefix, id, counter),
  }, bodies[i])
end
response = function(status, headers, body)
  if status == 202 then pending = pending + 1 end
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    pending: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string literal for ASCII text


def script(path: str, tokens: list[str], bodies: list[str] | None = None) -> str:
    """The Lua of one phase: reads (GET `path`) or, with `bodies`, writes (POST)."""
    lines = [f"path = {lua_string(path)}",
             "tokens = {" + ",".join(lua_string(t) for t in tokens) + "}"]
    if bodies is not None:
        lines.append("bodies = {" + ",".join(lua_string(b) for b in bodies) + "}")
    return "\n".join(lines) + COMMON + (READ if bodies is None else WRITE)


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed: `make bench-http` installs it as root "
                           "(apt-get install wrk), or install Debian's wrk package yourself")
    return found


def run_wrk(
    url: str, lua: Path, *, seconds: float, connections: int, threads: int, key_prefix: str = "k"
) -> WrkResult:
    """One wrk run; raises when it fails or prints no summary."""
    command = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", "10s", "-s", str(lua), url, "--", key_prefix]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout)[-500:]}")
    data = json.loads(line[len(MARKER):])
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        non_2xx=data["non_2xx"],
        socket_errors=data["socket_errors"],
        pending=data["pending"],
    )
