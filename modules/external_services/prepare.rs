//! "Prepare": the one validation step every service passes, whether it came from the
//! config, from another module's item, or from an event handler (XEP-0215.md).
//!
//! A missing `type` or `host` drops the entry (error); a missing port or transport is a
//! warning (Conversations, Dino and Psi drop such services); a field of the wrong type is
//! ignored with a warning naming the field.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use toml::{Table, Value};

use super::service::{
    default_port, default_transport, CredentialSource, Delivery, ExternalService, TurnRest,
    UserPart,
};
use crate::config::{options::describe, Diagnostics};

/// Module-wide defaults applied to every configured service.
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// For `stuns` and `turns`.
    pub tls_port: Option<u16>,
    pub secrets: Arc<Vec<String>>,
    pub ttl: Duration,
    pub user_part: UserPart,
}

/// Where prepare reports to: config diagnostics (with lines) or the log.
pub trait Report {
    fn warn(&self, field: &str, message: String);
    fn error(&self, field: &str, message: String);
}

/// Reports against config keys, e.g. `modules.external_services.services[1].port`.
pub struct ConfigReport<'a> {
    pub diagnostics: &'a Diagnostics,
    pub path: String,
}

impl Report for ConfigReport<'_> {
    fn warn(&self, field: &str, message: String) {
        self.diagnostics.warn(&join(&self.path, field), message);
    }
    fn error(&self, field: &str, message: String) {
        self.diagnostics.error(&join(&self.path, field), message);
    }
}

fn join(path: &str, field: &str) -> String {
    if field.is_empty() {
        path.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Reports to the log (items and event handlers have no config line).
pub struct LogReport<'a> {
    pub origin: &'a str,
}

impl Report for LogReport<'_> {
    fn warn(&self, field: &str, message: String) {
        tracing::warn!(origin = self.origin, field, "external service: {message}");
    }
    fn error(&self, field: &str, message: String) {
        tracing::error!(origin = self.origin, field, "external service: {message}");
    }
}

const KNOWN_FIELDS: &[&str] = &[
    "type",
    "host",
    "port",
    "transport",
    "username",
    "password",
    "restricted",
    "ttl",
    "expires",
    "secret",
    "algorithm",
    "name",
    "info",
    "credentials",
    "user",
    "provider",
];

