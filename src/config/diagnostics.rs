//! Config diagnostics: collected per key instead of aborting, printed by `tern check`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Dotted path of the offending key, e.g. `modules.ping.interval`.
    pub key: String,
    /// 1-based line in the config file, when the key is in the file.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        match self.line {
            Some(line) => write!(f, "{level}: line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{level}: {}: {}", self.key, self.message),
        }
    }
}

/// A shared sink of diagnostics with the line of each key of the source file.
/// Cloned into every module's options, so diagnostics from module loading reach `tern check`.
#[derive(Clone, Default)]
pub struct Diagnostics {
    inner: Arc<Mutex<Vec<Diagnostic>>>,
    lines: Arc<HashMap<String, usize>>,
}

impl Diagnostics {
    pub fn new(lines: HashMap<String, usize>) -> Self {
        Diagnostics {
            inner: Default::default(),
            lines: Arc::new(lines),
        }
    }

    /// The line of `key`, else of the closest enclosing entry that is in the file (a
    /// missing field is reported at its table).
    pub fn line_of(&self, key: &str) -> Option<usize> {
        let mut key = key;
        loop {
            if let Some(line) = self.lines.get(key) {
                return Some(*line);
            }
            let cut = key.rfind(['.', '['])?;
            key = &key[..cut];
        }
    }

    pub fn push(&self, severity: Severity, key: &str, message: impl Into<String>) {
        let diagnostic = Diagnostic {
            severity,
            key: key.to_string(),
            line: self.line_of(key),
            message: message.into(),
        };
        match severity {
            Severity::Warning => tracing::warn!("config {diagnostic}"),
            Severity::Error => tracing::error!("config {diagnostic}"),
        }
        let mut all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Reloads and per-host module instances read the same keys again.
        if !all.contains(&diagnostic) {
            all.push(diagnostic);
        }
    }

    pub fn warn(&self, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, key, message);
    }

    pub fn error(&self, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, key, message);
    }

    pub fn all(&self) -> Vec<Diagnostic> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn has_errors(&self) -> bool {
        self.all().iter().any(|d| d.severity == Severity::Error)
    }
}

/// Maps every dotted key path in `source` to its 1-based line (`a.b[2].c`).
pub fn key_lines(source: &str) -> HashMap<String, usize> {
    use toml::de::{DeTable, DeValue};
    let mut lines = HashMap::new();
    let Ok(root) = DeTable::parse(source) else {
        return lines;
    };
    let line_at = |offset: usize| source[..offset.min(source.len())].matches('\n').count() + 1;

    fn walk(
        value: &DeValue<'_>,
        path: &str,
        offset_line: &dyn Fn(usize) -> usize,
        lines: &mut HashMap<String, usize>,
    ) {
        match value {
            DeValue::Table(table) => {
                for (key, child) in table.iter() {
                    let child_path = if path.is_empty() {
                        key.get_ref().to_string()
                    } else {
                        format!("{path}.{}", key.get_ref())
                    };
                    lines
                        .entry(child_path.clone())
                        .or_insert_with(|| offset_line(key.span().start));
                    walk(child.get_ref(), &child_path, offset_line, lines);
                }
            }
            DeValue::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{index}]");
                    lines
                        .entry(item_path.clone())
                        .or_insert_with(|| offset_line(item.span().start));
                    walk(item.get_ref(), &item_path, offset_line, lines);
                }
            }
            _ => {}
        }
    }
    for (key, child) in root.get_ref().iter() {
        let path = key.get_ref().to_string();
        lines.insert(path.clone(), line_at(key.span().start));
        walk(child.get_ref(), &path, &line_at, &mut lines);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_nested_keys() {
        let src = "a = 1\n[modules.ping]\ninterval = 'x'\n[[services]]\ntype = 'stun'\n[[services]]\nport = 3\n";
        let lines = key_lines(src);
        assert_eq!(lines.get("a"), Some(&1));
        assert_eq!(lines.get("modules.ping.interval"), Some(&3));
        assert_eq!(lines.get("services[0].type"), Some(&5));
        assert_eq!(lines.get("services[1].port"), Some(&7));
    }
}
