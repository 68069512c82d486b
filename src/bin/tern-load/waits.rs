//! Where a stretch of wall time went when CPU time does not explain it. A start-up that
//! takes 870 ms to its first login with 20 ms of CPU (2026-11-29T0732Z) waited on
//! something: the CPU run queue (another process, or the hypervisor's steal), the disk
//! (major page faults, iowait), or a peer. These counters tell those apart: the
//! scheduler's own accounting per thread (/proc/PID/task/TID/schedstat: time on a CPU and
//! time runnable but waiting for one, in nanoseconds), the page faults that had to read
//! from the disk (/proc/PID/stat), what the server read from the disk and how long it
//! waited on it (/proc/PID/io, and the kernel's delay accounting where it is on), how
//! much the machine still had to write when the server started (/proc/meminfo), and how
//! the whole machine's CPUs spent the stretch (/proc/stat, including iowait and steal).
//!
//! On the benchmark's VM a cold program is the usual reason for a slow start-up: its
//! kernel runs DAMON's `pageout` on pages nobody touched for 60 s, so a server that has
//! not run for a minute may have to read much of its program from the disk again, behind
//! whatever the disk is still writing (`proactive_reclaim` reports that setting with each
//! start-up).

use serde_json::{json, Value};

use crate::procfs::{clock_ticks, process_tree, round};

/// The first line of /proc/stat: every CPU's time by state since boot, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineTicks {
    /// user, nice, system, idle, iowait, irq, softirq, steal
    fields: [u64; 8],
}

const MACHINE_STATES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

impl MachineTicks {
    pub fn read() -> MachineTicks {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| MachineTicks::parse(&text))
            .unwrap_or_default()
    }

    fn parse(text: &str) -> Option<MachineTicks> {
        let line = text.lines().next()?;
        let mut words = line.split_whitespace();
        if words.next()? != "cpu" {
            return None;
        }
        let mut fields = [0u64; 8];
        for field in fields.iter_mut() {
            // Older kernels stop before steal: the missing states stay 0.
            match words.next() {
                Some(word) => *field = word.parse().ok()?,
                None => break,
            }
        }
        Some(MachineTicks { fields })
    }

    /// Milliseconds each state took between `self` and `later`, summed over the CPUs.
    pub fn delta_json(&self, later: &MachineTicks) -> Value {
        let ms_per_tick = 1000.0 / clock_ticks() as f64;
        let mut map = serde_json::Map::new();
        for (i, state) in MACHINE_STATES.iter().enumerate() {
            let ticks = later.fields[i].saturating_sub(self.fields[i]);
            map.insert(
                format!("{state}_ms"),
                json!(round(ticks as f64 * ms_per_tick, 1)),
            );
        }
        Value::Object(map)
    }
}

/// The scheduler's view of a process tree: summed over every live thread.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sched {
    /// Time on a CPU.
    pub run_ns: u64,
    /// Time runnable but waiting for a CPU (the run queue).
    pub wait_ns: u64,
    /// Times a thread was put on a CPU: near the number of wake-ups when it is idle.
    pub timeslices: u64,
    /// Page faults that had to read from the disk (of the processes and their reaped
    /// children).
    pub major_faults: u64,
    /// Bytes the processes caused to be read from the storage layer (page faults
    /// included), from /proc/PID/io; `None` when no process's file could be read (a
    /// kernel without I/O accounting, or a server running as another user).
    pub disk_read_bytes: Option<u64>,
    /// Clock ticks the threads spent waiting for block I/O (`delayacct_blkio_ticks`);
    /// counted only while the kernel's delay accounting is on.
    pub disk_wait_ticks: u64,
    /// Threads whose block I/O delay was longer than their life, left out of
    /// `disk_wait_ticks`. The kernel sometimes ends a wait whose start it never stamped,
    /// and counts it from 0: the time since boot (51,850 s in an 18 ms start-up, run
    /// 2026-11-29T1149Z, about this machine's uptime then). The same slip in a thread
    /// that had waited before counts from that wait and passes: the sum is an upper bound.
    pub implausible_disk_waits: u64,
    /// Whether delay accounting was on when this was read; `None` for no reading at all
    /// (the zero a process starts from).
    pub delay_accounting: Option<bool>,
}

