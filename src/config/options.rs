//! Lenient typed getters over a TOML table (Prosody's `module:get_option_*`).
//!
//! A wrong-typed or out-of-range value is reported as a diagnostic naming the key and is
//! ignored: the getter returns `None` and the caller's default applies. Nothing here can
//! abort the server.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use toml::{Table, Value};

use super::diagnostics::Diagnostics;

/// One module's options on one host: the global `[modules.NAME]` table with the host's
/// `[hosts.H.modules.NAME]` keys on top.
#[derive(Clone)]
pub struct ModuleOptions {
    table: Table,
    /// Dotted prefix for diagnostics, e.g. `modules.ping`.
    prefix: String,
    /// Where each key came from (host override or global), for accurate lines.
    key_prefixes: Arc<std::collections::HashMap<String, String>>,
    diagnostics: Diagnostics,
    read: Arc<Mutex<BTreeSet<String>>>,
}

impl ModuleOptions {
    pub fn new(table: Table, prefix: impl Into<String>, diagnostics: Diagnostics) -> Self {
        ModuleOptions {
            table,
            prefix: prefix.into(),
            key_prefixes: Default::default(),
            diagnostics,
            read: Default::default(),
        }
    }

    /// Global options overlaid with a host's, remembering where each key came from.
    pub fn layered(
        global: Option<&Table>,
        global_prefix: &str,
        host: Option<&Table>,
        host_prefix: &str,
        diagnostics: Diagnostics,
    ) -> Self {
        let mut table = Table::new();
        let mut origins = std::collections::HashMap::new();
        for (layer, prefix) in [(global, global_prefix), (host, host_prefix)] {
            if let Some(layer) = layer {
                for (key, value) in layer {
                    table.insert(key.clone(), value.clone());
                    origins.insert(key.clone(), prefix.to_string());
                }
            }
        }
        ModuleOptions {
            table,
            prefix: global_prefix.to_string(),
            key_prefixes: Arc::new(origins),
            diagnostics,
            read: Default::default(),
        }
    }

    pub fn empty() -> Self {
        Self::new(Table::new(), "modules", Diagnostics::default())
    }

    /// The dotted path of `key`, as written in the file.
    pub fn path(&self, key: &str) -> String {
        let prefix = self.key_prefixes.get(key).unwrap_or(&self.prefix);
        format!("{prefix}.{key}")
    }

    pub fn diagnostics(&self) -> &Diagnostics {
        &self.diagnostics
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The raw value, marking the key as known.
    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string());
        self.table.get(key)
    }

    fn wrong(&self, key: &str, expected: &str, found: &Value) {
        self.diagnostics.warn(
            &self.path(key),
            format!("expected {expected}, found {}; ignored", describe(found)),
        );
    }

    pub fn string(&self, key: &str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.wrong(key, "a string", other);
                None
            }
        }
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.raw(key)? {
            Value::Boolean(b) => Some(*b),
            other => {
                self.wrong(key, "true or false", other);
                None
            }
        }
    }

    pub fn integer(&self, key: &str, range: RangeInclusive<i64>) -> Option<i64> {
        match self.raw(key)? {
            Value::Integer(i) if range.contains(i) => Some(*i),
            other => {
                self.wrong(
                    key,
                    &format!("an integer {}..={}", range.start(), range.end()),
                    other,
                );
                None
            }
        }
    }

    pub fn string_list(&self, key: &str) -> Option<Vec<String>> {
        match self.raw(key)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => self.diagnostics.warn(
                            &format!("{}[{index}]", self.path(key)),
                            format!("expected a string, found {}; ignored", describe(other)),
                        ),
                    }
                }
                Some(out)
            }
            Value::String(s) => Some(vec![s.clone()]),
            other => {
                self.wrong(key, "a list of strings", other);
                None
            }
        }
    }

    pub fn table_value(&self, key: &str) -> Option<&Table> {
        match self.raw(key)? {
            Value::Table(t) => Some(t),
            other => {
                self.wrong(key, "a table", other);
                None
            }
        }
    }

    /// Reports every key that no getter asked for. Call after reading all options.
    pub fn report_unknown(&self) {
        let read = self.read.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for key in self.table.keys() {
            if !read.contains(key) {
                self.diagnostics
                    .warn(&self.path(key), "unknown option; ignored");
            }
        }
    }
}

/// A value's type and a short rendering, for diagnostics.
pub fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(f) => format!("float {f}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "a list".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_are_ignored_with_a_diagnostic() {
        let src = "[modules.x]\nport = \"abc\"\nttl = 600\nname = 3\nlist = ['a', 1]\nextra = 1\n";
        let root: Table = src.parse().expect("valid toml");
        let table = root["modules"]["x"].as_table().cloned().expect("table");
        let diags = Diagnostics::new(super::super::diagnostics::key_lines(src));
        let opts = ModuleOptions::new(table, "modules.x", diags.clone());
        assert_eq!(opts.integer("port", 1..=65535), None);
        assert_eq!(opts.integer("ttl", 1..=86400), Some(600));
        assert_eq!(opts.integer("ttl", 1..=10), None);
        assert_eq!(opts.string("name"), None);
        assert_eq!(opts.string_list("list"), Some(vec!["a".to_string()]));
        assert_eq!(opts.string("missing"), None);
        opts.report_unknown();
        let all = diags.all();
        let text: Vec<String> = all.iter().map(|d| d.to_string()).collect();
        assert!(
            text.iter().any(|t| t
                .contains("line 2: modules.x.port: expected an integer 1..=65535, found \"abc\"")),
            "{text:?}"
        );
        assert!(text
            .iter()
            .any(|t| t.contains("modules.x.name: expected a string, found integer 3")));
        assert!(text.iter().any(|t| t.contains("modules.x.list[1]")));
        assert!(text
            .iter()
            .any(|t| t.contains("line 6: modules.x.extra: unknown option")));
    }
}
