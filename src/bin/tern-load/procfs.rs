//! What the kernel says about the server processes and about the generator itself: CPU
//! time (utime + stime from /proc/PID/stat) and memory (RSS and PSS from
//! /proc/PID/smaps_rollup), for a PID and all its descendants (found through
//! /proc/PID/task/TID/children), so a wrapper script (ejabberdctl, prosody's launcher)
//! can be given and the processes it started are counted too.

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::{json, Value};

/// Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t: &u64| t > 0)
            .unwrap_or(100)
    })
}

/// utime + stime + cutime + cstime of one process, in clock ticks (the `c` fields hold
/// children that exited and were reaped, so a child counted live before and reaped after
/// is counted once). `None` when the process is gone.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(get(11)? + get(12)? + get(13)? + get(14)?)
}

/// The PID and its live descendants.
pub fn process_tree(roots: &[u32]) -> Vec<u32> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            if let Ok(children) = std::fs::read_to_string(path) {
                stack.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    seen.into_iter().collect()
}

/// CPU time of the processes and their descendants, microseconds.
pub fn tree_cpu_us(roots: &[u32]) -> u64 {
    let ticks: u64 = process_tree(roots)
        .into_iter()
        .filter_map(process_ticks)
        .sum();
    ticks * 1_000_000 / clock_ticks()
}

/// RSS and PSS, kB, summed over the processes and their descendants.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kb: u64,
    pub pss_kb: u64,
}

pub fn tree_memory(roots: &[u32]) -> Memory {
    let mut total = Memory::default();
    for pid in process_tree(roots) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let key = parts.next();
            let value = parts
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            match key {
                Some("Rss:") => total.rss_kb += value,
                Some("Pss:") => total.pss_kb += value,
                _ => {}
            }
        }
    }
    total
}

/// The generator's own CPU time (all threads), microseconds: what getrusage(RUSAGE_SELF)
/// reports, read from /proc/self/stat.
pub fn self_cpu_us() -> u64 {
    process_ticks(std::process::id()).unwrap_or(0) * 1_000_000 / clock_ticks()
}

/// CPU time the whole machine spent in processes (user, nice, system) or stolen by the
/// hypervisor (steal), from the first line of /proc/stat, microseconds. Interrupt and
/// softirq time (loopback networking the load itself causes) is left out.
pub fn machine_busy_us() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = text.lines().next() else {
        return 0;
    };
    // cpu user nice system idle iowait irq softirq steal guest guest_nice
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let busy: u64 = [0usize, 1, 2, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    busy * 1_000_000 / clock_ticks()
}

/// The soft limit on open files (from /proc/self/limits).
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Numbers taken at the start of a measured window.
pub struct Sample {
    at: Instant,
    server_cpu_us: u64,
    self_cpu_us: u64,
    machine_busy_us: u64,
    memory: Memory,
}

impl Sample {
    pub fn memory(&self) -> Memory {
        self.memory
    }

    pub fn take(server: &[u32]) -> Sample {
        Sample {
            at: Instant::now(),
            server_cpu_us: tree_cpu_us(server),
            self_cpu_us: self_cpu_us(),
            machine_busy_us: machine_busy_us(),
            memory: tree_memory(server),
        }
    }
}

/// A measured window: CPU of the server and of the generator between two samples.
pub struct Window {
    pub wall_s: f64,
    pub server_cpu_us: u64,
    pub generator_cpu_us: u64,
    /// CPU used by everything else on the machine (other processes, the kernel's own
    /// work not charged to a process): noise when it is not near zero.
    pub other_cpu_us: u64,
    pub memory_before: Memory,
    pub memory_after: Memory,
    pub server_pids: Vec<u32>,
}

/// The generator counts as the bottleneck above this share of one core.
pub const GENERATOR_BOUND_SHARE: f64 = 0.8;

impl Window {
    pub fn between(before: &Sample, after: &Sample, server: &[u32]) -> Window {
        Window {
            wall_s: (after.at - before.at).as_secs_f64(),
            server_cpu_us: after.server_cpu_us.saturating_sub(before.server_cpu_us),
            generator_cpu_us: after.self_cpu_us.saturating_sub(before.self_cpu_us),
            other_cpu_us: after
                .machine_busy_us
                .saturating_sub(before.machine_busy_us)
                .saturating_sub(after.server_cpu_us.saturating_sub(before.server_cpu_us))
                .saturating_sub(after.self_cpu_us.saturating_sub(before.self_cpu_us)),
            memory_before: before.memory,
            memory_after: after.memory,
            server_pids: process_tree(server),
        }
    }

    pub fn generator_cores(&self) -> f64 {
        self.generator_cpu_us as f64 / 1e6 / self.wall_s.max(1e-9)
    }

    pub fn other_cores(&self) -> f64 {
        self.other_cpu_us as f64 / 1e6 / self.wall_s.max(1e-9)
    }

    pub fn generator_bound(&self) -> bool {
        self.generator_cores() > GENERATOR_BOUND_SHARE
    }

    /// The `server` and `generator` objects of the report; `ops` is what CPU is divided by.
    pub fn to_json(&self, ops: u64, have_server: bool) -> (Value, Value) {
        let per_op = |us: u64| {
            if ops == 0 {
                Value::Null
            } else {
                json!(round(us as f64 / ops as f64, 2))
            }
        };
        let server = if have_server {
            json!({
                "pids": self.server_pids,
                "cpu_us": self.server_cpu_us,
                "cpu_us_per_op": per_op(self.server_cpu_us),
                "cpu_cores": round(self.server_cpu_us as f64 / 1e6 / self.wall_s.max(1e-9), 3),
                "rss_kb_before": self.memory_before.rss_kb,
                "rss_kb_after": self.memory_after.rss_kb,
                "pss_kb_before": self.memory_before.pss_kb,
                "pss_kb_after": self.memory_after.pss_kb,
            })
        } else {
            Value::Null
        };
        let generator = json!({
            "cpu_us": self.generator_cpu_us,
            "cpu_us_per_op": per_op(self.generator_cpu_us),
            "cpu_cores": round(self.generator_cores(), 3),
            "generator_bound": self.generator_bound(),
        });
        (server, generator)
    }
}

pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(process_ticks(me).is_some());
        assert!(process_tree(&[me]).contains(&me));
        let memory = tree_memory(&[me]);
        assert!(memory.rss_kb > 0);
        assert!(open_files_limit().unwrap_or(1) > 0);
        // Burn a little CPU and see it counted (ticks are 10 ms).
        let before = self_cpu_us();
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 60 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(self_cpu_us() >= before);
    }
}
