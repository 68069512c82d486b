//! The validation step ("prepare") through a real server, for config entries, items and
//! what event handlers leave; and the event handlers themselves: priorities, async.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern::api::*;
use tern::config::Severity;
use tern::modules::external_services::credentials::turn_password;
use tern::modules::external_services::{
    CredentialSource, ExternalService, ServicesRequest, TurnRest, UserPart,
};
use tern::testing::TestServer;

use super::support::*;

/// What the `order` user's handlers saw, in the order they ran.
static ORDER: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn hosts(services: &[ExternalService]) -> String {
    services
        .iter()
        .map(|s| s.host.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn requester_is(request: &ServicesRequest, user: &str) -> bool {
    request.requester.node().is_some_and(|n| n.as_str() == user)
}

/// A test module whose `ServicesRequest` handlers act by the requester's localpart.
pub const PROBE: ModuleDescriptor = ModuleDescriptor {
    name: "extdisco_probe",
    depends: &["external_services"],
    load,
};

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    // Registered first, runs last: priority decides, not registration order.
    ctx.hook::<ServicesRequest, _>(0, |request| {
        Box::pin(async move {
            if requester_is(request, "order") {
                ORDER
                    .lock()
                    .expect("lock")
                    .push(format!("zero saw {}", hosts(&request.services)));
                request
                    .services
                    .push(item("stun", "added-by-zero.example", 3478, "udp"));
            }
            Ok(Flow::Continue)
        })
    });
    ctx.hook::<ServicesRequest, _>(10, |request| {
        Box::pin(async move {
            if requester_is(request, "order") {
                ORDER
                    .lock()
                    .expect("lock")
                    .push(format!("ten saw {}", hosts(&request.services)));
            }
            Ok(Flow::Continue)
        })
    });
    ctx.hook::<ServicesRequest, _>(5, |request| {
        Box::pin(async move {
            if requester_is(request, "invalid") {
                // No host: dropped by prepare.
                request.services.push(item("stun", "", 3478, "udp"));
                // No type: dropped.
                request
                    .services
                    .push(item("", "typeless.example", 3478, "udp"));
                // Not an NCName: dropped.
                request
                    .services
                    .push(item("1 bad", "badtype.example", 3478, "udp"));
                // Valid, and completed by prepare (port and transport from the type).
                request
                    .services
                    .push(ExternalService::new("turns", "valid.example"));
            }
            if requester_is(request, "slow") {
                tokio::time::sleep(Duration::from_millis(50)).await;
                for service in request.services.iter_mut() {
                    service
                        .names
                        .insert(String::new(), "Renamed after a wait".to_string());
                }
            }
            if requester_is(request, "minted") {
                // A TURN REST service without credentials: minted before the reply.
                let mut relay = item("turn", "handler-relay.example", 3478, "udp");
                relay.restricted = true;
                relay.source = CredentialSource::TurnRest(TurnRest {
                    secrets: Arc::new(vec!["handler-secret".to_string()]),
                    ttl: Duration::from_secs(300),
                    user_part: UserPart::Localpart,
                });
                request.services.push(relay);
            }
            Ok(Flow::Continue)
        })
    });
    Ok(())
}

const CONFIG: &str = r#"
modules_enabled = ["disco", "ping", "external_services", "extdisco_probe"]
[modules.external_services]
host = "turn.example.org"
secret = "s"
rate_limit = false
[[modules.external_services.services]]
type = "stun"
[[modules.external_services.services]]
host = "typeless.example.org"
port = 3478
[[modules.external_services.services]]
type = "turn"
port = "not a number"
"#;

async fn server(users: &[&str]) -> anyhow::Result<TestServer> {
    let mut builder = TestServer::builder().module(PROBE).config_toml(CONFIG);
    for user in users {
        builder = builder.user(user, "pw");
    }
    builder.start().await
}

#[tokio::test]
async fn a_config_service_without_type_is_dropped_with_an_error() -> anyhow::Result<()> {
    let server = server(&["romeo"]).await?;
    let diagnostics = server.server().config().diagnostics.all();
    let typeless = diagnostics
        .iter()
        .find(|d| d.key == "modules.external_services.services[1].type")
        .unwrap_or_else(|| panic!("no diagnostic for services[1].type in {diagnostics:?}"));
    assert_eq!(typeless.severity, Severity::Error, "{typeless}");
    // A field of the wrong type is a warning naming the field; the service stays.
    let port = diagnostics
        .iter()
        .find(|d| d.key == "modules.external_services.services[2].port")
        .unwrap_or_else(|| panic!("no diagnostic for services[2].port in {diagnostics:?}"));
    assert_eq!(port.severity, Severity::Warning, "{port}");

    let mut romeo = server.client("romeo").await?;
    let list = services(&romeo.iq_str(SERVICES).await?);
    let summary: Vec<(&str, &str, Option<u16>)> = list
        .iter()
        .map(|s| (s.kind.as_str(), s.host.as_str(), s.port))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("stun", "turn.example.org", Some(3478)),
            // The bad port was ignored: the type's default.
            ("turn", "turn.example.org", Some(3478)),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn items_that_fail_validation_are_not_served_or_pushed() -> anyhow::Result<()> {
    let server = server(&["romeo"]).await?;
    let mut romeo = server.client("romeo").await?;
    assert_eq!(services(&romeo.iq_str(SERVICES).await?).len(), 2);
    let host = server.host("localhost").expect("host");
    host.add_item("test", Arc::new(item("", "no-type.example", 3478, "udp")));
    host.add_item("test", Arc::new(item("turn", "", 3478, "udp")));
    romeo.expect_silence(Duration::from_millis(300)).await?;
    let list = services(&romeo.iq_str(SERVICES).await?);
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(!list.iter().any(|s| s.host == "no-type.example"));

    // A valid item (without port and transport, completed by prepare) is served.
    host.add_item(
        "test",
        Arc::new(ExternalService::new("stuns", "valid-item.example")),
    );
    let changes = pushed(&next_push(&mut romeo).await?);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].1.host, "valid-item.example");
    assert_eq!(
        (changes[0].1.port, changes[0].1.transport.as_deref()),
        (Some(5349), Some("tcp"))
    );
    let list = services(&romeo.iq_str(SERVICES).await?);
    assert_eq!(list.len(), 3);

    // Items are completed before a credentials request is matched against them.
    let mut relay = ExternalService::new("turns", "item-relay.example");
    relay.username = Some("item-user".to_string());
    relay.password = Some("item-pass".to_string());
    relay.restricted = true;
    host.add_item("test", Arc::new(relay));
    next_push(&mut romeo).await?;
    let reply = romeo
        .iq_str(&credentials_iq(
            "<service type='turns' host='item-relay.example' port='5349' transport='tcp'/>",
        ))
        .await?;
    let list = services(&reply);
    assert_eq!(list.len(), 1, "{}", show(&reply));
    assert_eq!(list[0].username.as_deref(), Some("item-user"));
    Ok(())
}

