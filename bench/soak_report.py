#!/usr/bin/env python3
"""Helper of bench/soak.sh (Python standard library only). Subcommands:

  adduser --socket PATH --domain D --password P --prefix X [--first F] --count N
      creates accounts X{F}..X{N-1} through a running Tern's admin socket (one connection,
      one JSON request per line, as `tern adduser` sends when the server runs).
  conns --port PORT
      prints how many TCP connections on this machine have local port PORT and are
      ESTABLISHED (the server's side of every client connection).
  sample --pid PID --port PORT --interval S --out FILE --stop FILE
      appends one JSON line every S seconds to FILE about process PID (RSS, PSS, open file
      descriptors, threads, CPU) and the server's TCP connections on PORT, until the stop
      file exists or the process is gone.
  svg --json soak.json --out soak.svg [--stamp TEXT]
      draws the plot again from a soak.json.
  report
      reads the work folder (samples, events, every tern-load report, tern.log; paths
      and settings come from the environment, see main()) and writes soak.json, soak.md and
      soak.svg to the output folder. Exit status 1 if a check failed.
"""

import glob
import json
import os
import re
import socket
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# ---------------------------------------------------------------- adduser


def adduser(args):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(args["socket"])
    reader = sock.makefile("r", encoding="utf-8")
    count, prefix, first = int(args["count"]), args["prefix"], int(args.get("first", 0))
    failed = 0
    batch = 200  # requests written before reading their answers (the server answers in order)
    for start in range(first, count, batch):
        end = min(count, start + batch)
        out = "".join(
            json.dumps({"command": "add_user", "jid": f"{prefix}{i}@{args['domain']}",
                        "password": args["password"]}) + "\n"
            for i in range(start, end))
        sock.sendall(out.encode())
        for i in range(start, end):
            line = reader.readline()
            if not line:
                sys.exit(f"the admin socket closed after {i} of {count} accounts")
            answer = json.loads(line)
            if not answer.get("ok"):
                failed += 1
                if failed <= 5:
                    print(f"add_user {prefix}{i}: {answer.get('message')}", file=sys.stderr)
    sock.close()
    if failed:
        sys.exit(f"{failed} of {count - first} accounts not created")


# ---------------------------------------------------------------- /proc

TCP_STATES = {
    "01": "established", "02": "syn_sent", "03": "syn_recv", "04": "fin_wait1",
    "05": "fin_wait2", "06": "time_wait", "07": "close", "08": "close_wait",
    "09": "last_ack", "0A": "listen", "0B": "closing",
}


def tcp_states(port):
    """Connections whose local port is `port`, counted by TCP state."""
    counts = {}
    want = f":{port:04X}"
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1].endswith(want):
                        state = TCP_STATES.get(fields[3], fields[3])
                        counts[state] = counts.get(state, 0) + 1
        except OSError:
            pass
    return counts


def conns(args):
    print(tcp_states(int(args["port"])).get("established", 0))


def read_sample(pid, port):
    """One sample of process `pid`, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        rest = stat[stat.rindex(")") + 2:].split()
        # fields 14-17 (utime stime cutime cstime) are rest[11:15]; 20 num_threads is rest[17]
        cpu_ticks = sum(int(x) for x in rest[11:15])
        threads = int(rest[17])
        rss_kb = int(rest[21]) * PAGE_KB
        pss_kb = None
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss_kb = int(line.split()[1])
                        break
        except OSError:
            pass
        hwm_kb = None
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm_kb = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        return None
    states = tcp_states(port)
    return {
        "t": round(time.time(), 3),
        "rss_kb": rss_kb,
        "pss_kb": pss_kb,
        "hwm_kb": hwm_kb,
        "fds": fds,
        "threads": threads,
        "cpu_s": round(cpu_ticks / CLK_TCK, 2),
        "established": states.get("established", 0),
        "tcp_states": {k: v for k, v in states.items() if k not in ("established", "listen")},
    }


def sample(args):
    pid, port, interval = int(args["pid"]), int(args["port"]), float(args["interval"])
    stop = args["stop"]
    with open(args["out"], "a") as out:
        next_at = time.monotonic()
        while True:
            s = read_sample(pid, port)
            if s is None:
                break
            out.write(json.dumps(s) + "\n")
            out.flush()
            if os.path.exists(stop):
                break
            next_at += interval
            delay = next_at - time.monotonic()
            # Stop promptly once asked, even in the middle of an interval.
            while delay > 0 and not os.path.exists(stop):
                time.sleep(min(delay, 0.25))
                delay = next_at - time.monotonic()


# ---------------------------------------------------------------- report


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def errors_total(errors):
    """tern-load's `errors` object: {"by_kind": {kind: count}, "samples": [...]}."""
    if not isinstance(errors, dict):
        return 0
    return sum(v for v in errors.get("by_kind", {}).values() if isinstance(v, int))


