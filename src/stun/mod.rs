//! A small STUN/TURN client to check the relays we advertise over XEP-0215.
//!
//! [`stun_binding`] sends a Binding request (RFC 8489) and reports the mapped address;
//! [`turn_allocate`] creates a TURN allocation (RFC 8656) with the long-term credential
//! mechanism (a first request without credentials, a 401 with REALM and NONCE, then the
//! request again with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY), reports the relayed
//! address and lifetime, and releases the allocation with a Refresh of lifetime 0.
//!
//! Both run over UDP (retransmitted with a doubling timeout, RFC 8489 §6.2.1) or TCP
//! (messages back to back on the stream), resolve the host with the system resolver and
//! try the next address when one refuses the connection. The whole check, resolution
//! included, is bounded by the timeout given. Nothing the network sends can make them
//! panic: bad answers become [`CheckOutcome::Failed`] or are ignored.
//!
//! The codec is our own ([`message`]); TLS transports (`stuns`/`turns`) are not checked.

mod client;
pub mod message;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::modules::external_services::ExternalService;

/// How to reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            other => Err(format!("unknown transport {other:?} (expected udp or tcp)")),
        }
    }
}

/// The server to check.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckTarget {
    /// A host name, or an IP literal (IPv6 with or without brackets).
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    /// Username and password for the long-term credential mechanism (TURN).
    pub credentials: Option<(String, String)>,
}

impl CheckTarget {
    pub fn new(host: impl Into<String>, port: u16, transport: Transport) -> Self {
        CheckTarget {
            host: host.into(),
            port,
            transport,
            credentials: None,
        }
    }

    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((username.into(), password.into()));
        self
    }

    /// The target for an advertised service, with the credentials it carries (mint them
    /// first). Port defaults to 3478, transport to udp. `stuns`/`turns` (TLS) and
    /// non-STUN types are refused with a reason.
    pub fn from_service(service: &ExternalService) -> Result<Self, String> {
        match service.kind.as_str() {
            "stun" | "turn" => {}
            "stuns" | "turns" => {
                return Err(format!(
                    "{} over TLS cannot be checked (only stun and turn)",
                    service.kind
                ))
            }
            other => return Err(format!("{other:?} is not a STUN or TURN service")),
        }
        let transport = match service.transport.as_deref() {
            None => Transport::Udp,
            Some(t) => t.parse()?,
        };
        let mut target = CheckTarget::new(
            service.host.clone(),
            service.port.unwrap_or(3478),
            transport,
        );
        if let (Some(username), Some(password)) = (&service.username, &service.password) {
            target = target.with_credentials(username.clone(), password.clone());
        }
        Ok(target)
    }
}

impl fmt::Debug for CheckTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("CheckTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<password>")),
            )
            .finish()
    }
}

/// What a check found, in words for an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// e.g. `binding: mapped 127.0.0.1:54321` or
    /// `allocated relay 127.0.0.1:49160, lifetime 600 s, mapped 127.0.0.1:54321; released`.
    Ok { detail: String },
    /// e.g. `401 Unauthorized (wrong password or expired credentials)`,
    /// `timeout after 5s (...)`, `connection refused (127.0.0.1:3478/tcp)`.
    Failed { reason: String },
}

impl CheckOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckOutcome::Ok { .. })
    }
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckOutcome::Ok { detail } => write!(f, "ok: {detail}"),
            CheckOutcome::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// STUN Binding request; reports the XOR-MAPPED-ADDRESS. Credentials, if given, are
/// used only when the server answers 401.
pub async fn stun_binding(target: &CheckTarget, timeout: Duration) -> CheckOutcome {
    client::run(target, timeout, client::Check::Binding).await
}

/// TURN Allocate (REQUESTED-TRANSPORT UDP) with the long-term credential mechanism;
/// reports XOR-RELAYED-ADDRESS and LIFETIME, then releases the allocation (Refresh with
/// LIFETIME 0). A success without authentication is reported as an open relay.
pub async fn turn_allocate(target: &CheckTarget, timeout: Duration) -> CheckOutcome {
    client::run(target, timeout, client::Check::Allocate).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_from_service() {
        let service = ExternalService {
            kind: "turn".into(),
            host: "turn.example.org".into(),
            port: Some(3479),
            transport: Some("tcp".into()),
            username: Some("1700000000:x".into()),
            password: Some("secret".into()),
            ..Default::default()
        };
        let target = CheckTarget::from_service(&service).expect("target");
        assert_eq!(
            target,
            CheckTarget::new("turn.example.org", 3479, Transport::Tcp)
                .with_credentials("1700000000:x", "secret")
        );
        assert!(!format!("{target:?}").contains("secret"));
        let stun = ExternalService {
            kind: "stun".into(),
            host: "::1".into(),
            ..Default::default()
        };
        assert_eq!(
            CheckTarget::from_service(&stun).expect("target"),
            CheckTarget::new("::1", 3478, Transport::Udp)
        );
        let turns = ExternalService {
            kind: "turns".into(),
            ..service.clone()
        };
        assert!(CheckTarget::from_service(&turns).is_err());
        let odd = ExternalService {
            transport: Some("sctp".into()),
            ..service
        };
        assert!(CheckTarget::from_service(&odd).is_err());
    }

    /// The checks can run on a multi-threaded runtime (`tokio::spawn`).
    #[test]
    fn futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let target = CheckTarget::new("127.0.0.1", 3478, Transport::Udp);
        assert_send(&stun_binding(&target, Duration::from_secs(1)));
        assert_send(&turn_allocate(&target, Duration::from_secs(1)));
    }

    #[test]
    fn outcome_display() {
        let ok = CheckOutcome::Ok {
            detail: "binding: mapped 127.0.0.1:1".into(),
        };
        assert!(ok.is_ok());
        assert_eq!(ok.to_string(), "ok: binding: mapped 127.0.0.1:1");
        let failed = CheckOutcome::Failed {
            reason: "connection refused".into(),
        };
        assert!(!failed.is_ok());
        assert_eq!(failed.to_string(), "failed: connection refused");
        assert_eq!("TCP".parse::<Transport>(), Ok(Transport::Tcp));
    }
}
