#!/usr/bin/env python3
"""Writes README.md and SVG plots for one bench/compare.sh run from its JSON files alone
(run.json and SERVER.json in the folder given), so the report can be regenerated, or its
wording changed, without measuring again:

    python3 bench/peers/report.py docs/benchmarks/<run>

Figures are medians over the repetitions; ratios are Tern's figure divided by the other
server's, from the same run. Each goal of issue 6 is marked met or not met."""

import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import criteria  # noqa: E402
import startup_report  # noqa: E402
import svg  # noqa: E402

NOISY_CORES = 0.15


def get(obj, *path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    if r is None:
        return "–"
    return f"{r:.2f}" if r >= 0.1 else f"{r:.3f}"


class Server:
    """The figures of one server, medians over repetitions."""

    def __init__(self, doc, levels):
        self.name = doc["server"]
        self.version = doc.get("version")
        self.doc = doc
        self.reports = doc.get("reports", {})
        self.levels = levels

    def erlang_busy_wait(self):
        """None for a server without an Erlang VM config; else whether its schedulers
        spun when out of work (the VM's default)."""
        cfg = self.doc.get("configs", {}).get("ejabberdctl.cfg")
        if cfg is None:
            return None
        flags = re.search(r'^ERL_OPTIONS="([^"]*)"', cfg, re.M)
        return not (flags and "+sbwt none" in flags.group(1))

    def named(self, pattern):
        rx = re.compile(pattern)
        return [r for n, r in sorted(self.reports.items()) if rx.fullmatch(n) and "error" not in r]

    def med(self, pattern, *path):
        return median([get(r, *path) for r in self.named(pattern)])

    # start-up
    def startup_ms(self):
        return self.med(r"startup-r\d+", "first_login_ms")

    def idle_rss_mib(self):
        kb = self.med(r"startup-r\d+", "idle", "rss_kb")
        return None if kb is None else kb / 1024

    def idle_cpu_cores(self):
        # Exact where tern-load recorded the scheduler's count (schedstat, ns); older runs
        # have only 10 ms ticks, where one tick landing in the window reads as 0.001.
        exact = [None if get(r, "idle", "sched", "on_cpu_ms") is None or not get(r, "idle", "wall_s")
                 else get(r, "idle", "sched", "on_cpu_ms") / 1000 / get(r, "idle", "wall_s")
                 for r in self.named(r"startup-r\d+")]
        if exact and None not in exact:
            return median(exact)
        return self.med(r"startup-r\d+", "idle", "server_cpu_cores")

    # memory per idle connection (kB from /proc are KiB)
    def mem_kib(self, level, key="rss_kb_per_connection"):
        return self.med(rf"idle-{level}-r\d+", "memory", key)

    def hold_cpu_us_per_conn_s(self, level):
        return self.med(rf"idle-{level}-r\d+", "hold", "server_cpu_us_per_connection_s")

    # CPU per operation at a level
    def cpu(self, op, level):
        return self.med(rf"{op}-{level}-r\d+", "server", "cpu_us_per_op")

    def latency(self, op, level, key):
        return self.med(rf"{op}-{level}-r\d+", "latency", key)

    def steps(self, op):
        """[(rate, report)] of a max-rate search, by rate."""
        out = []
        for n, r in self.reports.items():
            m = re.fullmatch(rf"{op}-max-(\d+)", n)
            if m and "error" not in r:
                out.append((int(m.group(1)), r))
        return sorted(out, key=lambda x: x[0])

    def max_rate(self, op):
        """Highest rate passing the criterion with every lower step passing too; and
        whether the search stopped on a failure (else the steps ran out: a lower bound)."""
        best = None
        for rate, r in self.steps(op):
            ok, _ = criteria.verdict(r)
            if not ok:
                return best, True
            best = rate
        return best, False

    def halfmax(self):
        r = self.reports.get("messages-halfmax")
        return r if r and "error" not in r else None

    def quality(self):
        noisy, bound, failed = [], [], []
        for n, r in sorted(self.reports.items()):
            if "error" in r:
                failed.append(n)
                continue
            cores = r.get("other_cpu_cores")
            if cores is None:
                cores = get(r, "idle", "other_cpu_cores")
            if cores is not None and cores > NOISY_CORES:
                noisy.append(f"{n} ({cores:.2f})")
            if r.get("generator_bound"):
                bound.append(n)
        failed += sorted(self.doc.get("failed_runs", {}))
        return noisy, bound, failed

    def checks(self):
        """Runs that lost something (not the rate-search steps, whose failures are the
        point)."""
        out = []
        for n, r in sorted(self.reports.items()):
            if "-max" in n:
                continue
            if get(r, "connections", "failed"):
                out.append(f"{n}: {r['connections']['failed']} logins failed")
            if get(r, "connections", "dropped_during_hold"):
                out.append(f"{n}: {r['connections']['dropped_during_hold']} connections dropped")
            if get(r, "logins", "failed"):
                out.append(f"{n}: {r['logins']['failed']} logins failed")
            m = r.get("messages")
            if m and not m.get("all_delivered"):
                out.append(f"{n}: {m['delivered']} of {m['scheduled']} messages delivered")
            q = r.get("requests")
            if q and not q.get("all_answered_ok"):
                out.append(f"{n}: {q['ok']} of {q['scheduled']} requests answered correctly")
            if get(r, "items", "complete") is False:
                out.append(f"{n}: {r['items']['confirmed']} of {r['items']['expected']} roster items confirmed")
        return out


def load(folder):
    with open(os.path.join(folder, "run.json")) as f:
        meta = json.load(f)
    servers = {}
    for name in meta["servers"]:
        path = os.path.join(folder, f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                servers[name] = Server(json.load(f), meta["levels"])
    return meta, servers


# Which floor scenario (bench/floor tls-*) bounds which tern-load scenario from below.
FLOOR_OF = {"logins": "logins", "messages": "messages", "services": "requests", "credentials": "requests"}


def load_floor(folder):
    """{floor scenario: [CPU µs per operation of each repetition]} or {} without floor.json."""
    path = os.path.join(folder, "floor.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        runs = json.load(f).get("runs", {})
    out = {}
    for name, r in sorted(runs.items()):
        scenario = re.sub(r"-r\d+$", "", name)
        if isinstance(r.get("cpu_us_per_op"), (int, float)):
            out.setdefault(scenario, []).append(r["cpu_us_per_op"])
    return out


def goal_rows(servers, levels, floor=None):
    """(goal, figure, unit, tern, prosody, ejabberd, target description, met) rows. With the
    floor's figures, a CPU goal whose budget the floor alone exceeds says so."""
    floor = floor or {}
    t, p, e = (servers.get(n) for n in ("tern", "prosody", "ejabberd"))
    base = levels[0]
    rows = []

    def val(s, f):
        return None if s is None else f(s)

    def verdict(checks):
        """checks: [(description, bool or None)] -> 'met' / 'NOT met' / 'not measured'."""
        if any(c is None for _, c in checks):
            missing = [d for d, c in checks if c is None]
            failed = [d for d, c in checks if c is False]
            if failed:
                return "**NOT met** (" + ", ".join(failed) + "; not measured: " + ", ".join(missing) + ")"
            return "not measured (" + ", ".join(missing) + ")"
        failed = [d for d, c in checks if not c]
        return "met" if not failed else "**NOT met** (" + ", ".join(failed) + ")"

    def le(a, b):
        return None if a is None or b is None else a <= b

    def against(figure, f, prosody_share, ejabberd_share, extra=(), op=None):
        tv, pv, ev = val(t, f), val(p, f), val(e, f)
        checks = [
            (f"≤ 1/{prosody_share} Prosody", le(ratio(tv, pv), 1 / prosody_share)),
            (f"≤ 1/{ejabberd_share} ejabberd", le(ratio(tv, ev), 1 / ejabberd_share)),
        ] + list(extra)
        text = verdict(checks)
        floor_us = median(floor.get(FLOOR_OF.get(op), []))
        if floor_us is not None:
            beyond = [f"{who} {fmt(budget)} µs" for who, budget in
                      (("1/%d Prosody" % prosody_share, None if pv is None else pv / prosody_share),
                       ("1/%d ejabberd" % ejabberd_share, None if ev is None else ev / ejabberd_share))
                      if budget is not None and floor_us >= budget]
            if beyond:
                text += (f"; out of reach here: the floor alone costs {fmt(floor_us)} µs, "
                         f"at or above the budget of " + " and ".join(beyond))
        rows.append((figure, tv, pv, ev, ratio(tv, pv), ratio(tv, ev),
                     " and ".join(d for d, _ in checks), text))

    for level in levels:
        tv = val(t, lambda s: s.mem_kib(level))
        against(f"memory per idle TLS connection at {level}, KiB RSS",
                lambda s, level=level: s.mem_kib(level), 4, 3,
                [("≤ 16 KiB", le(tv, 16.0))])
    against(f"CPU per login, µs (with {base} connected)", lambda s: s.cpu("logins", base), 10, 5, op="logins")
    halfmax_p99 = get(t.halfmax(), "latency", "p99_ms") if t else None
    against(f"CPU per message, µs (with {base} connected)", lambda s: s.cpu("messages", base), 10, 3,
            [("Tern p99 at half max rate < 2 ms", None if halfmax_p99 is None else halfmax_p99 < 2.0)],
            op="messages")
    against(f"CPU per XEP-0215 services request, µs", lambda s: s.cpu("services", base), 10, 4, op="services")
    against(f"CPU per XEP-0215 credentials request, µs", lambda s: s.cpu("credentials", base), 10, 4,
            op="credentials")

    def absolute(figure, f, description, test):
        tv, pv, ev = val(t, f), val(p, f), val(e, f)
        rows.append((figure, tv, pv, ev, ratio(tv, pv), ratio(tv, ev), description,
                     verdict([(description, None if tv is None else test(tv))])))

    absolute("start-up: exec to first login, ms", Server.startup_ms, "< 50 ms", lambda v: v < 50)
    absolute("idle RSS, no connection, MiB", Server.idle_rss_mib, "< 8 MiB", lambda v: v < 8)
    absolute("idle CPU, no connection, cores", Server.idle_cpu_cores, "≤ 0.001 (schedstat's exact count; older runs: one 10 ms tick in 10 s)",
             lambda v: v <= 0.001)
    if len(levels) > 1:
        lo, hi = levels[0], levels[-1]
        for op, label in (("logins", "login"), ("messages", "message"), ("services", "services request"),
                          ("credentials", "credentials request")):
            f = (lambda s, op=op: ratio(s.cpu(op, hi), s.cpu(op, lo)))
            absolute(f"CPU per {label} at {hi} ÷ at {lo}", f, "within 10% (0.90–1.10)",
                     lambda v: 0.9 <= v <= 1.1)
        f = (lambda s: ratio(s.mem_kib(hi), s.mem_kib(lo)))
        absolute(f"memory per connection at {hi} ÷ at {lo}", f, "within 10% (0.90–1.10)",
                 lambda v: 0.9 <= v <= 1.1)
    else:
        rows.append(("cost per connected user, 1k → 10k", None, None, None, None, None,
                     "flat within 10%", "not measured (run with --scale)"))
    return rows


def write_plots(folder, servers, levels):
    names = [n for n in ("tern", "prosody", "ejabberd") if n in servers] + \
        sorted(n for n in servers if n not in ("tern", "prosody", "ejabberd"))
    base = levels[0]
    plots = {}
    ops = [("logins", "login"), ("messages", "message"), ("services", "services"), ("credentials", "credentials")]
    plots["cpu-per-op.svg"] = svg.bars(
        f"Server CPU per operation ({base} users connected)", "µs per operation (log)",
        [label for _, label in ops],
        [(n, [servers[n].cpu(op, base) for op, _ in ops]) for n in names], log=True)
    plots["memory-per-connection.svg"] = svg.bars(
        "Memory per idle authenticated TLS connection", "KiB RSS per connection",
        [f"{level} connections" for level in levels],
        [(n, [servers[n].mem_kib(level) for level in levels]) for n in names])
    plots["startup.svg"] = svg.bars(
        "Start-up: exec to first successful login", "ms (log)", ["first login"],
        [(n, [servers[n].startup_ms()]) for n in names], log=True)
    pct = [("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("p99_9_ms", "p99.9"), ("max_ms", "max")]
    rate = None
    for n in names:
        rate = rate or median([get(r, "params", "rate") for r in servers[n].named(rf"messages-{base}-r\d+")])
    plots["message-latency.svg"] = svg.bars(
        f"Message latency at {fmt(rate, 0)}/s ({base} users connected)", "ms from due time (log)",
        [label for _, label in pct],
        [(n, [servers[n].latency("messages", base, key) for key, _ in pct]) for n in names], log=True)
    plots["max-rate-messages.svg"] = svg.lines(
        "Messages: p99 latency as the rate rises", "messages per second (log)", "p99 ms (log)",
        [(n, [(r, get(rep, "latency", "p99_ms")) for r, rep in servers[n].steps("messages")]) for n in names],
        logx=True, logy=True, hline=(criteria.MESSAGE_P99_MS, "10 ms criterion"))
    plots["max-rate-logins.svg"] = svg.lines(
        "Logins: p99 latency as the rate rises", "logins per second (log)", "p99 ms (log)",
        [(n, [(r, get(rep, "latency", "p99_ms")) for r, rep in servers[n].steps("logins")]) for n in names],
        logx=True, logy=True, hline=(criteria.LOGIN_P99_MS, "1 s criterion"))
    if len(levels) > 1:
        lo, hi = levels[0], levels[-1]
        plots["scaling.svg"] = svg.bars(
            f"Cost at {hi} connected users ÷ cost at {lo}", "ratio (1 = flat)",
            [label for _, label in ops] + ["memory/conn"],
            [(n, [ratio(servers[n].cpu(op, hi), servers[n].cpu(op, lo)) for op, _ in ops]
              + [ratio(servers[n].mem_kib(hi), servers[n].mem_kib(lo))]) for n in names])
    for name, text in plots.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)
    return sorted(plots)


def floor_section(servers, base, floor):
    """The floor against each CPU goal's budgets and Tern's own figure."""
    L = ["## The floor: what a server doing no XMPP pays here", "",
         "bench/floor (`tls-server`, pinned like the servers) at the same rates: a TLS 1.3 server "
         "(rustls and ring, the same certificate type, x25519, AES-128-GCM-SHA256, one ticket) that "
         "answers a login's round trips (2 before a full handshake, 7 after it), relays each message "
         "to its partner, and answers each request with a reply the size of Tern's `services` reply. "
         "No XML, SASL, storage or routing. A goal whose budget is at or below the floor cannot be "
         "met by any server on this machine. (Before commit ede740a the floor's logins resumed their "
         "TLS sessions and negotiated AES-256-GCM-SHA384; the two differences cancelled out, 650 µs "
         "per login either way: docs/benchmarks/README.md, \"The floor's login, corrected\".)", "",
         "| scenario | floor µs (median; range) | Tern µs | Tern − floor | 1/10 Prosody | 1/k ejabberd | "
         "floor ÷ Prosody budget | floor ÷ ejabberd budget |",
         "|---|---|---|---|---|---|---|---|"]
    t, p, e = (servers.get(n) for n in ("tern", "prosody", "ejabberd"))
    for op, share in (("logins", 5), ("messages", 3), ("services", 4), ("credentials", 4)):
        runs = floor.get(FLOOR_OF[op], [])
        f = median(runs)
        tv = t.cpu(op, base) if t else None
        pb = p.cpu(op, base) / 10 if p and p.cpu(op, base) is not None else None
        eb = e.cpu(op, base) / share if e and e.cpu(op, base) is not None else None
        spread = f"{fmt(min(runs))}–{fmt(max(runs))}" if runs else "–"
        L.append(f"| {op} | {fmt(f)} ({spread}) | {fmt(tv)} | {fmt(None if tv is None or f is None else tv - f)} | "
                 f"{fmt(pb)} | {fmt(eb)} (1/{share}) | {fmt_ratio(ratio(f, pb))} | {fmt_ratio(ratio(f, eb))} |")
    L.append("")
    return L


def above_ping_section(servers, base, floor):
    """What each server spends on a XEP-0215 request beyond the smallest IQ round trip
    (XEP-0199 ping at the same rate from the same clients): the ping carries the TLS
    records, wake-ups, parsing and routing every request pays; the difference is the
    XEP-0215 work itself (credentials, the larger reply)."""
    names = [n for n in ("tern", "prosody", "ejabberd") if n in servers]
    if not any(servers[n].cpu("ping", base) is not None for n in names):
        return []
    L = ["## A request above the smallest IQ round trip", "",
         "XEP-0199 pings at the XEP-0215 rate from the same clients (the `ping` scenario): "
         "a request's cost less the ping's is the XEP-0215 work itself. The floor's request "
         "(an 850-byte reply, no XML) is the part no server avoids.", "",
         "| server | ping µs | services µs | services − ping | credentials µs | credentials − ping |",
         "|---|---|---|---|---|---|"]

    def diff(a, b):
        return None if a is None or b is None else a - b

    above = {}
    for n in names:
        s = servers[n]
        ping, svc, cred = s.cpu("ping", base), s.cpu("services", base), s.cpu("credentials", base)
        above[n] = (diff(svc, ping), diff(cred, ping), ping)
        L.append(f"| {n} | {fmt(ping)} | {fmt(svc)} | {fmt(above[n][0])} | {fmt(cred)} | {fmt(above[n][1])} |")
    L.append("")
    if "tern" in above:
        t_svc, t_cred, t_ping = above["tern"]
        for n in names:
            if n == "tern":
                continue
            p_svc, p_cred, p_ping = above[n]
            L.append(f"- Tern ÷ {n}: the ping {fmt_ratio(ratio(t_ping, p_ping))}; the XEP-0215 work above it "
                     f"{fmt_ratio(ratio(t_svc, p_svc))} (services) and {fmt_ratio(ratio(t_cred, p_cred))} (credentials).")
        f = median(floor.get("requests", []))
        if f is not None and t_ping is not None:
            L.append(f"- Tern's ping less the floor's request: {fmt(t_ping - f)} µs per IQ for parsing, routing "
                     "and answering it.")
        L.append("")
    return L


def main(folder):
    meta, servers = load(folder)
    floor = load_floor(folder)
    levels = meta["levels"]
    base = levels[0]
    names = [n for n in meta["servers"] if n in servers]
    plots = write_plots(folder, servers, levels)
    L = []
    L.append(f"# Tern, Prosody and ejabberd side by side{' (smoke run: plumbing only)' if meta['smoke'] else ''}")
    L.append("")
    if meta.get("incomplete"):
        L.append("**This run stopped before the end: some figures are missing.**")
        L.append("")
    L.append("Reproduce (from the repository root, as root, on a quiet 2-CPU machine):")
    L.append("")
    L.append("```sh")
    L.append(meta["command"])
    L.append("```")
    L.append("")
    L.append("Regenerate this page and the plots from the JSON files here, without measuring:")
    L.append("`python3 bench/peers/report.py <this folder>`.")
    L.append("")
    L.append(f"Commit {(meta.get('commit') or '?')[:12]}{' (dirty work tree)' if meta.get('worktree_dirty') else ''}; "
             f"{meta['cpu']}, {meta['cpus']} CPUs, kernel {meta['kernel']}; {meta['pinning']}; "
             f"ulimit -n {meta['ulimit_n']}; loopback port range {' – '.join(meta.get('ip_local_port_range') or ['?'])}; "
             f"load average at start {meta['loadavg_at_start']}"
             f"{'; **other builds were running**' if meta.get('busy_at_start') else ''}; "
             f"{meta['repetitions']} repetitions (medians shown); {meta['wall_s']} s in all.")
    L.append("")
    L.append("Servers: " + "; ".join(f"{servers[n].version or n}" for n in names) + ". "
             f"{meta['accounts']} accounts, each with a roster of {meta['roster_contacts']} contacts "
             "(jabber:iq:roster sets, subscription none); every login fetches the roster and sends initial presence.")
    L.append("")
    L.append("## Goals (issue 6)")
    L.append("")
    L.append("| figure | Tern | Prosody | ejabberd | Tern/Prosody | Tern/ejabberd | goal | verdict |")
    L.append("|---|---|---|---|---|---|---|---|")
    for figure, tv, pv, ev, rp, re_, goal, verdict in goal_rows(servers, levels, floor):
        digits = 3 if "cores" in figure else (2 if "÷" in figure else 1)
        L.append(f"| {figure} | {fmt(tv, digits)} | {fmt(pv, digits)} | {fmt(ev, digits)} | {fmt_ratio(rp)} | "
                 f"{fmt_ratio(re_)} | {goal} | {verdict} |")
    L.append("")
    if floor:
        L.extend(floor_section(servers, base, floor))
    L.extend(above_ping_section(servers, base, floor))
    L.extend(startup_report.startup_section(servers, names))
    L.append("## All figures")
    L.append("")
    L.append("| figure | " + " | ".join(names) + " |")
    L.append("|---|" + "---|" * len(names))

    def row(label, f, digits=1):
        L.append(f"| {label} | " + " | ".join(fmt(f(servers[n]), digits) for n in names) + " |")

    row("start-up: exec to port open, ms", lambda s: s.med(r"startup-r\d+", "listening_ms"))
    row("start-up: exec to first login, ms", Server.startup_ms)
    row("start-up: server CPU until first login, ms", lambda s: s.med(r"startup-r\d+", "startup_cpu_ms"))
    row("idle, no connection: RSS MiB", Server.idle_rss_mib, 2)
    row("idle, no connection: PSS MiB",
        lambda s: None if s.med(r"startup-r\d+", "idle", "pss_kb") is None else s.med(r"startup-r\d+", "idle", "pss_kb") / 1024, 2)
    row("idle, no connection: CPU cores", Server.idle_cpu_cores, 4)
    row("idle, no connection: processes", lambda s: s.med(r"startup-r\d+", "idle", "processes"), 0)
    for level in levels:
        row(f"{level} idle connections: RSS KiB per connection", lambda s, level=level: s.mem_kib(level))
        row(f"{level} idle connections: PSS KiB per connection",
            lambda s, level=level: s.mem_kib(level, "pss_kb_per_connection"))
        row(f"{level} idle connections: RSS MiB in all",
            lambda s, level=level: None if s.med(rf"idle-{level}-r\d+", "memory", "rss_kb_after") is None
            else s.med(rf"idle-{level}-r\d+", "memory", "rss_kb_after") / 1024)
        row(f"{level} idle connections: CPU µs per login of the ramp", lambda s, level=level: s.med(rf"idle-{level}-r\d+", "server", "cpu_us_per_op"))
        for op, label in (("logins", "login"), ("messages", "message"), ("services", "services request"),
                          ("credentials", "credentials request"), ("ping", "XEP-0199 ping (reference)")):
            row(f"with {level} connected: CPU µs per {label}", lambda s, op=op, level=level: s.cpu(op, level))
    def suites(s):
        # Servers choosing different suites hash their handshakes differently
        # (SHA-384 or SHA-256): part of what a login costs each.
        found = sorted({k for r in s.named(r"logins-.*") for k in (r.get("tls_suites") or {})})
        return ", ".join(suite.replace("TLS13_", "") for suite in found) or "–"
    L.append("| cipher suite the logins negotiated | " + " | ".join(suites(servers[n]) for n in names) + " |")
    for op, label in (("logins", "logins/s"), ("messages", "messages/s")):
        def best(s, op=op):
            rate, stopped = s.max_rate(op)
            if rate is None:
                steps = s.steps(op)
                return f"< {steps[0][0]} (the lowest step failed)" if steps else "–"
            return f"{rate}" + ("" if stopped else "+ (steps ran out)")
        L.append(f"| highest {label} passing the criterion (with {base} connected) | " +
                 " | ".join(best(servers[n]) for n in names) + " |")
    row("messages at half that rate: p99 ms", lambda s: get(s.halfmax(), "latency", "p99_ms"), 2)
    row("messages at half that rate: CPU µs per message", lambda s: get(s.halfmax(), "server", "cpu_us_per_op"))
    L.append("")
    rates = {}
    for n in names:
        for op in ("logins", "messages", "services"):
            rates.setdefault(op, median([get(r, "params", "rate") for r in servers[n].named(rf"{op}-{base}-r\d+")]))
    L.append(f"Fixed rates: logins {fmt(rates.get('logins'), 0)}/s, messages {fmt(rates.get('messages'), 0)}/s, "
             f"XEP-0215 {fmt(rates.get('services'), 0)}/s of each kind, the same for every server. "
             "Rate searches: logins pass with no failure and p99 < 1 s; messages with all delivered and p99 < 10 ms.")
    L.append("")
    L.append(f"### Latency at the fixed rates (ms from the due time, {base} connected; p50 / p90 / p99 / p99.9 / max)")
    L.append("")
    L.append("| scenario | " + " | ".join(names) + " |")
    L.append("|---|" + "---|" * len(names))
    for op in ("logins", "messages", "services", "credentials", "ping"):
        cells = []
        for n in names:
            s = servers[n]
            cells.append(" / ".join(fmt(s.latency(op, base, k), 2) for k in ("p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms")))
        L.append(f"| {op} | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        h = servers[n].halfmax()
        cells.append("–" if not h else f"{fmt(get(h, 'params', 'rate'), 0)}/s: " + " / ".join(
            fmt(get(h, "latency", k), 2) for k in ("p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms")))
    L.append("| messages at half the max rate | " + " | ".join(cells) + " |")
    L.append("")
    L.append("## Plots")
    L.append("")
    for p in plots:
        L.append(f"![{p}]({p})")
        L.append("")
    L.append("## Notes")
    L.append("")
    notes = []
    layout = meta.get("tern_code_layout")
    if layout and layout["found"] < 0.9 * layout["listed"]:
        notes.append(f"tern: only {layout['found']} of the {layout['listed']} functions of build/code-layout.txt "
                     "are in the binary: the list is stale (a toolchain or Cargo.lock update), so its idle RSS "
                     "is higher than it need be; rerun `bash build/collect-code-layout.sh`")
    for n in names:
        s = servers[n]
        cred = [get(r, "requests", "credentials_answered_as_services") for r in s.named(r"credentials-.*")]
        if any(cred):
            notes.append(f"{n}: {sum(c for c in cred if c)} credentials requests were answered with `<services>` "
                         "carrying the requested TURN services and credentials instead of `<credentials>` (ejabberd "
                         "before 24.12); tern-load counts them as answered (the work is done, the element name is "
                         "wrong) and the CPU figure stands, flagged here.")
        noisy, bound, failed = s.quality()
        if noisy:
            notes.append(f"{n}: noisy (other processes used more than {NOISY_CORES} cores): " + ", ".join(noisy))
        if bound:
            notes.append(f"{n}: generator-bound (tern-load above 80% of its core; the figure may describe the "
                         "generator): " + ", ".join(bound))
        if failed:
            notes.append(f"{n}: runs without a report: " + ", ".join(failed))
        for c in s.checks():
            notes.append(f"{n}: {c}")
        busy_wait = s.erlang_busy_wait()
        if busy_wait is not None:
            notes.append(f"{n}: the Erlang schedulers' busy wait was "
                         + ("off (`+sbwt none +sbwtdcpu none +sbwtdio none`): like the other servers, it "
                            "sleeps when it has nothing to do" if not busy_wait else
                            "on (the VM's default): an idle scheduler spins before it sleeps, and the spin "
                            "counts in its CPU per operation")
                         + " (docs/benchmarks/README.md, \"ejabberd's busy wait\").")
    notes.append("Memory per connection is the server's RSS (and PSS) growth from before the first login to "
                 "when all connections are up, divided by the connections; RSS and PSS include every process "
                 "of the server (ejabberd: the ejabberdctl shell script, beam.smp, erl_child_setup and its "
                 "helpers; Prosody: one Lua process; Tern: one process).")
    if meta.get("interleaved"):
        notes.append("Each repetition took the servers in turn, in an order rotated from one repetition to "
                     "the next, then the floor; the maximum-rate searches ran last, one server after the "
                     "other.")
    else:
        notes.append("All repetitions of one server ran before the next server's (runs before the servers "
                     "took turns): a slow spell of the machine weighs on whichever server ran in it.")
    notes.append("CPU is utime+stime from /proc (10 ms ticks) of the server and its descendants over the "
                 "measured window, divided by the operations completed; the held idle connections run "
                 "meanwhile, as in a server with users online.")
    for note in notes:
        L.append(f"- {note}")
    L.append("")
    L.append("Exact tern-load commands and the rendered server configs are in each server's JSON file "
             "(`commands`, `configs`).")
    L.append("")
    with open(os.path.join(folder, "README.md"), "w") as f:
        f.write("\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RESULTS_FOLDER")
    main(sys.argv[1])
