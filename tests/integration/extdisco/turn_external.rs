//! `turn_external`: services derived from a few options, as items of external_services.

use std::time::Duration;

use tern::modules::external_services::credentials::turn_password;
use tern::modules::external_services::xml::Action;
use tern::modules::external_services::ExternalService;
use tern::testing::{TestClient, TestServer};

use super::support::*;

fn config(host: &str) -> String {
    format!(
        r#"
modules_enabled = ["disco", "ping", "external_services", "turn_external"]
[modules.external_services]
rate_limit = false
[modules.turn_external]
host = "{host}"
secret = "coturn-secret"
tls_port = 5349
tcp = true
ttl = 3600
"#
    )
}

type Key = (String, String, u16, String);

fn key(s: &ExternalService) -> Key {
    (
        s.kind.to_string(),
        s.host.to_string(),
        s.port.expect("port"),
        s.transport.as_deref().expect("transport").to_string(),
    )
}

fn expected(host: &str) -> Vec<Key> {
    [
        ("stun", 3478, "udp"),
        ("turn", 3478, "udp"),
        ("turn", 3478, "tcp"),
        ("turns", 5349, "tcp"),
    ]
    .iter()
    .map(|(k, p, t)| (k.to_string(), host.to_string(), *p, t.to_string()))
    .collect()
}

fn check_credentials(service: &ExternalService) {
    if service.kind == "stun" {
        assert!(
            !service.restricted && service.username.is_none(),
            "{service:?}"
        );
        return;
    }
    assert!(service.restricted, "{service:?}");
    let username = service.username.clone().expect("username");
    assert_eq!(
        service.password.as_deref(),
        Some(turn_password("coturn-secret", &username).as_str()),
        "{service:?}"
    );
    assert!(service.expires.is_some());
}

async fn subscribed(server: &TestServer) -> anyhow::Result<TestClient> {
    let mut romeo = server.client("romeo").await?;
    let list = services(&romeo.iq_str(SERVICES).await?);
    assert_eq!(
        list.iter().map(key).collect::<Vec<_>>(),
        expected("turn.example.org")
    );
    list.iter().for_each(check_credentials);
    Ok(romeo)
}

#[tokio::test]
async fn stun_turn_tcp_and_turns_with_signed_credentials() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config("turn.example.org"))
        .start()
        .await?;
    let mut romeo = subscribed(&server).await?;
    // And by credentials request.
    let reply = romeo
        .iq_str(&credentials_iq(
            "<service type='turns' host='turn.example.org'/>",
        ))
        .await?;
    let list = services(&reply);
    assert_eq!(list.len(), 1);
    check_credentials(&list[0]);
    Ok(())
}

#[tokio::test]
async fn reloading_with_a_new_host_pushes_the_change() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config("turn.example.org"))
        .start()
        .await?;
    let mut romeo = subscribed(&server).await?;
    server
        .reload_toml(&config("turn2.example.org"))
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;

    // Items are replaced one by one: the changes may come in one push or several.
    let mut deleted: Vec<Key> = Vec::new();
    let mut added: Vec<ExternalService> = Vec::new();
    while deleted.len() < 4 || added.len() < 4 {
        let push = next_push(&mut romeo).await?;
        for (action, service) in pushed(&push) {
            match action {
                Action::Delete => {
                    assert_eq!(service.host, "turn.example.org", "{}", show(&push));
                    assert!(service.password.is_none(), "{}", show(&push));
                    deleted.push(key(&service));
                }
                Action::Add => {
                    assert_eq!(service.host, "turn2.example.org", "{}", show(&push));
                    added.push(service);
                }
                Action::Modify => panic!("unexpected modify: {}", show(&push)),
            }
        }
    }
    deleted.sort();
    let mut old = expected("turn.example.org");
    old.sort();
    assert_eq!(deleted, old);
    let mut new: Vec<Key> = added.iter().map(key).collect();
    new.sort();
    let mut want = expected("turn2.example.org");
    want.sort();
    assert_eq!(new, want);
    added.iter().for_each(check_credentials);
    romeo.expect_silence(Duration::from_millis(300)).await?;

    // A fresh request agrees.
    let list = services(&romeo.iq_str(SERVICES).await?);
    assert_eq!(
        list.iter().map(key).collect::<Vec<_>>(),
        expected("turn2.example.org")
    );
    Ok(())
}

#[tokio::test]
async fn reloading_unchanged_options_pushes_nothing() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config("turn.example.org"))
        .start()
        .await?;
    let mut romeo = subscribed(&server).await?;
    server
        .reload_toml(&config("turn.example.org"))
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    romeo.expect_silence(Duration::from_millis(400)).await?;
    Ok(())
}

#[tokio::test]
async fn unloading_turn_external_withdraws_its_services() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config("turn.example.org"))
        .start()
        .await?;
    let mut romeo = subscribed(&server).await?;
    server
        .reload_toml(
            "modules_enabled = [\"disco\", \"ping\", \"external_services\"]\n[modules.external_services]\nrate_limit = false",
        )
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    let mut deleted = 0;
    while deleted < 4 {
        for (action, _) in pushed(&next_push(&mut romeo).await?) {
            assert_eq!(action, Action::Delete);
            deleted += 1;
        }
    }
    assert!(services(&romeo.iq_str(SERVICES).await?).is_empty());
    Ok(())
}