/// Builds a service from one `[[services]]` table.
pub fn from_table(
    table: &Table,
    defaults: &Defaults,
    origin: &str,
    report: &dyn Report,
) -> Option<ExternalService> {
    for key in table.keys() {
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            report.warn(key, "unknown field; ignored".to_string());
        }
    }
    let string = |field: &str| -> Option<String> {
        match table.get(field)? {
            Value::String(s) => Some(s.clone()),
            other => {
                report.warn(
                    field,
                    format!("expected a string, found {}; ignored", describe(other)),
                );
                None
            }
        }
    };
    let mut service = ExternalService {
        kind: string("type").unwrap_or_default().into(),
        host: string("host")
            .or_else(|| defaults.host.clone())
            .unwrap_or_default()
            .into(),
        origin: origin.into(),
        ..Default::default()
    };
    match table.get("port") {
        None => {
            service.port = if matches!(service.kind.as_str(), "stuns" | "turns") {
                defaults.tls_port
            } else {
                defaults.port
            }
        }
        Some(Value::Integer(p)) if (1..=65535).contains(p) => service.port = u16::try_from(*p).ok(),
        Some(other) => report.warn(
            "port",
            format!(
                "expected an integer 1..=65535, found {}; ignored",
                describe(other)
            ),
        ),
    }
    service.transport = string("transport").map(Into::into);
    service.username = string("username");
    service.password = string("password");
    match table.get("restricted") {
        None => {}
        Some(Value::Boolean(b)) => service.restricted = *b,
        Some(other) => report.warn(
            "restricted",
            format!("expected true or false, found {}; ignored", describe(other)),
        ),
    }
    let mut ttl = defaults.ttl;
    match table.get("ttl") {
        None => {}
        Some(Value::Integer(t)) if (1..=i64::from(u32::MAX)).contains(t) => {
            ttl = Duration::from_secs(*t as u64)
        }
        Some(other) => report.warn(
            "ttl",
            format!(
                "expected seconds (a positive integer), found {}; ignored",
                describe(other)
            ),
        ),
    }
    match table.get("expires") {
        None => {}
        Some(Value::Datetime(d)) => match parse_timestamp(&d.to_string()) {
            Some(t) => service.expires = Some(t),
            None => report.warn(
                "expires",
                format!("expected a UTC date-time, found {d}; ignored"),
            ),
        },
        Some(Value::String(s)) => match parse_timestamp(s) {
            Some(t) => service.expires = Some(t),
            None => report.warn(
                "expires",
                format!("expected a UTC date-time like 2030-01-01T00:00:00Z, found {s:?}; ignored"),
            ),
        },
        Some(other) => report.warn(
            "expires",
            format!(
                "expected a UTC date-time, found {}; ignored",
                describe(other)
            ),
        ),
    }
    match table.get("name") {
        None => {}
        Some(Value::String(s)) => {
            service.names.insert(String::new(), s.clone());
        }
        Some(Value::Table(langs)) => {
            for (lang, value) in langs {
                match value {
                    Value::String(s) => {
                        service.names.insert(lang.clone(), s.clone());
                    }
                    other => report.warn(
                        &format!("name.{lang}"),
                        format!("expected a string, found {}; ignored", describe(other)),
                    ),
                }
            }
        }
        Some(other) => report.warn(
            "name",
            format!(
                "expected a string or a table of language = name, found {}; ignored",
                describe(other)
            ),
        ),
    }
    match table.get("info") {
        None => {}
        Some(Value::Table(fields)) => {
            for (var, value) in fields {
                let values = match value {
                    Value::String(s) => vec![s.clone()],
                    Value::Integer(i) => vec![i.to_string()],
                    Value::Boolean(b) => vec![if *b { "true".into() } else { "false".into() }],
                    Value::Array(items) => items
                        .iter()
                        .filter_map(|i| match i {
                            Value::String(s) => Some(s.clone()),
                            other => {
                                report.warn(
                                    &format!("info.{var}"),
                                    format!("expected strings, found {}; ignored", describe(other)),
                                );
                                None
                            }
                        })
                        .collect(),
                    other => {
                        report.warn(
                            &format!("info.{var}"),
                            format!(
                                "expected a string or a list of strings, found {}; ignored",
                                describe(other)
                            ),
                        );
                        continue;
                    }
                };
                service.extended.insert(var.clone(), values);
            }
        }
        Some(other) => report.warn(
            "info",
            format!(
                "expected a table of field = value, found {}; ignored",
                describe(other)
            ),
        ),
    }
    match string("credentials").as_deref() {
        None | Some("inline") => {}
        Some("on_request") => service.delivery = Delivery::OnRequest,
        Some(other) => report.warn(
            "credentials",
            format!("expected \"inline\" or \"on_request\", found {other:?}; ignored"),
        ),
    }
    let user_part = match table.get("user") {
        None => defaults.user_part.clone(),
        Some(value) => parse_user_part(value).unwrap_or_else(|message| {
            report.warn("user", message);
            defaults.user_part.clone()
        }),
    };
    if let Some(algorithm) = string("algorithm") {
        if algorithm != "turn" {
            report.warn(
                "algorithm",
                format!("unknown algorithm {algorithm:?} (only \"turn\" exists); using \"turn\""),
            );
        }
    }
    let secrets = match table.get("secret") {
        None | Some(Value::Boolean(false)) => None,
        Some(Value::Boolean(true)) => {
            if defaults.secrets.is_empty() {
                report.error(
                    "secret",
                    "`secret = true` but the module has no `secret`; no credentials".to_string(),
                );
                None
            } else {
                Some(defaults.secrets.clone())
            }
        }
        Some(Value::String(s)) if !s.is_empty() => Some(Arc::new(vec![s.clone()])),
        Some(Value::Array(items)) => {
            let list: Vec<String> = items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect();
            if list.is_empty() {
                report.warn(
                    "secret",
                    "expected a non-empty list of strings; ignored".to_string(),
                );
                None
            } else {
                Some(Arc::new(list))
            }
        }
        Some(other) => {
            report.warn(
                "secret",
                format!(
                    "expected true, a string or a list of strings, found {}; ignored",
                    describe(other)
                ),
            );
            None
        }
    };
    let is_turn = matches!(service.kind.as_str(), "turn" | "turns");
    let secrets = secrets.or_else(|| {
        // A TURN service without credentials of its own uses the module secret.
        let implicit = is_turn
            && service.username.is_none()
            && !defaults.secrets.is_empty()
            && table.get("secret").is_none();
        implicit.then(|| defaults.secrets.clone())
    });
    if let Some(secrets) = secrets {
        if !is_turn {
            report.warn(
                "secret",
                format!(
                    "TURN REST credentials apply to turn and turns, not {:?}; ignored",
                    service.kind
                ),
            );
        } else {
            service.source = CredentialSource::TurnRest(TurnRest {
                secrets,
                ttl,
                user_part,
            });
        }
    }
    if let Some(provider) = string("provider") {
        service.source = CredentialSource::Provider(provider);
    }
    if service.source != CredentialSource::Static
        || (service.username.is_some() && service.password.is_some())
    {
        service.restricted = true;
    }
    prepare(service, report)
}

