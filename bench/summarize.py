#!/usr/bin/env python3
"""Collects the tern-load reports of one bench/run.sh run into results/tern-<time>.json and
writes results/latest.md. Called by run.sh (it passes everything through the environment).
Exit status 1 if a scenario is missing or lost anything."""

import json
import os
import platform
import subprocess
import sys

env = os.environ
work, out, stamp = env["WORK"], env["OUT"], env["STAMP"]
root = env["ROOT"]
SCENARIOS = ["idle", "logins", "messages", "extdisco"]


def git(*args):
    try:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def rustc_version():
    try:
        return subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None


commands = {}
with open(os.path.join(work, "commands.txt")) as f:
    for line in f:
        name, cmd = line.rstrip("\n").split("\t", 1)
        commands[name] = cmd

reports = {}
failures = []
for name in SCENARIOS:
    path = os.path.join(work, f"{name}.json")
    if os.path.exists(path):
        with open(path) as f:
            reports[name] = json.load(f)
    else:
        err = ""
        try:
            with open(os.path.join(work, f"{name}.err")) as f:
                err = f.read().strip()[-2000:]
        except OSError:
            pass
        reports[name] = {"scenario": name, "error": err or "no report"}
        failures.append(f"{name}: tern-load failed: {err.splitlines()[-1] if err else 'no report'}")

with open(os.path.join(work, "tern.toml")) as f:
    config = f.read()

dirty = git("status", "--porcelain", "--untracked-files=no")
meta = {
    "server": "tern",
    "date": stamp,
    "command": env["COMMAND"],
    "smoke": env["SMOKE"] == "1",
    "profile": env["PROFILE"],
    "commit": git("rev-parse", "HEAD"),
    "worktree_dirty": bool(dirty),
    "rustc": rustc_version(),
    "kernel": platform.release(),
    "cpu": cpu_model(),
    "cpus": int(env["CPUS"]),
    "pinning": env["PINNING"],
    "ulimit_n": env["NOFILE"],
    "busy_at_start": env["BUSY_AT_START"] == "true",
    "loadavg_at_start": env["LOADAVG_START"],
    "server_rust_log": env["RUST_LOG_SERVER"],
    "accounts": int(env["USERS"]),
    "adduser_s": float(env["ADDUSER_S"]),
    "scenarios_wall_s": float(env["BENCH_S"]),
    "tern_load_commands": commands,
    "server_config": config,
}


