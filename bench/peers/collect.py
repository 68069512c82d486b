#!/usr/bin/env python3
"""Gathers one bench/compare.sh run into OUT: run.json (machine, commit, command, sizes)
and one SERVER.json per server (its version, rendered config, the exact tern-load commands
and every report by name), and floor.json (the runs of bench/floor, when made). Called by compare.sh, which passes everything through the
environment. report.py reads only these files."""

import glob
import json
import os
import platform
import subprocess

env = os.environ
work, out, root = env["WORK"], env["OUT"], env["ROOT"]
CONFIGS = {
    "tern": ["tern.toml"],
    "prosody": ["prosody.cfg.lua"],
    "ejabberd": ["ejabberd.yml", "ejabberdctl.cfg"],
}


def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def version(server):
    if server == "tern":
        return "tern " + (run("git", "-C", root, "describe", "--always", "--dirty") or "?")
    if server == "prosody":
        about = run("prosodyctl", "about") or ""
        return about.splitlines()[0] if about else None
    if server == "ejabberd":
        return "ejabberd " + (run("dpkg-query", "-W", "-f=${Version}", "ejabberd") or "?")
    return None


def code_layout(binary):
    """How many of build/code-layout.txt's functions the tern binary has: a stale list
    (after a toolchain or Cargo.lock update) silently gives up the idle-RSS saving."""
    listed = os.path.join(root, "build", "code-layout.txt")
    symbols = run("nm", binary) if binary else None
    if not symbols or not os.path.exists(listed):
        return None
    with open(listed) as f:
        wanted = {line.strip() for line in f if line.strip()}
    present = {fields[2] for fields in (l.split() for l in symbols.splitlines()) if len(fields) == 3}
    return {"listed": len(wanted), "found": len(wanted & present)}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


os.makedirs(out, exist_ok=True)
servers = env["SERVERS"].split(",")
meta = {
    "command": env["COMMAND"],
    "smoke": env["SMOKE"] == "1",
    "repetitions": int(env["REPS"]),
    "levels": [int(x) for x in env["LEVELS_LIST"].split()],
    "servers": servers,
    "accounts": int(env["USERS"]),
    "scenario_accounts": int(env["SCENARIO_USERS"]),
    "roster_contacts": int(env["CONTACTS"]),
    "commit": run("git", "-C", root, "rev-parse", "HEAD"),
    "worktree_dirty": bool(run("git", "-C", root, "status", "--porcelain", "--untracked-files=no")),
    "rustc": run("rustc", "--version"),
    "kernel": platform.release(),
    "cpu": cpu_model(),
    "cpus": os.cpu_count(),
    "pinning": env["PINNING"],
    "ulimit_n": env["NOFILE"],
    "ip_local_port_range": (open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
                            if os.path.exists("/proc/sys/net/ipv4/ip_local_port_range") else None),
    "busy_at_start": env["BUSY_AT_START"] == "true",
    "loadavg_at_start": env["LOADAVG_START"],
    "wall_s": int(env["BENCH_S"]),
    "incomplete": env.get("INCOMPLETE") == "1",
    # Repetitions take the servers in turn (rotated order) rather than one server's
    # repetitions after the other's (runs before 2026-11-26T07).
    "interleaved": True,
    "tern_code_layout": code_layout(env.get("TERN")) if "tern" in servers else None,
}
with open(os.path.join(out, "run.json"), "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)
    f.write("\n")

for server in servers:
    d = os.path.join(work, server)
    if not os.path.isdir(d):
        continue
    reports = {}
    for path in sorted(glob.glob(os.path.join(d, "reports", "*.json"))):
        name = os.path.basename(path)[: -len(".json")]
        with open(path) as f:
            try:
                reports[name] = json.load(f)
            except json.JSONDecodeError as err:
                reports[name] = {"error": f"unreadable report: {err}"}
    failed = {}
    for path in sorted(glob.glob(os.path.join(d, "reports", "*.err"))):
        name = os.path.basename(path)[: -len(".err")]
        if name not in reports:
            with open(path, errors="replace") as f:
                failed[name] = f.read()[-2000:]
    commands = {}
    if os.path.exists(os.path.join(d, "commands.tsv")):
        with open(os.path.join(d, "commands.tsv")) as f:
            for line in f:
                name, _, cmd = line.rstrip("\n").partition("\t")
                commands[name] = cmd
    configs = {}
    for name in CONFIGS.get(server, []):
        try:
            with open(os.path.join(d, name)) as f:
                configs[name] = f.read()
        except OSError:
            pass
    prepare_s = None
    try:
        with open(os.path.join(d, "prepare_s")) as f:
            prepare_s = int(f.read().strip())
    except (OSError, ValueError):
        pass
    doc = {
        "server": server,
        "version": version(server),
        "prepare_s": prepare_s,
        "configs": configs,
        "commands": commands,
        "failed_runs": failed,
        "reports": reports,
    }
    with open(os.path.join(out, f"{server}.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")

# The floor (bench/floor tls-*): one JSON line per run, by name.
floor_dir = os.path.join(work, "floor")
if os.path.isdir(floor_dir):
    runs = {}
    for path in sorted(glob.glob(os.path.join(floor_dir, "*.json"))):
        name = os.path.basename(path)[: -len(".json")]
        with open(path) as f:
            try:
                runs[name] = json.loads(f.read().strip().splitlines()[-1])
            except (json.JSONDecodeError, IndexError) as err:
                runs[name] = {"error": f"unreadable floor report: {err}"}
    failed = {}
    for path in sorted(glob.glob(os.path.join(floor_dir, "*.err"))):
        name = os.path.basename(path)[: -len(".err")]
        if name not in runs and os.path.getsize(path) > 0:
            with open(path, errors="replace") as f:
                failed[name] = f.read()[-2000:]
    with open(os.path.join(out, "floor.json"), "w") as f:
        json.dump({"runs": runs, "failed_runs": failed}, f, indent=1, sort_keys=True)
        f.write("\n")
