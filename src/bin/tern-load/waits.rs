//! Where a stretch of wall time went when CPU time does not explain it. A start-up that
//! takes 870 ms to its first login with 20 ms of CPU (2026-11-29T0732Z) waited on
//! something: the CPU run queue (another process, or the hypervisor's steal), the disk
//! (major page faults, iowait), or a peer. These counters tell those apart: the
//! scheduler's own accounting per thread (/proc/PID/task/TID/schedstat: time on a CPU and
//! time runnable but waiting for one, in nanoseconds), the page faults that had to read
//! from the disk (/proc/PID/stat), and how the whole machine's CPUs spent the stretch
//! (/proc/stat, including iowait and steal).

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
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            self.major_faults += major_faults(&stat).unwrap_or(0);
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        for task in tasks.flatten() {
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
        })
    }
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
    }

    #[test]
    fn own_threads_are_seen_running() {
        let me = std::process::id();
        let before = Sched::of_process(me);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 20 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = Sched::of_process(me);
        assert!(Sched::of_tree(&[me]).run_ns >= after.run_ns);
        assert!(
            after.run_ns >= before.run_ns + 10_000_000,
            "20 ms of spinning counted as {} ns",
            after.run_ns.saturating_sub(before.run_ns)
        );
    }
}
