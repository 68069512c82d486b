"""The report's start-up section: each start-up repetition's wall time to the first login,
step by step, beside what the kernel counted meanwhile (tern-load startup's
`first_login_steps` and `waits_to_first_login`), and the idle server's wake-ups. A slow
start-up with little CPU waited on something; this says on what: the run queue (another
process, or the hypervisor: steal), the disk (major faults, what the server read and how
long it waited for it, iowait, the write backlog it queued behind) or the login's peer."""

import re


def _get(obj, *path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _ms(v):
    return "–" if v is None else f"{v:,.1f}"


def _mib(kib):
    return "–" if kib is None else f"{kib / 1024:,.1f}"


def _backlog_mib(waits):
    """The dirty and under-writeback data the machine held when the server was started."""
    backlog = waits.get("write_backlog_at_exec")
    if not backlog:
        return "–"
    return f"{backlog.get('dirty_mib', 0) + backlog.get('writeback_mib', 0):,.1f}"


def _disk_wait(waits):
    """The server's block I/O delay; starred when threads were left out of it (a delay
    longer than the thread's life, which the kernel sometimes counts)."""
    ms = _ms(_get(waits, "server", "waiting_on_disk_ms"))
    return ms + "*" if (_get(waits, "server", "implausible_disk_waits") or 0) > 0 else ms


def reclaim_note(servers, names):
    """A sentence on the machine's proactive reclaim, from the first report that could read
    it (null: DAMON's sysfs was missing or unreadable, which says nothing either way)."""
    for n in names:
        for r in servers[n].reports.values():
            schemes = _get(r, "waits_to_first_login", "proactive_reclaim")
            if schemes is None:
                continue
            timed = [s for s in schemes if s.get("unused_for_s") is not None]
            if not timed:
                return ("This machine ran no proactive page reclaim (DAMON `pageout`): a "
                        "program read before stays in the page cache until memory runs short.")
            first = min(timed, key=lambda s: s["unused_for_s"])
            memory = ("physical memory" if first.get("operations") == "paddr"
                      else "processes' address spaces")
            return (f"This machine's kernel pages out what was not touched for "
                    f"{first['unused_for_s']:g} s (DAMON `pageout` on {memory}): a server "
                    "that has not run for that long may start with part of its program to "
                    "read from the disk again, the same for every server here.")
    return None


def step_durations(report):
    """[(step, ms)] of the first login, each step from the end of the one before (the
    first from when the successful attempt began)."""
    steps = report.get("first_login_steps")
    if not steps:
        return []
    at = steps.get("began_ms")
    out = []
    for end in steps.get("ends", []):
        if at is None or end.get("ended_ms") is None:
            return []
        out.append((end.get("step", "?"), end["ended_ms"] - at))
        at = end["ended_ms"]
    return out


def startup_rows(name, reports):
    """Markdown rows, one per start-up repetition of one server."""
    rows = []
    rx = re.compile(r"startup-r(\d+)")
    for label, r in sorted(reports.items()):
        m = rx.fullmatch(label)
        if not m or "error" in r:
            continue
        waits = r.get("waits_to_first_login") or {}
        machine = waits.get("machine") or {}
        steps = step_durations(r)
        slowest = max(steps, key=lambda s: s[1]) if steps else None
        idle_sched = _get(r, "idle", "sched")
        idle_wall = _get(r, "idle", "wall_s")
        wakeups = (None if idle_sched is None or not idle_wall
                   else idle_sched.get("timeslices", 0) / idle_wall)
        rows.append(
            f"| {name} | {m.group(1)} | {_ms(r.get('listening_ms'))} | {_ms(r.get('first_login_ms'))} | "
            + (f"{slowest[0]} {slowest[1]:,.1f}" if slowest else "–") + " | "
            + f"{_ms(_get(waits, 'server', 'on_cpu_ms'))} | {_ms(_get(waits, 'server', 'run_queue_wait_ms'))} | "
            + f"{_get(waits, 'server', 'major_faults') if waits else '–'} | "
            + f"{_mib(_get(waits, 'server', 'read_from_disk_kib'))} | "
            + f"{_disk_wait(waits)} | {_backlog_mib(waits)} | "
            + f"{_ms(machine.get('iowait_ms'))} | {_ms(machine.get('steal_ms'))} | "
            + f"{_ms(machine.get('idle_ms'))} | "
            + ("–" if wakeups is None else f"{wakeups:,.1f}") + " | "
            + f"{_ms(None if idle_sched is None else idle_sched.get('on_cpu_ms'))} |"
        )
    return rows


def startup_section(servers, names):
    rows = []
    for n in names:
        rows.extend(startup_rows(n, servers[n].reports))
    if not any("waits_to_first_login" in r for n in names for r in servers[n].reports.values()):
        return []  # a run from before tern-load recorded them
    reclaim = reclaim_note(servers, names)
    return [
        "## Start-up, repetition by repetition",
        "",
        "Where each start-up's wall time to its first login went. *Slowest step*: the first "
        "login's longest step (connect, starttls, tls, sasl, bind, roster, presence), timed by "
        "the client. *On CPU* and *run-queue wait*: the scheduler's own accounting over every "
        "thread of the server (/proc/PID/task/TID/schedstat), from exec to the first login; "
        "*major faults*: page faults that read the disk; *read from disk*: what the server's "
        "processes made the kernel read from storage, its program included (/proc/PID/io); "
        "*waiting on the disk*: its threads' block I/O delay (the kernel's delay accounting, "
        "10 ms ticks; – where it was off; * where threads whose counted delay was longer than "
        "their life were left out); *write backlog*: the data the machine still had to "
        "write when the server was started, which a read or a sync queues behind. "
        "*iowait*, *steal* and *idle*: the "
        "whole machine (both CPUs) over the same stretch, from /proc/stat (10 ms ticks). A "
        "start-up with little on-CPU or run-queue time and a long step waited on something "
        "else: the disk or the peer. *Idle*: the 10 s with no connection afterwards, the "
        "server's wake-ups (times a thread was put on a CPU) per second and its CPU time.",
        "",
        *([reclaim, ""] if reclaim else []),
        "| server | rep | port open, ms | first login, ms | slowest step, ms | on CPU, ms | "
        "run-queue wait, ms | major faults | read from disk, MiB | waiting on the disk, ms | "
        "write backlog, MiB | machine iowait, ms | machine steal, ms | machine idle, ms | "
        "idle: wake-ups/s | idle: on CPU, ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