impl Sched {
    /// The processes and their descendants (a server's launcher and what it started).
    pub fn of_tree(roots: &[u32]) -> Sched {
        let mut total = Sched::default();
        for pid in process_tree(roots) {
            total.add_process(pid);
        }
        total
    }

    /// One process without its children (the generator, whose child is the server).
    pub fn of_process(pid: u32) -> Sched {
        let mut total = Sched::default();
        total.add_process(pid);
        total
    }

    fn add_process(&mut self, pid: u32) {
        if self.delay_accounting.is_none() {
            self.delay_accounting = Some(delay_accounting_on());
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            self.major_faults += major_faults(&stat).unwrap_or(0);
        }
        if let Some(read) = std::fs::read_to_string(format!("/proc/{pid}/io"))
            .ok()
            .and_then(|io| io_read_bytes(&io))
        {
            self.disk_read_bytes = Some(self.disk_read_bytes.unwrap_or(0) + read);
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        let now_ticks = uptime_ticks();
        for task in tasks.flatten() {
            // The process's own stat line holds only its first thread's block I/O delay.
            if let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) {
                if let Some((waited, started)) = disk_wait_and_start_ticks(&stat) {
                    if plausible_disk_wait(waited, started, now_ticks) {
                        self.disk_wait_ticks += waited;
                    } else {
                        self.implausible_disk_waits += 1;
                    }
                }
            }
            let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            if let Some((run, wait, slices)) = parse_schedstat(&text) {
                self.run_ns += run;
                self.wait_ns += wait;
                self.timeslices += slices;
            }
        }
    }

    pub fn since_json(&self, before: &Sched) -> Value {
        let ms = |ns: u64| round(ns as f64 / 1e6, 2);
        json!({
            "on_cpu_ms": ms(self.run_ns.saturating_sub(before.run_ns)),
            "run_queue_wait_ms": ms(self.wait_ns.saturating_sub(before.wait_ns)),
            "timeslices": self.timeslices.saturating_sub(before.timeslices),
            "major_faults": self.major_faults.saturating_sub(before.major_faults),
            "read_from_disk_kib": self
                .disk_read_bytes
                .map(|read| read.saturating_sub(before.disk_read_bytes.unwrap_or(0)) / 1024),
            // Without delay accounting the kernel counts nothing: null, not 0. It must
            // have been on at both ends; a stretch it was switched in is partly counted.
            "waiting_on_disk_ms": (self.delay_accounting == Some(true)
                && before.delay_accounting != Some(false))
            .then(|| {
                let ticks = self.disk_wait_ticks.saturating_sub(before.disk_wait_ticks);
                round(ticks as f64 * 1000.0 / clock_ticks() as f64, 1)
            }),
            "implausible_disk_waits": self
                .implausible_disk_waits
                .saturating_sub(before.implausible_disk_waits),
        })
    }
}

/// Whether the kernel counts tasks' delays (`kernel.task_delayacct`, off by default
/// since Linux 5.14; `bench/compare.sh` turns it on where it may). Older kernels have no
/// such switch, and whether theirs counts cannot be told from here: reported as off.
pub fn delay_accounting_on() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/task_delayacct").is_ok_and(|v| v.trim() == "1")
}

/// What the machine still had to write to its disks: a start-up that reads or syncs
/// queues behind it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WriteBacklog {
    pub dirty_kib: u64,
    pub writeback_kib: u64,
}

impl WriteBacklog {
    pub fn read() -> WriteBacklog {
        std::fs::read_to_string("/proc/meminfo")
            .map(|text| WriteBacklog::parse(&text))
            .unwrap_or_default()
    }

    fn parse(meminfo: &str) -> WriteBacklog {
        let mut backlog = WriteBacklog::default();
        for line in meminfo.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let kib = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok());
            match (key, kib) {
                ("Dirty", Some(kib)) => backlog.dirty_kib = kib,
                ("Writeback", Some(kib)) => backlog.writeback_kib = kib,
                _ => {}
            }
        }
        backlog
    }

    pub fn json(&self) -> Value {
        json!({
            "dirty_mib": round(self.dirty_kib as f64 / 1024.0, 1),
            "writeback_mib": round(self.writeback_kib as f64 / 1024.0, 1),
        })
    }
}