def run_problems(scenario, report):
    """What went wrong in one tern-load report (empty list: nothing)."""
    p = []
    if report is None:
        return ["no report (tern-load failed before writing one)"]
    errs = errors_total(report.get("errors"))
    if errs:
        p.append(f"{errs} errors {json.dumps(report.get('errors'))[:300]}")
    if scenario == "idle":
        c = report.get("connections", {})
        for key in ("failed", "dropped_during_hold", "not_closed_by_server"):
            if c.get(key, 0):
                p.append(f"{key} = {c[key]}")
    elif scenario == "logins":
        c = report.get("logins", {})
        for key in ("failed", "close_failures"):
            if c.get(key, 0):
                p.append(f"{key} = {c[key]}")
        if c.get("succeeded") != c.get("attempted"):
            p.append(f"{c.get('succeeded')} of {c.get('attempted')} logins succeeded")
    elif scenario == "messages":
        c = report.get("messages", {})
        for key in ("lost", "duplicates"):
            if c.get(key, 0):
                p.append(f"{key} = {c[key]}")
        if not c.get("all_delivered"):
            p.append(f"not all delivered: {c.get('delivered')} of {c.get('scheduled')}")
    elif scenario == "extdisco":
        c = report.get("requests", {})
        for key in ("errors", "bad_answers", "unanswered", "duplicates"):
            if c.get(key, 0):
                p.append(f"{key} = {c[key]}")
        if not c.get("all_answered_ok"):
            p.append(f"not all answered ok: {c.get('ok')} of {c.get('scheduled')}")
    for w in report.get("warnings", []):
        if "not closed by the server" in w or "unanswered" in w or "not every message" in w \
                or "still running" in w:
            p.append(f"warning: {w}")
    return p


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def scan_log(path):
    counts = {"session_bound": 0, "session_closed": 0, "authenticated": 0,
              "authentication_failed": 0, "warn": 0, "error": 0}
    samples = {"warn": [], "error": []}
    close_reasons = {}
    try:
        f = open(path, errors="replace")
    except OSError:
        return counts, samples, close_reasons
    with f:
        for raw in f:
            line = ANSI.sub("", raw.rstrip("\n"))
            head = line[:60]
            if " WARN " in head:
                counts["warn"] += 1
                if len(samples["warn"]) < 10:
                    samples["warn"].append(line[:400])
            elif " ERROR " in head:
                counts["error"] += 1
                if len(samples["error"]) < 10:
                    samples["error"].append(line[:400])
            if "session bound" in line:
                counts["session_bound"] += 1
            elif "session closed" in line:
                counts["session_closed"] += 1
                m = re.search(r'reason=("(?:[^"\\]|\\.)*"|\S+)', line)
                reason = m.group(1).strip('"') if m else "?"
                close_reasons[reason] = close_reasons.get(reason, 0) + 1
            elif "authentication failed" in line:
                counts["authentication_failed"] += 1
            elif "authenticated" in line:
                counts["authenticated"] += 1
    return counts, samples, close_reasons


def fmt_mb(kb):
    return "–" if kb is None else f"{kb / 1024:.1f} MiB"


def polyline(points, x0, x1, y0, y1, xmin, xmax, ymin, ymax):
    if xmax <= xmin:
        xmax = xmin + 1
    if ymax <= ymin:
        ymax = ymin + 1
    out = []
    for x, y in points:
        px = x0 + (x - xmin) / (xmax - xmin) * (x1 - x0)
        py = y1 - (y - ymin) / (ymax - ymin) * (y1 - y0)
        out.append(f"{px:.1f},{py:.1f}")
    return " ".join(out)


