//! `turn_external`: STUN/TURN entries for one TURN server (e.g. coturn with
//! `use-auth-secret`) from a few options, built only on external_services' item API, as
//! Prosody's module of the same name. Unlike Prosody's, `turns` gets credentials too.
//!
//! ```toml
//! modules_enabled = [..., "external_services", "turn_external"]
//! [modules.turn_external]
//! secret = "the coturn static-auth-secret"
//! host = "turn.example.org"
//! port = 3478        # stun and turn (default 3478)
//! tls_port = 5349    # adds turns over tcp (default: none)
//! tcp = true         # adds turn over tcp (default: false)
//! ttl = 86400        # credential lifetime in seconds
//! user = "hash"      # TURN username part: "hash" (default), "localpart", "none", { fixed = ".." }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::*;
use crate::modules::external_services::prepare::{self, ConfigReport};
use crate::modules::external_services::{CredentialSource, ExternalService, TurnRest};

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "turn_external",
    depends: &["external_services"],
    load,
};

/// The services the options describe.
pub fn services_from(options: &ModuleOptions) -> Vec<ExternalService> {
    let report = ConfigReport {
        diagnostics: options.diagnostics(),
        path: options.path("").trim_end_matches('.').to_string(),
    };
    let Some(host) = options.string("host") else {
        options.diagnostics().error(
            &options.path("host"),
            "turn_external needs `host`; no services",
        );
        return Vec::new();
    };
    let secret = options.string("secret");
    if secret.is_none() {
        options.diagnostics().warn(
            &options.path("secret"),
            "no `secret`: only STUN is offered (TURN needs credentials)",
        );
    }
    let port = options
        .integer("port", 1..=65535)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(3478);
    let tls_port = options
        .integer("tls_port", 1..=65535)
        .and_then(|p| u16::try_from(p).ok());
    let tcp = options.bool("tcp").unwrap_or(false);
    let ttl = Duration::from_secs(options.integer("ttl", 60..=30 * 86400).unwrap_or(86400) as u64);
    let user_part = prepare::user_part_option(options.raw("user"), &report);
    let rest = secret.map(|secret| TurnRest {
        secrets: Arc::new(vec![secret]),
        ttl,
        user_part,
    });
    let make = |kind: &str, port: u16, transport: &str| {
        let mut service = ExternalService::new(kind, &host);
        service.port = Some(port);
        service.transport = Some(transport.into());
        service.origin = format!("turn_external ({kind}/{transport})").into();
        if kind != "stun" {
            if let Some(rest) = &rest {
                service.source = CredentialSource::TurnRest(rest.clone());
                service.restricted = true;
            }
        }
        service
    };
    let mut services = vec![make("stun", port, "udp")];
    if rest.is_some() {
        services.push(make("turn", port, "udp"));
        if tcp {
            services.push(make("turn", port, "tcp"));
        }
        if let Some(tls_port) = tls_port {
            services.push(make("turns", tls_port, "tcp"));
        }
    }
    services
}

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let services = services_from(ctx.options());
    let ids: Vec<ItemId> = services
        .into_iter()
        .map(|s| ctx.add_item(Arc::new(s)))
        .collect();
    let current = Arc::new(Mutex::new(ids));
    let name = ctx.name().to_string();
    ctx.hook::<ConfigReloaded, _>(10, move |event| {
        let current = current.clone();
        let name = name.clone();
        Box::pin(async move {
            let services = services_from(&event.host.module_options(MODULE.name));
            let old: Vec<ItemId> =
                std::mem::take(&mut *current.lock().unwrap_or_else(|p| p.into_inner()));
            for id in old {
                event.host.remove_item::<ExternalService>(id);
            }
            let new: Vec<ItemId> = services
                .into_iter()
                .map(|s| event.host.add_item(&name, Arc::new(s)))
                .collect();
            *current.lock().unwrap_or_else(|p| p.into_inner()) = new;
            Ok(Flow::Continue)
        })
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use compact_str::CompactString;

    #[test]
    fn derives_stun_turn_and_turns_with_credentials() {
        let table: toml::Table =
            "secret = 's'\nhost = 'turn.example.org'\ntls_port = 5349\ntcp = true"
                .parse()
                .expect("toml");
        let options = ModuleOptions::new(table, "modules.turn_external", Default::default());
        let services = services_from(&options);
        let summary: Vec<(CompactString, Option<u16>, Option<CompactString>, bool)> = services
            .iter()
            .map(|s| {
                (
                    s.kind.clone(),
                    s.port,
                    s.transport.clone(),
                    s.mints_credentials(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("stun".into(), Some(3478), Some("udp".into()), false),
                ("turn".into(), Some(3478), Some("udp".into()), true),
                ("turn".into(), Some(3478), Some("tcp".into()), true),
                ("turns".into(), Some(5349), Some("tcp".into()), true),
            ]
        );
    }

    #[test]
    fn no_secret_means_stun_only() {
        let table: toml::Table = "host = 'turn.example.org'".parse().expect("toml");
        let diagnostics = crate::config::Diagnostics::default();
        let options = ModuleOptions::new(table, "modules.turn_external", diagnostics.clone());
        assert_eq!(services_from(&options).len(), 1);
        assert!(diagnostics
            .all()
            .iter()
            .any(|d| d.key == "modules.turn_external.secret"));
    }
}