def get(obj, *path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


# What must hold for the run to count as clean.
idle = reports["idle"]
if "error" not in idle and get(idle, "connections", "failed"):
    failures.append(f"idle: {get(idle, 'connections', 'failed')} logins failed")
if "error" not in idle and get(idle, "connections", "dropped_during_hold"):
    failures.append(f"idle: {get(idle, 'connections', 'dropped_during_hold')} connections dropped")
logins = reports["logins"]
if "error" not in logins and get(logins, "logins", "failed"):
    failures.append(f"logins: {get(logins, 'logins', 'failed')} failed")
messages = reports["messages"]
if "error" not in messages and not get(messages, "messages", "all_delivered"):
    m = messages["messages"]
    failures.append(f"messages: {m['delivered']} delivered of {m['sent']} sent ({m['scheduled']} scheduled)")
extdisco = reports["extdisco"]
if "error" not in extdisco and not get(extdisco, "requests", "all_answered_ok"):
    r = extdisco["requests"]
    failures.append(f"extdisco: {r['ok']} answered ok of {r['scheduled']}")
bound = [n for n in SCENARIOS if get(reports[n], "generator_bound")]
noisy = [n for n in SCENARIOS if (get(reports[n], "other_cpu_cores") or 0) > 0.15]
meta["noisy_scenarios"] = noisy
meta["checks_failed"] = failures
meta["generator_bound_scenarios"] = bound

result = {"meta": meta, "scenarios": reports}
os.makedirs(out, exist_ok=True)
json_path = os.path.join(out, f"tern-{stamp}.json")
with open(json_path, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")


def fmt(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def lat(report, key="latency"):
    h = report.get(key) or {}
    if not h.get("count"):
        return "–"
    return " / ".join(fmt(h.get(k), 2) for k in ("p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms"))


def throughput(name, r):
    if name == "idle":
        c = r.get("connections", {})
        return f"{c.get('connected')} held"
    if name == "logins":
        return f"{fmt(get(r, 'logins', 'achieved_per_s'))}/s"
    if name == "messages":
        return f"{fmt(get(r, 'messages', 'sent_per_s'))}/s"
    return f"{fmt(get(r, 'requests', 'sent_per_s'))}/s"


def outcome(name, r):
    if name == "idle":
        c = r["connections"]
        return f"{c['connected']}/{c['requested']} connected, {c['dropped_during_hold']} dropped"
    if name == "logins":
        l = r["logins"]
        return f"{l['succeeded']}/{l['attempted']} ok, {l['failed']} failed"
    if name == "messages":
        m = r["messages"]
        return f"{m['delivered']}/{m['sent']} delivered, {m['duplicates']} dup"
    q = r["requests"]
    return f"{q['ok']}/{q['scheduled']} ok, {q['errors']} errors"


shown_path = os.path.relpath(json_path, root)
if shown_path.startswith(".."):
    shown_path = json_path
OP = {"idle": "login (ramp)", "logins": "login", "messages": "message", "extdisco": "request"}
lines = [
    f"# Tern benchmark {stamp}{' (smoke)' if meta['smoke'] else ''}",
    "",
    f"Command: `{meta['command']}` (commit {(meta['commit'] or '?')[:12]}"
    f"{', dirty work tree' if meta['worktree_dirty'] else ''}, {meta['profile']} build).",
    f"Machine: {meta['cpu']}, {meta['cpus']} CPUs, kernel {meta['kernel']}; {meta['pinning']}; "
    f"ulimit -n {meta['ulimit_n']}; load average at start {meta['loadavg_at_start']}"
    f"{'; OTHER BUILDS WERE RUNNING' if meta['busy_at_start'] else ''}.",
    f"Server: tern, sled storage, STARTTLS + SCRAM-SHA-1, RUST_LOG={meta['server_rust_log']}, "
    f"{meta['accounts']} accounts. Full JSON: `{shown_path}`.",
    "",
    "| scenario | op | throughput | server CPU µs/op | server cores | latency ms p50 / p90 / p99 / p99.9 / max | outcome | generator cores | other CPU cores |",
    "|---|---|---|---|---|---|---|---|---|",
]
for name in SCENARIOS:
    r = reports[name]
    if "error" in r:
        lines.append(f"| {name} | – | – | – | – | – | FAILED: {r['error'].splitlines()[-1] if r['error'] else ''} | – | – |")
        continue
    latency_key = "login_latency" if name == "idle" else "latency"
    gen = f"{fmt(get(r, 'generator', 'cpu_cores'), 2)}{' **generator-bound**' if r.get('generator_bound') else ''}"
    lines.append(
        f"| {name} | {OP[name]} | {throughput(name, r)} | {fmt(get(r, 'server', 'cpu_us_per_op'))} | "
        f"{fmt(get(r, 'server', 'cpu_cores'), 3)} | {lat(r, latency_key)} | {outcome(name, r)} | {gen} | {fmt(r.get('other_cpu_cores'), 2)} |"
    )
lines.append("")
if "error" not in idle and idle.get("memory"):
    mem = idle["memory"]
    hold = idle.get("hold", {})
    lines.append(
        f"Idle, {idle['connections']['connected']} connections: RSS {mem['rss_kb_before']} → {mem['rss_kb_after']} kB "
        f"({fmt(mem['rss_kb_per_connection'])} kB per connection), PSS {mem['pss_kb_before']} → {mem['pss_kb_after']} kB "
        f"({fmt(mem['pss_kb_per_connection'])} kB per connection); while held, server CPU "
        f"{fmt(hold.get('server_cpu_cores'), 4)} cores."
    )
for name in ("logins", "messages", "extdisco"):
    r = reports[name]
    if "error" not in r and r.get("latency_from_dispatch", {}).get("count"):
        lines.append(
            f"{name}: latency from the moment the generator sent (not the due time) "
            f"p50 / p99 / max {lat(r, 'latency_from_dispatch').split(' / ')[0]} / "
            f"{lat(r, 'latency_from_dispatch').split(' / ')[2]} / {lat(r, 'latency_from_dispatch').split(' / ')[4]} ms."
        )
lines.append("")
lines.append(
    "Latency is measured from each operation's due time in the open-loop schedule (so "
    "queueing in the server or the generator counts; the generator dispatches 0.1–0.2 ms late, "
    "see `schedule_lag`). "
    "Server CPU is utime+stime of the tern process from /proc over the measured window "
    "divided by the operations completed; `idle` divides the login ramp by the logins. "
    "\"other CPU\" is what the rest of the machine used meanwhile (noise if well above 0)."
)
if failures:
    lines += ["", "**Checks failed:**", ""] + [f"- {f}" for f in failures]
if noisy:
    lines += ["", f"**Noisy** (other processes used more than 0.15 cores meanwhile): {', '.join(noisy)}; "
              "run again on a quiet machine before comparing those figures."]
if bound:
    lines += ["", f"**Generator-bound** (tern-load above 80% of its core): {', '.join(bound)}; "
              "those figures may describe the generator rather than the server."]
lines += ["", "tern-load commands:", "", "```"] + [commands[n] for n in SCENARIOS if n in commands] + ["```", ""]
md_path = os.path.join(out, "latest.md")
with open(md_path, "w") as f:
    f.write("\n".join(lines))

print("\n".join(lines))
print(f"wrote {json_path} and {md_path}", file=sys.stderr)
sys.exit(1 if failures else 0)