/// The machine's proactive reclaim, if any: DAMON schemes that page out what was not
/// touched for a while, each with that while in seconds. Such a scheme drops a stopped
/// server's program from the page cache, and its next start reads it from the disk.
/// `[]`: DAMON's sysfs was read and pages nothing out; null: it could not be read (no
/// DAMON sysfs in this kernel, or not root: its files are the owner's only), which says
/// nothing either way.
pub fn proactive_reclaim() -> Value {
    damon_pageout_schemes(std::path::Path::new("/sys/kernel/mm/damon/admin/kdamonds"))
}

/// [`proactive_reclaim`] from a DAMON sysfs tree rooted at `root` (its `kdamonds` folder).
fn damon_pageout_schemes(root: &std::path::Path) -> Value {
    let read = |p: &std::path::Path| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let num = |p: &std::path::Path| read(p).and_then(|s| s.parse::<f64>().ok());
    let mut schemes = Vec::new();
    let Ok(kdamonds) = std::fs::read_dir(root) else {
        return Value::Null;
    };
    // The folder also holds the file `nr_kdamonds`: the kdamonds are its folders.
    for kdamond in kdamonds.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        match read(&kdamond.join("state")).as_deref() {
            Some("on") => {}
            Some(_) => continue,
            None => return Value::Null,
        }
        let Ok(contexts) = std::fs::read_dir(kdamond.join("contexts")) else {
            continue;
        };
        for context in contexts.flatten().map(|e| e.path()) {
            let aggregation_us = num(&context.join("monitoring_attrs/intervals/aggr_us"));
            let Ok(found) = std::fs::read_dir(context.join("schemes")) else {
                continue;
            };
            for scheme in found.flatten().map(|e| e.path()) {
                let Some(action) = read(&scheme.join("action")) else {
                    continue;
                };
                if action != "pageout" {
                    continue;
                }
                // Age counts aggregation intervals.
                let min_age = num(&scheme.join("access_pattern/age/min"));
                schemes.push(json!({
                    "action": action,
                    "operations": read(&context.join("operations")),
                    "unused_for_s": min_age
                        .zip(aggregation_us)
                        .map(|(age, us)| round(age * us / 1e6, 1)),
                }));
            }
        }
    }
    Value::Array(schemes)
}

/// `schedstat`: time on a CPU, time waiting on a run queue (both ns), timeslices.
fn parse_schedstat(text: &str) -> Option<(u64, u64, u64)> {
    let mut words = text.split_whitespace().map(|w| w.parse::<u64>().ok());
    Some((words.next()??, words.next()??, words.next()??))
}

/// majflt + cmajflt (fields 12 and 13) of a /proc/PID/stat line.
fn major_faults(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): majflt is field 12, cmajflt 13.
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(get(9)? + get(10)?)
}