#[tokio::test]
async fn what_handlers_add_is_validated_again() -> anyhow::Result<()> {
    let server = server(&["invalid"]).await?;
    let mut client = server.client("invalid").await?;
    let list = services(&client.iq_str(SERVICES).await?);
    let summary: Vec<(&str, &str, Option<u16>, Option<&str>)> = list
        .iter()
        .map(|s| {
            (
                s.kind.as_str(),
                s.host.as_str(),
                s.port,
                s.transport.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("stun", "turn.example.org", Some(3478), Some("udp")),
            ("turn", "turn.example.org", Some(3478), Some("udp")),
            ("turns", "valid.example", Some(5349), Some("tcp")),
        ]
    );
    // The type filter still applies to what handlers add.
    let reply = client
        .iq_str("<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='stun'/></iq>")
        .await?;
    let list = services(&reply);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].host, "turn.example.org");
    Ok(())
}

#[tokio::test]
async fn handlers_run_by_priority_and_see_earlier_changes_only() -> anyhow::Result<()> {
    let server = server(&["order"]).await?;
    let mut client = server.client("order").await?;
    let list = services(&client.iq_str(SERVICES).await?);
    assert!(list.iter().any(|s| s.host == "added-by-zero.example"));
    let log = std::mem::take(&mut *ORDER.lock().expect("lock"));
    assert_eq!(
        log,
        vec![
            "ten saw turn.example.org,turn.example.org".to_string(),
            "zero saw turn.example.org,turn.example.org".to_string(),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn an_async_handler_may_wait_before_editing() -> anyhow::Result<()> {
    let server = server(&["slow", "romeo"]).await?;
    let mut slow = server.client("slow").await?;
    let started = std::time::Instant::now();
    let list = services(&slow.iq_str(SERVICES).await?);
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(list.len(), 2);
    for service in &list {
        assert_eq!(
            service.name_for(None),
            Some("Renamed after a wait"),
            "{service:?}"
        );
    }
    slow.expect_silence(Duration::from_millis(200)).await?;
    let mut romeo = server.client("romeo").await?;
    let list = services(&romeo.iq_str(SERVICES).await?);
    assert!(list.iter().all(|s| s.name_for(None).is_none()));
    Ok(())
}

#[tokio::test]
async fn a_turn_rest_service_added_by_a_handler_gets_credentials() -> anyhow::Result<()> {
    let server = server(&["minted"]).await?;
    let mut client = server.client("minted").await?;
    let list = services(&client.iq_str(SERVICES).await?);
    let relay = list
        .iter()
        .find(|s| s.host == "handler-relay.example")
        .expect("handler relay");
    let username = relay.username.clone().expect("minted username");
    assert!(username.ends_with(":minted"), "{username}");
    assert_eq!(
        relay.password.as_deref(),
        Some(turn_password("handler-secret", &username).as_str())
    );
    assert!(relay.expires.is_some() && relay.restricted);
    Ok(())
}
