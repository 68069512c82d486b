//! What the clients were told: for every piece of state a write touches (a key such as
//! `roster/w0/c3@localhost`), the value of the last acknowledged write and the value of
//! a write that was sent but not acknowledged when the server died.
//!
//! A client waits for each acknowledgement before its next write to the same key, so at
//! most one write per key is in flight at a kill. After a restart the stored value must
//! therefore be the acknowledged one or the in-flight one: anything else is a lost
//! acknowledged write (the acknowledged value is gone) or corruption (a value nobody
//! wrote, e.g. half an item). `None` stands for "absent".

use std::collections::BTreeMap;

pub type Value = Option<String>;

#[derive(Default)]
struct Entry {
    acked: Value,
    in_flight: Option<Value>,
    /// A write to this key was acknowledged at some point of the run.
    ever_acked: bool,
}

#[derive(Default)]
pub struct Ledger {
    entries: BTreeMap<String, Entry>,
    /// Acknowledged writes, by kind (`roster-set`, `offline`...), over the whole run.
    pub acked: BTreeMap<&'static str, u64>,
    /// Writes sent whose acknowledgement never came (the server was killed first).
    pub unacked: u64,
}

/// A mismatch found by [`Ledger::check`].
#[derive(Debug)]
pub struct Finding {
    pub key: String,
    pub acked: Value,
    pub in_flight: Option<Value>,
    pub stored: Value,
    ever_acked: bool,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: stored {:?}, acknowledged {:?}, in flight {:?}",
            self.key, self.stored, self.acked, self.in_flight
        )
    }
}

impl Finding {
    /// An acknowledged write was undone (a value or a removal), rather than a value
    /// appearing on a key nobody wrote.
    pub fn is_loss(&self) -> bool {
        self.ever_acked
    }
}

impl Ledger {
    /// State that exists before the loop starts (accounts made with `tern adduser`).
    pub fn preset(&mut self, key: String, value: &str) {
        self.entries.insert(
            key,
            Entry {
                acked: Some(value.to_string()),
                in_flight: None,
                ever_acked: true,
            },
        );
    }

    /// A write of `value` to `key` is about to be sent.
    pub fn begin(&mut self, key: &str, value: Value) {
        let entry = self.entries.entry(key.to_string()).or_default();
        assert!(
            entry.in_flight.is_none(),
            "two writes in flight for {key}: the workload must not do that"
        );
        entry.in_flight = Some(value);
    }

    /// The server acknowledged the write begun on `key`.
    pub fn ack(&mut self, key: &str) {
        if let Some(entry) = self.entries.get_mut(key) {
            if let Some(value) = entry.in_flight.take() {
                entry.acked = value;
                entry.ever_acked = true;
            }
        }
    }

    /// The acknowledged value of `key` (`None`: absent).
    pub fn acked(&self, key: &str) -> Option<&String> {
        self.entries.get(key).and_then(|e| e.acked.as_ref())
    }

    pub fn count(&mut self, kind: &'static str) {
        *self.acked.entry(kind).or_default() += 1;
    }

    pub fn acked_total(&self) -> u64 {
        self.acked.values().sum()
    }

    /// Compares the stored state with the ledger, then takes the stored state as the
    /// truth (an unacknowledged write either happened or not; now we know which).
    pub fn check(&mut self, stored: &BTreeMap<String, String>) -> Vec<Finding> {
        let mut findings = Vec::new();
        for key in stored.keys() {
            self.entries.entry(key.clone()).or_default();
        }
        for (key, entry) in &mut self.entries {
            let value = stored.get(key).cloned();
            let in_flight = entry.in_flight.take();
            if value != entry.acked && in_flight.as_ref() != Some(&value) {
                findings.push(Finding {
                    key: key.clone(),
                    acked: entry.acked.clone(),
                    in_flight: in_flight.clone(),
                    stored: value.clone(),
                    ever_acked: entry.ever_acked,
                });
            }
            if in_flight.is_some() {
                self.unacked += 1;
            }
            entry.acked = value;
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn acked_and_in_flight_values_are_accepted_others_are_findings() {
        let mut ledger = Ledger::default();
        ledger.begin("a", Some("1".into()));
        ledger.ack("a");
        ledger.begin("a", None);
        ledger.begin("b", Some("x".into()));
        // `a` removed by the in-flight write, `b` never written: both fine.
        assert!(ledger.check(&stored(&[])).is_empty());
        // Now `a` is known absent; it coming back is counted as a loss (a value of it
        // was acknowledged once), the conservative side.
        let findings = ledger.check(&stored(&[("a", "1")]));
        assert_eq!(findings.len(), 1);
        assert!(findings[0].is_loss());
        // A key nobody ever wrote gaining a value is corruption, not a loss.
        let findings = ledger.check(&stored(&[("a", "1"), ("z", "?")]));
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].key, "z");
        assert!(!findings[0].is_loss());
        ledger.begin("c", Some("2".into()));
        ledger.ack("c");
        let findings = ledger.check(&stored(&[("a", "1"), ("z", "?")]));
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].key, "c");
        assert!(findings[0].is_loss());
    }
}