/// read_bytes of a /proc/PID/io file.
fn io_read_bytes(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|line| line.strip_prefix("read_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// delayacct_blkio_ticks (field 42) and starttime (field 22, in ticks since boot) of a
/// /proc/PID/stat line.
fn disk_wait_and_start_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some((field(42)?, field(22)?))
}

/// Whether a thread's block I/O delay fits in its life so far (both in clock ticks since
/// boot; one tick of slack, as the two are rounded apart). Without the clock, believed.
fn plausible_disk_wait(waited: u64, started: u64, now: Option<u64>) -> bool {
    match now {
        Some(now) => waited <= now.saturating_sub(started).saturating_add(1),
        None => true,
    }
}

/// Clock ticks since boot (/proc/uptime), the clock of a thread's starttime.
fn uptime_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((seconds * clock_ticks() as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_states_are_read_in_kernel_order() {
        let before = MachineTicks::parse("cpu  100 0 50 1000 7 0 3 2 0 0\ncpu0 1 2 3\n")
            .expect("a cpu line");
        let after = MachineTicks::parse("cpu  110 0 55 1100 27 0 3 12 0 0\n").expect("a cpu line");
        let delta = before.delta_json(&after);
        let ms = 1000.0 / clock_ticks() as f64;
        assert_eq!(delta["user_ms"], json!(round(10.0 * ms, 1)));
        assert_eq!(delta["iowait_ms"], json!(round(20.0 * ms, 1)));
        assert_eq!(delta["steal_ms"], json!(round(10.0 * ms, 1)));
        assert_eq!(delta["idle_ms"], json!(round(100.0 * ms, 1)));
        assert_eq!(MachineTicks::parse("intr 1 2 3\n"), None);
        assert_eq!(MachineTicks::parse("cpu 1 x 3\n"), None);
    }

    #[test]
    fn schedstat_and_faults_are_parsed() {
        assert_eq!(parse_schedstat("123456 789 12\n"), Some((123456, 789, 12)));
        assert_eq!(parse_schedstat("12 13\n"), None);
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 7 3 1 2 0 0 20 0";
        assert_eq!(major_faults(stat), Some(10));
        // A kernel's line, 52 fields: starttime 100, delayacct_blkio_ticks 37.
        let stat = "7 (tern) S 1 7 7 0 -1 4194560 900 0 3 0 5 2 0 0 20 0 4 0 100 \
                    9000000 2000 18446744073709551615 1 1 0 0 0 0 0 4096 17610 0 0 0 \
                    17 0 0 0 37 0 0 1 2 3 4 5 6 7 0";
        assert_eq!(disk_wait_and_start_ticks(stat), Some((37, 100)));
        assert_eq!(disk_wait_and_start_ticks("7 (short) S 1 2"), None);
        let io = "rchar: 10\nwchar: 0\nsyscr: 1\nsyscw: 0\nread_bytes: 8192\nwrite_bytes: 0\n";
        assert_eq!(io_read_bytes(io), Some(8192));
    }

    #[test]
    fn the_write_backlog_is_read_from_meminfo() {
        let meminfo = "MemTotal:       24000000 kB\nDirty:           2048 kB\n\
                       Writeback:        512 kB\nWritebackTmp:       7 kB\n";
        let backlog = WriteBacklog::parse(meminfo);
        assert_eq!(
            backlog,
            WriteBacklog {
                dirty_kib: 2048,
                writeback_kib: 512
            }
        );
        assert_eq!(backlog.json()["dirty_mib"], json!(2.0));
        assert_eq!(
            WriteBacklog::parse("nothing here\n"),
            WriteBacklog::default()
        );
    }

    #[test]
    fn reading_the_disk_is_counted() {
        // A file the page cache does not hold is read from the disk, and /proc/self/io
        // counts it: written, synced, dropped from the cache, then read back. Checked on
        // the file systems that read through the block layer as the reading task;
        // elsewhere (tmpfs, overlays, network and FUSE file systems) nothing is promised.
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("cold");
        std::fs::write(&path, vec![7u8; 1 << 20]).expect("writing the file");
        let file = std::fs::File::open(&path).expect("opening it");
        file.sync_all().expect("syncing it");
        use std::os::fd::AsRawFd;
        // SAFETY: a valid descriptor; the advice only drops clean cached pages.
        let dropped =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(dropped, 0);
        let me = std::process::id();
        let before = Sched::of_process(me);
        let read = std::fs::read(&path).expect("reading it back");
        let after = Sched::of_process(me);
        assert_eq!(read.len(), 1 << 20);
        // A kernel without I/O accounting has no /proc/PID/io.
        if !on_block_file_system(&file) || std::fs::metadata("/proc/self/io").is_err() {
            return;
        }
        let counted = after
            .disk_read_bytes
            .unwrap_or(0)
            .saturating_sub(before.disk_read_bytes.unwrap_or(0));
        assert!(
            counted >= 1 << 20,
            "1 MiB read from the disk counted as {counted} bytes"
        );
        let json = after.since_json(&before);
        assert!(json["read_from_disk_kib"]
            .as_u64()
            .is_some_and(|kib| kib >= 1024));
    }

    /// ext4, XFS or btrfs, by the file system's magic number.
    fn on_block_file_system(file: &std::fs::File) -> bool {
        use std::os::fd::AsRawFd;
        let mut fs = std::mem::MaybeUninit::<libc::statfs>::zeroed();
        // SAFETY: a valid descriptor and a buffer of the right type for the kernel to fill.
        if unsafe { libc::fstatfs(file.as_raw_fd(), fs.as_mut_ptr()) } != 0 {
            return false;
        }
        // SAFETY: fstatfs succeeded, so it filled the buffer.
        let magic = unsafe { fs.assume_init() }.f_type as u64;
        [0xEF53, 0x5846_5342, 0x9123_683E].contains(&magic)
    }

    #[test]
    fn damon_pageout_schemes_are_found_with_their_age() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path().join("kdamonds");
        let put = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("folders");
            std::fs::write(path, text).expect("a file");
        };
        put("nr_kdamonds", "1\n");
        put("0/state", "on\n");
        put("0/contexts/0/operations", "paddr\n");
        put(
            "0/contexts/0/monitoring_attrs/intervals/aggr_us",
            "5000000\n",
        );
        put("0/contexts/0/schemes/0/action", "pageout\n");
        put("0/contexts/0/schemes/0/access_pattern/age/min", "12\n");
        put("0/contexts/0/schemes/1/action", "stat\n");
        assert_eq!(
            damon_pageout_schemes(&root),
            json!([{ "action": "pageout", "operations": "paddr", "unused_for_s": 60.0 }])
        );
        put("0/state", "off\n");
        assert_eq!(damon_pageout_schemes(&root), json!([]));
        // No DAMON sysfs at all says nothing either way.
        assert_eq!(damon_pageout_schemes(&dir.path().join("none")), Value::Null);
    }

    #[test]
    fn a_disk_wait_longer_than_the_thread_is_not_believed() {
        // 100 ticks since boot, a thread started at tick 60: up to 41 ticks of waiting.
        assert!(plausible_disk_wait(41, 60, Some(100)));
        assert!(!plausible_disk_wait(42, 60, Some(100)));
        // The slip: counted from 0, about the uptime.
        assert!(!plausible_disk_wait(5_185_067, 5_185_060, Some(5_185_070)));
        // A clock gone wrong neither overflows nor rejects.
        assert!(plausible_disk_wait(7, 0, Some(u64::MAX)));
        assert!(plausible_disk_wait(u64::MAX, 0, None));
    }

    #[test]
    fn waits_need_accounting_at_both_ends_and_slips_count_as_a_difference() {
        let before = Sched {
            disk_wait_ticks: 10,
            implausible_disk_waits: 1,
            delay_accounting: Some(true),
            ..Sched::default()
        };
        let after = Sched {
            disk_wait_ticks: 10 + clock_ticks(),
            implausible_disk_waits: 3,
            delay_accounting: Some(true),
            ..Sched::default()
        };
        let json = after.since_json(&before);
        assert_eq!(json["waiting_on_disk_ms"], json!(1000.0));
        assert_eq!(json["implausible_disk_waits"], json!(2));
        // No /proc/PID/io read: null, not 0.
        assert_eq!(json["read_from_disk_kib"], Value::Null);
        // From the start of a process (no reading before): the reading's own state.
        assert_eq!(
            after.since_json(&Sched::default())["waiting_on_disk_ms"],
            json!(1000.0 + 10.0 * 1000.0 / clock_ticks() as f64)
        );
        let switched_on = Sched {
            delay_accounting: Some(false),
            ..before
        };
        assert_eq!(
            after.since_json(&switched_on)["waiting_on_disk_ms"],
            Value::Null
        );
        let off = Sched {
            delay_accounting: Some(false),
            ..after
        };
        assert_eq!(
            off.since_json(&Sched::default())["waiting_on_disk_ms"],
            Value::Null
        );
    }

    #[test]
    fn own_threads_are_seen_running() {
        // The sum over the process's threads loses what other tests' threads ran before
        // they exited, so the spinning is checked on this thread's own line, and the sum
        // must hold at least that. It spins until the kernel has counted 10 ms (on a busy
        // machine that takes longer than 10 ms), for at most 5 s.
        let this_thread = || {
            std::fs::read_to_string("/proc/thread-self/schedstat")
                .ok()
                .and_then(|text| parse_schedstat(&text))
                .map(|(run, _, _)| run)
                .expect("this thread's schedstat")
        };
        let me = std::process::id();
        let before = this_thread();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after < before + 10_000_000 && start.elapsed().as_secs() < 5 {
            for _ in 0..10_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            after = this_thread();
        }
        std::hint::black_box(x);
        assert!(
            after >= before + 10_000_000,
            "5 s of spinning counted as {} ns",
            after.saturating_sub(before)
        );
        assert!(Sched::of_process(me).run_ns >= after);
        assert!(Sched::of_tree(&[me]).run_ns >= after);
    }
}