fn parse_user_part(value: &Value) -> Result<UserPart, String> {
    match value {
        Value::String(s) => match s.as_str() {
            "none" => Ok(UserPart::None),
            "localpart" => Ok(UserPart::Localpart),
            "hash" => Ok(UserPart::Hash),
            other => Err(format!(
                "expected \"hash\", \"localpart\", \"none\" or {{ fixed = \"...\" }}, found {other:?}; ignored"
            )),
        },
        Value::Table(t) => match t.get("fixed") {
            Some(Value::String(s)) if !s.contains(':') => Ok(UserPart::Fixed(s.clone())),
            Some(Value::String(_)) => Err("a fixed user part cannot contain ':'; ignored".to_string()),
            _ => Err("expected { fixed = \"...\" }; ignored".to_string()),
        },
        other => Err(format!("expected a string or {{ fixed = \"...\" }}, found {}; ignored", describe(other))),
    }
}

/// Parses the module's `user` option.
pub fn user_part_option(value: Option<&Value>, report: &dyn Report) -> UserPart {
    match value {
        None => UserPart::default(),
        Some(value) => parse_user_part(value).unwrap_or_else(|message| {
            report.warn("user", message);
            UserPart::default()
        }),
    }
}

/// The validation step. Returns `None` when the entry cannot be served.
pub fn prepare(mut service: ExternalService, report: &dyn Report) -> Option<ExternalService> {
    if service.kind.is_empty() {
        report.error("type", "missing `type`; service dropped".to_string());
        return None;
    }
    if !is_ncname(&service.kind) {
        report.error(
            "type",
            format!(
                "{:?} is not a valid type (an XML NCName); service dropped",
                service.kind
            ),
        );
        return None;
    }
    if service.host.is_empty() {
        report.error(
            "host",
            "missing `host` (and no module-wide `host`); service dropped".to_string(),
        );
        return None;
    }
    // IPv6 literals go without brackets (XEP-0215 §2).
    if service.host.starts_with('[') && service.host.ends_with(']') {
        service.host = service.host[1..service.host.len() - 1].into();
    }
    if service.port.is_none() {
        service.port = default_port(&service.kind);
        if service.port.is_none() {
            report.warn("port", format!("no port for {} service {}; Conversations, Dino and Psi ignore services without one", service.kind, service.host));
        }
    }
    match service.transport.as_deref() {
        Some("udp") | Some("tcp") => {}
        Some(other) => {
            report.warn(
                "transport",
                format!("transport must be \"udp\" or \"tcp\", found {other:?}; ignored"),
            );
            service.transport = None;
        }
        None => {}
    }
    if service.transport.is_none() {
        service.transport = default_transport(&service.kind).map(Into::into);
        if service.transport.is_none() {
            report.warn(
                "transport",
                format!(
                    "no transport for {} service {}; Conversations ignores services without one",
                    service.kind, service.host
                ),
            );
        }
    }
    if service.username.is_some() != service.password.is_some() && !service.mints_credentials() {
        report.warn(
            "password",
            "a username without a password (or the reverse) is incomplete".to_string(),
        );
    }
    Some(service)
}

fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// XEP-0082 date-time: `YYYY-MM-DDThh:mm:ss[.sss](Z|±hh:mm)`.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let parsed = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    let secs = parsed.timestamp();
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// XEP-0082 UTC, whole seconds: `YYYY-MM-DDThh:mm:ssZ`.
pub fn format_timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Not `format("%Y-…")`: that parses the pattern on every call, and every TURN
    // service of every reply carries a timestamp (2% of a request's CPU in perf).
    chrono::DateTime::<chrono::Utc>::from_timestamp(i64::try_from(secs).unwrap_or(0), 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Collects the `[[services]]` list of the module options.
pub fn services_from_list(
    list: &[Value],
    defaults: &Defaults,
    path: &str,
    diagnostics: &Diagnostics,
) -> Vec<ExternalService> {
    let mut out = Vec::new();
    for (index, entry) in list.iter().enumerate() {
        let entry_path = format!("{path}[{index}]");
        let report = ConfigReport {
            diagnostics,
            path: entry_path.clone(),
        };
        match entry {
            Value::Table(table) => {
                if let Some(service) = from_table(table, defaults, &entry_path, &report) {
                    out.push(service);
                }
            }
            other => report.error(
                "",
                format!(
                    "expected a table describing a service, found {}; ignored",
                    describe(other)
                ),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(std::sync::Mutex<Vec<String>>);
    impl Report for Collect {
        fn warn(&self, field: &str, message: String) {
            self.0
                .lock()
                .expect("lock")
                .push(format!("warn {field}: {message}"));
        }
        fn error(&self, field: &str, message: String) {
            self.0
                .lock()
                .expect("lock")
                .push(format!("error {field}: {message}"));
        }
    }

    fn table(src: &str) -> Table {
        src.parse().expect("toml")
    }

    fn defaults() -> Defaults {
        Defaults {
            host: Some("turn.example.org".into()),
            port: None,
            tls_port: None,
            secrets: Arc::new(vec!["s1".into(), "s0".into()]),
            ttl: Duration::from_secs(86400),
            user_part: UserPart::Hash,
        }
    }

    #[test]
    fn defaults_by_type_and_module_host() {
        let report = Collect(Default::default());
        let s = from_table(
            &table("type = 'turns'"),
            &defaults(),
            "services[0]",
            &report,
        )
        .expect("kept");
        assert_eq!(
            (s.host.as_str(), s.port, s.transport.as_deref()),
            ("turn.example.org", Some(5349), Some("tcp"))
        );
        assert!(s.restricted, "turn with the module secret is restricted");
        assert!(matches!(s.source, CredentialSource::TurnRest(ref t) if t.secrets[0] == "s1"));
        let s =
            from_table(&table("type = 'stun'"), &defaults(), "services[1]", &report).expect("kept");
        assert_eq!(
            (s.port, s.transport.as_deref(), s.restricted),
            (Some(3478), Some("udp"), false)
        );
        assert!(report.0.lock().expect("lock").is_empty());
    }

    #[test]
    fn missing_type_drops_and_wrong_fields_warn() {
        let report = Collect(Default::default());
        assert!(from_table(&table("host = 'x'"), &defaults(), "s", &report).is_none());
        let s = from_table(
            &table("type = 'ftp'\nport = 'abc'\ntransport = 'sctp'\nrestricted = 'yes'\nbogus = 1"),
            &defaults(),
            "s",
            &report,
        )
        .expect("kept");
        assert_eq!(
            (s.port, s.transport.clone(), s.restricted),
            (None, None, false)
        );
        let messages = report.0.lock().expect("lock").clone();
        for needle in [
            "error type",
            "warn port: expected an integer",
            "warn transport",
            "warn restricted",
            "warn bogus",
            "warn port: no port",
        ] {
            assert!(
                messages.iter().any(|m| m.starts_with(needle)),
                "{needle} not in {messages:?}"
            );
        }
    }

    #[test]
    fn static_credentials_and_names_and_info() {
        let report = Collect(Default::default());
        let s = from_table(
            &table("type = 'turn'\nhost = 'h'\nusername = 'u'\npassword = 'p'\nname = { en = 'Relay', de = 'Relais' }\ninfo = { region = 'eu', tags = ['a', 'b'] }\nuser = { fixed = 'tern' }"),
            &defaults(),
            "s",
            &report,
        )
        .expect("kept");
        assert!(s.restricted);
        assert_eq!(s.source, CredentialSource::Static);
        assert_eq!(s.name_for(Some("de-AT")), Some("Relais"));
        assert_eq!(s.name_for(Some("fr")), Some("Relay"));
        assert_eq!(
            s.extended.get("tags"),
            Some(&vec!["a".to_string(), "b".to_string()])
        );
    }

    #[test]
    fn timestamps() {
        let t = parse_timestamp("2030-01-02T03:04:05Z").expect("parses");
        assert_eq!(format_timestamp(t), "2030-01-02T03:04:05Z");
        let t = parse_timestamp("2030-01-02T03:04:05.250+01:00").expect("parses");
        assert_eq!(format_timestamp(t), "2030-01-02T02:04:05Z");
        assert!(parse_timestamp("yesterday").is_none());
    }
}
