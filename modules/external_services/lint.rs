//! Warnings for risky but valid setups, shown at start and by `tern check`.

use std::net::IpAddr;
use std::time::Duration;

use super::service::{CredentialSource, ExternalService};
use crate::config::Diagnostics;

/// Lints the configured services. `refresh_at` is the fraction of the credential lifetime
/// after which pushes refresh credentials.
pub fn lint(services: &[ExternalService], refresh_at: f64, diagnostics: &Diagnostics) {
    for service in services {
        let key = |field: &str| format!("{}.{field}", service.origin);
        let host = service.host.as_str();
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                if ip.is_loopback() || ip.is_unspecified() {
                    diagnostics.warn(&key("host"), format!("{host} is a loopback address: clients on other machines cannot reach it"));
                } else if is_private(&ip) {
                    diagnostics.warn(&key("host"), format!("{host} is a private address: clients outside this network cannot reach it"));
                }
                if matches!(service.kind.as_str(), "turns" | "stuns") {
                    diagnostics.warn(
                        &key("host"),
                        format!("{} with an IP address: clients validate the TLS certificate against a host name", service.kind),
                    );
                }
            }
            Err(_) => {
                if host == "localhost" || host.ends_with(".localhost") || host.ends_with(".local") {
                    diagnostics.warn(&key("host"), format!("{host} only resolves locally: clients on other machines cannot reach it"));
                }
            }
        }
        if matches!(service.kind.as_str(), "turns" | "stuns")
            && service.transport.as_deref() == Some("udp")
        {
            diagnostics.warn(
                &key("transport"),
                format!(
                    "{} over udp would need DTLS, which clients do not use; use tcp",
                    service.kind
                ),
            );
        }
        if let CredentialSource::TurnRest(rest) = &service.source {
            let margin = rest.ttl.mul_f64(1.0 - refresh_at);
            if margin < Duration::from_secs(30) {
                diagnostics.warn(
                    &key("ttl"),
                    format!(
                        "credentials live {} s and are refreshed at {:.0}% of that: clients get {} s to receive the refresh",
                        rest.ttl.as_secs(),
                        refresh_at * 100.0,
                        margin.as_secs()
                    ),
                );
            }
        }
    }
}

fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_link_local()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(kind: &str, host: &str, transport: &str) -> ExternalService {
        let mut s = ExternalService::new(kind, host);
        s.transport = Some(transport.into());
        s.port = Some(3478);
        s.origin = "modules.external_services.services[0]".into();
        s
    }

    #[test]
    fn risky_setups_are_flagged() {
        let diagnostics = Diagnostics::default();
        lint(
            &[
                svc("stun", "127.0.0.1", "udp"),
                svc("turn", "192.168.1.5", "udp"),
                svc("turns", "203.0.113.7", "tcp"),
                svc("stuns", "turn.example.org", "udp"),
                svc("turn", "localhost", "udp"),
                svc("turn", "fd00::1", "udp"),
            ],
            0.8,
            &diagnostics,
        );
        let text: Vec<String> = diagnostics.all().iter().map(|d| d.to_string()).collect();
        for needle in [
            "loopback",
            "private address",
            "IP address",
            "DTLS",
            "only resolves locally",
        ] {
            assert!(
                text.iter().any(|t| t.contains(needle)),
                "{needle}: {text:?}"
            );
        }
        assert_eq!(
            text.iter()
                .filter(|t| t.contains("private address"))
                .count(),
            2
        );
        let clean = Diagnostics::default();
        lint(
            &[
                svc("turn", "turn.example.org", "udp"),
                svc("turns", "turn.example.org", "tcp"),
            ],
            0.8,
            &clean,
        );
        assert!(clean.all().is_empty());
    }
}