def nice_max(v):
    """A round top for an axis of four steps at or above `v`."""
    if v <= 0:
        return 4
    step = v / 4
    mag = 10 ** (len(str(int(step))) - 1) if step >= 1 else 10 ** -len(str(int(1 / step)))
    for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * mag >= step:
            return 4 * m * mag
    return v


def svg_plot(samples, events, title):
    """Three stacked panels sharing the time axis: RSS and PSS (MB), open fds, established
    connections; phases shaded from the events."""
    if not samples:
        return "<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>"
    t0 = samples[0]["t"]
    xs = [s["t"] - t0 for s in samples]
    xmax = max(xs[-1], 1)
    width, left, right = 900, 80, 20
    panel_h, gap, top = 170, 40, 50
    rss = [(x, s["rss_kb"] / 1024) for x, s in zip(xs, samples)]
    panels = [
        ("Memory (MiB)", [("RSS", "#d62728", rss),
                          ("PSS", "#ff9896", [(x, (s["pss_kb"] or 0) / 1024) for x, s in zip(xs, samples)])],
         None),
    ]
    if "churn_start" in events and "churn_end" in events:
        lo, hi = events["churn_start"] - t0, events["churn_end"] - t0
        zoom = [(x, y) for x, y in rss if lo <= x <= hi]
        if zoom:
            ys = [y for _, y in zoom]
            pad = max((max(ys) - min(ys)) * 0.2, 0.5)
            panels.append(("RSS during the churn window (MiB, zoomed)",
                           [("RSS", "#d62728", zoom)], (min(ys) - pad, max(ys) + pad)))
    panels += [
        ("Open file descriptors", [("fds", "#1f77b4", [(x, s["fds"]) for x, s in zip(xs, samples)])],
         None),
        ("Established connections (server side)",
         [("connections", "#2ca02c", [(x, s["established"]) for x, s in zip(xs, samples)])], None),
    ]
    height = top + len(panels) * (panel_h + gap) + 20
    o = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
         f"font-family='sans-serif' font-size='11'>",
         f"<rect width='100%' height='100%' fill='white'/>",
         f"<text x='{left}' y='22' font-size='14' font-weight='bold'>{title}</text>"]
    shades = [("churn_start", "churn_end", "#fff3cd", "churn"),
              ("ramp_start", "ramp_done", "#e8f4fd", "ramp")]
    # Later ramps (SOAK_RAMPS): the ramp shaded like the first, the hold like the churn
    # (drawn first, so that it does not cover the ramp's label).
    for k in range(2, ramp_count(events) + 1):
        shades += [(f"ramp{k}_done", f"ramp{k}_hold_end", "#fff3cd", "held"),
                   (f"ramp{k}_start", f"ramp{k}_done", "#e8f4fd", f"ramp {k}")]
    x0, x1 = left, width - right
    for i, (label, series, yrange) in enumerate(panels):
        py0 = top + i * (panel_h + gap)
        py1 = py0 + panel_h
        if yrange:
            ymin, ymax = yrange
        else:
            ymin = 0
            ymax = nice_max(1.05 * max((y for _, _, pts in series for _, y in pts), default=1))
        for a, b, colour, name in shades:
            if a in events and b in events:
                sx = x0 + (events[a] - t0) / xmax * (x1 - x0)
                ex = x0 + (events[b] - t0) / xmax * (x1 - x0)
                o.append(f"<rect x='{sx:.1f}' y='{py0}' width='{max(ex - sx, 0):.1f}' "
                         f"height='{panel_h}' fill='{colour}'/>")
                if i == 0:
                    o.append(f"<text x='{sx + 3:.1f}' y='{py1 - 6 if name.startswith('ramp') else py1 - 20}' "
                             f"fill='#888'>{name}</text>")
        o.append(f"<rect x='{x0}' y='{py0}' width='{x1 - x0}' height='{panel_h}' fill='none' stroke='#999'/>")
        o.append(f"<text x='{x0}' y='{py0 - 6}' font-weight='bold'>{label}</text>")
        for k in range(5):
            yv = ymin + (ymax - ymin) * k / 4
            yy = py1 - k / 4 * panel_h
            o.append(f"<line x1='{x0}' x2='{x1}' y1='{yy:.1f}' y2='{yy:.1f}' stroke='#eee'/>")
            txt = f"{yv:.0f}" if ymax - ymin >= 40 else f"{yv:.1f}" if ymax - ymin >= 4 else f"{yv:.2f}"
            o.append(f"<text x='{x0 - 5}' y='{yy + 4:.1f}' text-anchor='end'>{txt}</text>")
        for k in range(7):
            xv = xmax * k / 6
            xx = x0 + k / 6 * (x1 - x0)
            o.append(f"<text x='{xx:.1f}' y='{py1 + 14}' text-anchor='middle'>{xv:.0f} s</text>")
        lx = x1
        for name, colour, pts in series:
            o.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='"
                     + polyline(pts, x0, x1, py0, py1, 0, xmax, ymin, ymax) + "'/>")
            o.append(f"<text x='{lx}' y='{py0 - 6}' text-anchor='end' fill='{colour}' "
                     f"font-weight='bold'>{name}</text>")
            lx -= 50
    o.append("</svg>")
    return "\n".join(o)


