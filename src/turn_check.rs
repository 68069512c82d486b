//! `tern check turn`: does each configured STUN/TURN service work with the credentials
//! Tern mints? A STUN Binding for stun services and a TURN Allocate (then release) for
//! turn services, as the clients would do (Prosody has `prosodyctl check turn`).

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::modules::external_services::{self, ExternalService};
use crate::stun::{stun_binding, turn_allocate, CheckOutcome, CheckTarget};

/// One line of the report.
pub struct TurnCheckLine {
    pub host: String,
    pub service: String,
    pub outcome: Result<CheckOutcome, String>,
}

impl TurnCheckLine {
    pub fn passed(&self) -> bool {
        matches!(&self.outcome, Ok(outcome) if outcome.is_ok())
    }
}

impl std::fmt::Display for TurnCheckLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(outcome) => write!(f, "{}: {}: {outcome}", self.host, self.service),
            Err(skipped) => write!(f, "{}: {}: skipped: {skipped}", self.host, self.service),
        }
    }
}

/// Checks every STUN/TURN service of every host with external_services enabled. The
/// services are computed as for a user `tern-check@HOST`, credentials included.
pub async fn check_turn(config: &Config, timeout: Duration) -> anyhow::Result<Vec<TurnCheckLine>> {
    let server = crate::server::Server::builder(config.clone())
        .storage(Arc::new(crate::storage::memory::MemoryStorage::default()))
        .generate_certificates(false)
        .build()?;
    server.load_modules()?;
    let mut lines = Vec::new();
    for host_config in &config.hosts {
        let Some(host) = server.host(&host_config.name) else {
            continue;
        };
        if !crate::module::is_loaded(&host, external_services::MODULE.name) {
            continue;
        }
        let probe = jid::BareJid::new(&format!("tern-check@{}", host.name))?;
        let services = external_services::preview(&host, &probe, None).await?;
        for service in services {
            lines.push(TurnCheckLine {
                host: host.name.clone(),
                service: label(&service),
                outcome: check_one(&service, timeout).await,
            });
        }
        crate::module::unload_all(&host);
    }
    Ok(lines)
}

async fn check_one(service: &ExternalService, timeout: Duration) -> Result<CheckOutcome, String> {
    let target = CheckTarget::from_service(service)?;
    Ok(match service.kind.as_str() {
        "turn" => turn_allocate(&target, timeout).await,
        _ => stun_binding(&target, timeout).await,
    })
}

fn label(service: &ExternalService) -> String {
    format!(
        "{} {}:{} {}",
        service.kind,
        service.host,
        service
            .port
            .map(|p| p.to_string())
            .unwrap_or_else(|| "?".into()),
        service.transport.as_deref().unwrap_or("?")
    )
}
