//! A config file that holds a secret (a TURN shared secret mints credentials for anyone
//! who knows it) should not be readable by every local user: the warning names the key
//! and its line, like every other config diagnostic. Group-readable stays quiet: packages
//! ship configs as 640 owned by the server's group.

use std::path::Path;

use toml::{Table, Value};

use super::Diagnostics;

/// Warns once per secret when `path` is readable by others.
pub(super) fn warn_if_world_readable(path: &Path, root: &Table, diagnostics: &Diagnostics) {
    let Some(mode) = file_mode(path) else {
        return;
    };
    if mode & 0o004 == 0 {
        return;
    }
    let mut keys = Vec::new();
    secret_keys(root, "", &mut keys);
    for key in keys {
        diagnostics.warn(
            &key,
            format!(
                "a secret in a file any local user can read (mode {mode:03o}): chmod o-r {}",
                path.display()
            ),
        );
    }
}

#[cfg(unix)]
fn file_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|meta| meta.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn file_mode(_path: &Path) -> Option<u32> {
    None
}

/// Dotted paths of the non-empty values under keys named `secret` or `*_secret`, in tables
/// and arrays of tables at any depth.
fn secret_keys(table: &Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let named_secret = key == "secret" || key.ends_with("_secret");
        match value {
            Value::String(s) if named_secret && !s.is_empty() => out.push(path),
            Value::Array(items) if named_secret && !items.is_empty() => out.push(path),
            Value::Table(inner) => secret_keys(inner, &path, out),
            Value::Array(items) => {
                for item in items {
                    if let Value::Table(inner) = item {
                        secret_keys(inner, &path, out);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::config::{Config, Severity};

    const WITH_SECRET: &str = "[modules.external_services]\nhost = \"turn.example.org\"\nsecret = \"s3cret\"\n\n[[modules.external_services.services]]\ntype = \"turn\"\nhost = \"a.example.org\"\nsecret = \"other\"\n";

    fn warnings(source: &str, mode: u32) -> Vec<(String, Option<usize>)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tern.toml");
        std::fs::write(&path, source).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let config = Config::load(&path).expect("load");
        config
            .diagnostics
            .all()
            .into_iter()
            .filter(|d| d.severity == Severity::Warning && d.message.contains("secret in a file"))
            .map(|d| (d.key, d.line))
            .collect()
    }

    #[test]
    fn a_world_readable_config_with_secrets_warns_at_each_secret() {
        let found = warnings(WITH_SECRET, 0o644);
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "modules.external_services.secret",
                "modules.external_services.services.secret"
            ]
        );
        assert_eq!(found[0].1, Some(3), "the warning names the secret's line");
    }

    #[test]
    fn owner_or_group_only_or_no_secret_stays_quiet() {
        assert!(warnings(WITH_SECRET, 0o600).is_empty());
        assert!(warnings(WITH_SECRET, 0o640).is_empty());
        assert!(warnings("data_dir = \"data\"\n", 0o644).is_empty());
        assert!(warnings("[modules.external_services]\nsecret = \"\"\n", 0o644).is_empty());
    }
}
