#!/usr/bin/env python3
"""Whether one tern-load report passes the max-rate criterion of its scenario; exit 0 if
so, 1 if not (the reason on stderr). Used by bench/compare.sh's rate searches and by
report.py, so the two always agree.

- logins: no failed login, and p99 latency (from the due time) under 1 s: a server that
  falls behind builds a backlog that a short run shows as growing latency before logins
  start timing out.
- messages: every message delivered, none duplicated, and p99 latency under 10 ms.
"""

import json
import sys

LOGIN_P99_MS = 1000.0
MESSAGE_P99_MS = 10.0


def verdict(report):
    """(passed, reason)."""
    name = report.get("scenario")
    p99 = (report.get("latency") or {}).get("p99_ms")
    if name == "logins":
        logins = report.get("logins") or {}
        if logins.get("failed"):
            return False, f"{logins['failed']} logins failed"
        if p99 is None or p99 >= LOGIN_P99_MS:
            return False, f"p99 {p99} ms >= {LOGIN_P99_MS} ms"
        return True, "ok"
    if name == "messages":
        m = report.get("messages") or {}
        if not m.get("all_delivered") or m.get("duplicates"):
            return False, f"{m.get('delivered')} of {m.get('scheduled')} delivered, {m.get('duplicates')} duplicates"
        if p99 is None or p99 >= MESSAGE_P99_MS:
            return False, f"p99 {p99} ms >= {MESSAGE_P99_MS} ms"
        return True, "ok"
    return False, f"no criterion for {name}"


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        ok, reason = verdict(json.load(f))
    print(reason, file=sys.stderr)
    sys.exit(0 if ok else 1)