def ramp_count(events):
    """Ramps in a run: the first (ramp_start) and every later one (ramp2_start, ...)."""
    k = 1
    while f"ramp{k + 1}_start" in events:
        k += 1
    return k


def ramp_of(run_name):
    """Which ramp an idle run belongs to: idle-G is the first, idle-rKgG ramp K."""
    m = re.fullmatch(r"idle-r(\d+)g\d+", run_name)
    return int(m.group(1)) if m else 1


def median(v):
    v = sorted(v)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def report(_args):
    env = os.environ
    work, out = env["WORK"], env["OUT"]
    os.makedirs(out, exist_ok=True)
    samples = []
    with open(os.path.join(work, "samples.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    samples.append(json.loads(line))
                except ValueError:
                    pass
    events = {}
    with open(os.path.join(work, "events.tsv")) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                events.setdefault(parts[1], float(parts[0]))
    settings = json.loads(env["SOAK_SETTINGS"])

    # Every tern-load run: reports/<scenario>-<n>.json, exit status in <...>.rc
    runs = []
    for path in sorted(glob.glob(os.path.join(work, "reports", "*.rc"))):
        base = path[:-3]
        name = os.path.basename(base)
        scenario = name.rsplit("-", 1)[0]
        with open(path) as f:
            rc = int(f.read().strip() or "-1")
        rep = load_json(base + ".json")
        problems = run_problems(scenario, rep)
        if rc != 0:
            err = ""
            try:
                with open(base + ".err") as f:
                    err = f.read().strip().splitlines()[-1:]
                    err = err[0] if err else ""
            except OSError:
                pass
            problems.insert(0, f"exit status {rc}: {err}"[:400])
        runs.append({"run": name, "scenario": scenario, "exit_status": rc,
                     "problems": problems, "report": rep})

    totals = {"idle_connected": 0, "idle_requested": 0, "logins": 0, "logins_attempted": 0,
              "messages_sent": 0, "messages_delivered": 0, "messages_lost": 0,
              "extdisco_ok": 0, "extdisco_scheduled": 0, "setup_logins": 0,
              "runs": {}}
    for r in runs:
        rep, sc = r["report"] or {}, r["scenario"]
        totals["runs"][sc] = totals["runs"].get(sc, 0) + 1
        if sc == "idle" and ramp_of(r["run"]) == 1:  # later ramps: figures["ramps"]
            totals["idle_connected"] += rep.get("connections", {}).get("connected", 0)
            totals["idle_requested"] += rep.get("connections", {}).get("requested", 0)
        elif sc == "logins":
            totals["logins"] += rep.get("logins", {}).get("succeeded", 0)
            totals["logins_attempted"] += rep.get("logins", {}).get("attempted", 0)
        elif sc == "messages":
            m = rep.get("messages", {})
            totals["messages_sent"] += m.get("sent", 0)
            totals["messages_delivered"] += m.get("delivered", 0)
            totals["messages_lost"] += m.get("lost", 0)
            totals["setup_logins"] += 2 * rep.get("params", {}).get("pairs", 0)
        elif sc == "extdisco":
            q = rep.get("requests", {})
            totals["extdisco_ok"] += q.get("ok", 0)
            totals["extdisco_scheduled"] += q.get("scheduled", 0)
            totals["setup_logins"] += rep.get("params", {}).get("clients", 0)

    log_counts, log_samples, close_reasons = scan_log(os.path.join(work, "tern.log"))

    def at(name):
        """The first sample at or after event `name`."""
        t = events.get(name)
        if t is None:
            return None
        for s in samples:
            if s["t"] >= t:
                return s
        return None

    def before(name):
        """The last sample at or before event `name`."""
        t = events.get(name)
        if t is None:
            return None
        last = None
        for s in samples:
            if s["t"] <= t:
                last = s
        return last

    baseline = before("ramp_start") or (samples[0] if samples else None)
    held = before("churn_start")  # the idle connections alone (soak.sh waits for a sample)
    if held and events.get("ramp_done") and held["t"] < events["ramp_done"]:
        held = None
    churn_end = before("churn_end")
    final = samples[-1] if samples else None
    churn = [s for s in samples
             if events.get("churn_start", 1e18) <= s["t"] <= events.get("churn_end", -1)]
    peak_rss = max((s["rss_kb"] for s in samples), default=None)
    peak_fds = max((s["fds"] for s in samples), default=None)
    peak_conns = max((s["established"] for s in samples), default=None)
    # Memory drift during churn: median RSS of the first and last fifth of the second half
    # of the window (the first half includes warm-up: buffers, caches, allocator arenas).
    drift = None
    if len(churn) >= 10:
        half = churn[len(churn) // 2:]
        k = max(1, len(half) // 5)
        a, b = median([s["rss_kb"] for s in half[:k]]), median([s["rss_kb"] for s in half[-k:]])
        drift = {"from_kb": a, "to_kb": b, "pct": round((b - a) / a * 100, 2) if a else None,
                 "from_t": round(half[0]["t"] - events["churn_start"], 1),
                 "to_t": round(half[-1]["t"] - events["churn_start"], 1)}
    # Held connections during the churn window as scheduled (a run may overrun it while the
    # idle connections close): never fewer than the idle connections.
    scheduled_end = events.get("churn_start", 0) + float(settings["seconds"])
    min_held = min((s["established"] for s in churn if s["t"] <= scheduled_end), default=None)

    checks = []

    def check(name, ok, detail):
        checks.append({"check": name, "ok": bool(ok), "detail": detail})

    bad_runs = [r for r in runs if r["problems"]]
    check("every tern-load run clean (exit 0, 0 failed, 0 lost, 0 errors)", not bad_runs and runs,
          f"{len(runs)} runs, {len(bad_runs)} with problems" +
          "".join(f"; {r['run']}: {' | '.join(r['problems'])}" for r in bad_runs[:10]))
    want_idle = int(settings["connections"])
    check(f"{want_idle} idle connections held", totals["idle_connected"] == want_idle,
          f"{totals['idle_connected']} of {want_idle} connected")
    check("idle connections held through the churn window",
          min_held is not None and min_held >= want_idle,
          f"fewest established connections on the server port during churn: {min_held}")
    fd_slack = int(settings["fd_slack"])
    fds_ok = baseline is not None and final is not None and final["fds"] <= baseline["fds"] + fd_slack
    check(f"open fds back to the baseline (± {fd_slack})", fds_ok,
          f"before load {baseline and baseline['fds']}, after {final and final['fds']}")
    leftover = final["established"] if final else None
    other_states = final["tcp_states"] if final else {}
    check("no connections left on the server port", final is not None and leftover == 0
          and not other_states.get("close_wait"),
          f"established {leftover}, other states {other_states}")
    sessions_left = log_counts["session_bound"] - log_counts["session_closed"]
    check("no sessions left (log: 'session bound' minus 'session closed')", sessions_left == 0,
          f"{log_counts['session_bound']} bound, {log_counts['session_closed']} closed")
    check("no ERROR lines in the server log", log_counts["error"] == 0,
          f"{log_counts['error']} ERROR, {log_counts['warn']} WARN")
    check("no failed authentication in the server log", log_counts["authentication_failed"] == 0,
          f"{log_counts['authentication_failed']}")
    max_drift = float(settings["rss_drift_max_pct"])
    check(f"RSS flat in the second half of the churn window (drift ≤ {max_drift:g} %)",
          drift is None or (drift["pct"] is not None and drift["pct"] <= max_drift),
          f"not measured: {len(churn)} samples in the churn window (10 needed)" if drift is None else
          f"{fmt_mb(drift['from_kb'])} at +{drift['from_t']} s → {fmt_mb(drift['to_kb'])} at "
          f"+{drift['to_t']} s ({drift['pct']:+.2f} %)")
    check("the server is still running at the end", settings.get("tern_alive_at_end") == "1",
          "")

    # Ramps (SOAK_RAMPS): ramp 1 is the soak's own (from ramp_start until `settled`, so its
    # peak includes the churn); ramp K from rampK_start until rampK_settled. Held: the last
    # sample with the ramp's connections up and no churn (ramp 1: before churn_start).
    n_ramps = ramp_count(events)
    ramps = []
    for k in range(1, n_ramps + 1):
        p = "ramp" if k == 1 else f"ramp{k}"
        start = events.get(f"{p}_start")
        end_name = "settled" if k == 1 else f"{p}_settled"
        end = events.get(end_name)
        window = [s for s in samples if start is not None and end is not None
                  and start <= s["t"] <= end]
        # The first sample after it settled, taken before the next ramp started (soak.sh
        # waits for one).
        after = at(end_name)
        if after is not None and after["t"] >= events.get(f"ramp{k + 1}_start", 1e18):
            after = None
        if after is not None:
            window.append(after)
        if k == 1:
            held_k = held
            hold = [s for s in churn if s["t"] <= scheduled_end]
        else:
            held_k = before(f"{p}_hold_end")
            if held_k and held_k["t"] < events.get(f"{p}_done", 1e18):
                held_k = None
            hold = [s for s in samples
                    if events.get(f"{p}_done", 1e18) <= s["t"] <= events.get(f"{p}_hold_end", -1)]
        idle = [r for r in runs if r["scenario"] == "idle" and ramp_of(r["run"]) == k]
        ramps.append({
            "ramp": k,
            "connected": sum((r["report"] or {}).get("connections", {}).get("connected", 0)
                             for r in idle),
            "requested": sum((r["report"] or {}).get("connections", {}).get("requested", 0)
                             for r in idle),
            "min_established_while_held": min((s["established"] for s in hold), default=None),
            "held": held_k,
            "held_rss_kb": held_k["rss_kb"] if held_k else None,
            "peak_rss_kb": max((s["rss_kb"] for s in window), default=None),
            "settled": after,
            "settled_rss_kb": after["rss_kb"] if after else None,
            "window": [round(start - samples[0]["t"], 1) if start and samples else None,
                       round(end - samples[0]["t"], 1) if end and samples else None],
        })
    if n_ramps > 1:
        later = ramps[1:]
        bad = [r for r in later if r["connected"] != want_idle
               or r["min_established_while_held"] is None
               or r["min_established_while_held"] < want_idle]
        check(f"{want_idle} idle connections held in ramps 2–{n_ramps}", not bad,
              "; ".join(f"ramp {r['ramp']}: {r['connected']} of {want_idle} connected, fewest "
                        f"established while held {r['min_established_while_held']}"
                        for r in later))
        first_peak = ramps[0]["peak_rss_kb"]
        limit = first_peak * 1.05 if first_peak else None
        check("memory reused (RSS peak of each later ramp ≤ the first ramp's peak × 1.05)",
              limit is not None and all(r["peak_rss_kb"] is not None
                                        and r["peak_rss_kb"] <= limit for r in later),
              f"first ramp (with the churn) {fmt_mb(first_peak)}, limit {fmt_mb(limit)}; "
              + ", ".join(f"ramp {r['ramp']} {fmt_mb(r['peak_rss_kb'])}" for r in later))
        last = ramps[-1]["settled_rss_kb"]
        enforced = want_idle >= 1000
        returned = first_peak is not None and last is not None and last <= first_peak * 0.5
        check("memory returned (RSS after the last ramp settled ≤ 50 % of the first ramp's peak)",
              returned or not enforced,
              f"{fmt_mb(last)} after ramp {n_ramps} settled, "
              f"{round(last / first_peak * 100, 1) if last and first_peak else '–'} % of "
              f"{fmt_mb(first_peak)}" + ("" if enforced else
                                          f" ({'met' if returned else 'not met'}; "
                                          f"not enforced below 1000 connections)"))

    figures = {
        "baseline": baseline, "held_at_churn_start": held, "churn_end": churn_end, "final": final,
        "peak_rss_kb": peak_rss, "peak_fds": peak_fds, "peak_established": peak_conns,
        "rss_drift_second_half_of_churn": drift, "min_established_during_churn": min_held,
        "churn_window_s": round(events["churn_end"] - events["churn_start"], 1)
        if "churn_end" in events and "churn_start" in events else None,
        "server_cpu_s_total": round(final["cpu_s"] - samples[0]["cpu_s"], 1) if samples else None,
        "server_cpu_cores_during_churn": round((churn_end["cpu_s"] - held["cpu_s"])
                                               / max(churn_end["t"] - held["t"], 1e-9), 3)
        if held and churn_end and churn_end["t"] > held["t"] else None,
        "rss_kb_per_held_connection": round((held["rss_kb"] - baseline["rss_kb"])
                                            / max(held["established"], 1), 1)
        if held and baseline else None,
        "ramps": ramps,
    }
    result = {
        "command": env.get("SOAK_COMMAND"),
        "settings": settings,
        "commit": env.get("SOAK_COMMIT"),
        "events": {k: round(v, 3) for k, v in events.items()},
        "figures": figures,
        "totals": totals,
        "server_log": {"counts": log_counts, "samples": log_samples,
                       "close_reasons": close_reasons},
        "checks": checks,
        "ok": all(c["ok"] for c in checks),
        "runs": runs,
        "samples": samples,
    }
    with open(os.path.join(out, "soak.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    title = (f"Tern soak: {want_idle} held connections + churn, "
             f"{settings['seconds']} s ({env.get('SOAK_STAMP', '')})")
    with open(os.path.join(out, "soak.svg"), "w") as f:
        f.write(svg_plot(samples, events, title) + "\n")

    def rel(name):
        return f"+{events[name] - samples[0]['t']:.0f} s" if name in events and samples else "–"

    md = [f"# Soak test ({env.get('SOAK_STAMP', '')})", "",
          f"Result: **{'PASS' if result['ok'] else 'FAIL'}**", "",
          "```sh", env.get("SOAK_COMMAND", ""), "```", "",
          f"Commit `{env.get('SOAK_COMMIT', '?')}`; {settings['machine']}.", "",
          "## Load", "",
          f"- **Held**: {totals['idle_connected']} of {totals['idle_requested']} idle connections "
          f"(STARTTLS, SCRAM-SHA-1, bind, presence; answering the server's pings), logged in at "
          f"{settings['ramp_rate']}/s, held for the whole churn window and closed together at the end.",
          f"- **Churn** for {figures['churn_window_s']} s, each scenario in a loop of "
          f"{settings['iteration_s']} s runs on its own accounts:",
          f"  - logins: {totals['logins']} of {totals['logins_attempted']} full logins + logouts "
          f"({settings['login_rate']}/s over {settings['login_users']} accounts, "
          f"runs: {totals['runs'].get('logins', 0)});",
          f"  - messages: {totals['messages_delivered']} of {totals['messages_sent']} sent delivered, "
          f"{totals['messages_lost']} lost ({settings['pairs']} pairs, {settings['msg_rate']}/s, "
          f"runs: {totals['runs'].get('messages', 0)});",
          f"  - XEP-0215: {totals['extdisco_ok']} of {totals['extdisco_scheduled']} requests answered "
          f"correctly ({settings['ext_clients']} clients, {settings['ext_rate']}/s, services and "
          f"credentials alternating, runs: {totals['runs'].get('extdisco', 0)});",
          f"  - plus {totals['setup_logins']} set-up logins and logouts of the message and XEP-0215 runs.",
          f"- Accounts: {settings['accounts']} ({settings['accounts_note']}).",
          ]
    if n_ramps > 1:
        md += [f"- **Ramps 2–{n_ramps}** after the load settled: the same {want_idle} idle "
               f"accounts logged in again by the same generators at {settings['ramp_rate']}/s, "
               f"held {settings.get('ramp_hold_s')} s once all were up, closed together, "
               f"{settings['settle_s']} s to settle."]
    md += ["", "## Server figures", "",
          "| when | RSS | PSS | fds | threads | established |", "|---|---|---|---|---|---|"]
    rows = [("before load (fresh server)", baseline),
            ("idle connections held, before churn", held),
            ("end of churn", churn_end),
            ("after the load, settled", final if n_ramps == 1 else ramps[0]["settled"])]
    if n_ramps > 1:
        rows.append((f"after ramp {n_ramps}, settled (last sample)", final))
    for label, s in rows:
        if s:
            md.append(f"| {label} | {fmt_mb(s['rss_kb'])} | {fmt_mb(s['pss_kb'])} | {s['fds']} | "
                      f"{s['threads']} | {s['established']} |")
    if n_ramps > 1:
        md += ["", "Ramps (peak: from the ramp's start until it settled, ramp 1 with the churn; "
               "held: the last sample with its connections up and no churn, ramp 1 before the "
               "churn):", "",
               "| ramp | connections held | RSS held | RSS peak | RSS after close + settle |",
               "|---|---|---|---|---|"]
        for r in ramps:
            md.append(f"| {r['ramp']} | {r['connected']} | {fmt_mb(r['held_rss_kb'])} | "
                      f"{fmt_mb(r['peak_rss_kb'])} | {fmt_mb(r['settled_rss_kb'])} |")
    md += ["", f"Peak RSS {fmt_mb(peak_rss)}, peak fds {peak_fds}, peak established connections "
           f"{peak_conns}; RSS per idle connection (before churn, over the fresh server) "
           f"{figures['rss_kb_per_held_connection']} KB; server CPU "
           f"{figures['server_cpu_s_total']} s in all, {figures['server_cpu_cores_during_churn']} "
           f"cores on average during churn. "
           f"Server log: {log_counts['session_bound']} sessions bound, "
           f"{log_counts['session_closed']} closed, {log_counts['warn']} WARN, "
           f"{log_counts['error']} ERROR lines.",
           "", f"Timeline (from the first sample): ramp {rel('ramp_start')} → {rel('ramp_done')}, "
           f"churn {rel('churn_start')} → {rel('churn_end')}, load over {rel('load_end')}, "
           + (f"last sample {rel('settled')}." if n_ramps == 1 else
              f"settled {rel('settled')}; " + "; ".join(
                  f"ramp {k} {rel(f'ramp{k}_start')} → {rel(f'ramp{k}_done')}, closed "
                  f"{rel(f'ramp{k}_hold_end')} → {rel(f'ramp{k}_closed')}, settled "
                  f"{rel(f'ramp{k}_settled')}" for k in range(2, n_ramps + 1)) + "."),
           "", "![RSS, fds and connections over time](soak.svg)", "", "## Checks", "",
           "| check | result | detail |", "|---|---|---|"]
    for c in checks:
        md.append(f"| {c['check']} | {'ok' if c['ok'] else '**FAILED**'} | "
                  f"{c['detail'].replace('|', '/')} |")
    if log_samples["warn"] or log_samples["error"]:
        md += ["", "Server log WARN/ERROR lines (first ten of each):", "", "```"]
        md += log_samples["error"] + log_samples["warn"]
        md += ["```"]
    md += ["", f"Samples every {settings['interval_s']} s from /proc of the tern process (RSS, PSS "
           "from smaps_rollup, fds, threads, CPU) and /proc/net/tcp (connections whose local "
           "port is the server's) are in `soak.json` (`samples`), with every tern-load report "
           "(`runs`)."]
    with open(os.path.join(out, "soak.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md[:2]), file=sys.stderr)
    for c in checks:
        print(f"  [{'ok' if c['ok'] else 'FAILED'}] {c['check']}: {c['detail']}", file=sys.stderr)
    return 0 if result["ok"] else 1


def parse(argv):
    args = {}
    i = 0
    while i < len(argv):
        if not argv[i].startswith("--") or i + 1 >= len(argv):
            sys.exit(f"bad argument {argv[i]}")
        args[argv[i][2:]] = argv[i + 1]
        i += 2
    return args


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, args = sys.argv[1], parse(sys.argv[2:])
    if command == "adduser":
        adduser(args)
    elif command == "conns":
        conns(args)
    elif command == "sample":
        sample(args)
    elif command == "report":
        return report(args)
    elif command == "svg":
        with open(args["json"]) as f:
            data = json.load(f)
        st = data["settings"]
        title = (f"Tern soak: {st['connections']} held connections + churn, {st['seconds']} s "
                 f"({args.get('stamp', '')})")
        with open(args["out"], "w") as f:
            f.write(svg_plot(data["samples"], data["events"], title) + "\n")
    else:
        sys.exit(f"unknown command {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
