//! TURN REST credentials in detail: the user part, secret rotation, `turns`, the expiry,
//! and the admin preview (`tern extdisco`).

use std::time::SystemTime;

use jid::BareJid;
use tern::modules::external_services::credentials::turn_password;
use tern::modules::external_services::{preview, ExternalService};
use tern::testing::TestServer;

use super::support::*;

const CONFIG: &str = r#"
modules_enabled = ["disco", "ping", "external_services"]
[modules.external_services]
host = "turn.example.org"
secret = ["new", "old"]
ttl = 7200
user = "localpart"
rate_limit = false
[[modules.external_services.services]]
type = "turn"
port = 3478
[[modules.external_services.services]]
type = "turn"
port = 3479
user = "none"
[[modules.external_services.services]]
type = "turn"
port = 3480
user = { fixed = "tern" }
[[modules.external_services.services]]
type = "turns"
[[modules.external_services.services]]
type = "turn"
port = 3481
secret = "own-secret"
ttl = 60
user = "hash"
[[modules.external_services.services]]
type = "stun"
"#;

async fn server() -> anyhow::Result<TestServer> {
    TestServer::builder()
        .user("romeo", "pw")
        .config_toml(CONFIG)
        .start()
        .await
}

fn by_port(list: &[ExternalService], kind: &str, port: u16) -> ExternalService {
    list.iter()
        .find(|s| s.kind == kind && s.port == Some(port))
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} on {port} in {list:?}"))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Checks one minted service: signed with `secret`, the expiry in the username equals
/// `expires`, and that is now + `ttl` (within 5 s). Returns the user part.
fn check_minted(
    service: &ExternalService,
    secret: &str,
    ttl: u64,
    asked: SystemTime,
) -> Option<String> {
    assert!(service.restricted, "{service:?}");
    let username = service.username.clone().expect("username");
    let password = service.password.clone().expect("password");
    assert_eq!(password, turn_password(secret, &username), "{service:?}");
    let expiry = username_expiry(&username);
    let expires = service.expires.expect("expires");
    assert_eq!(unix(expires), expiry, "expires matches the username");
    let expected = unix(asked) + ttl;
    assert!(
        expiry.abs_diff(expected) <= 5,
        "expiry {expiry} vs now + ttl {expected}"
    );
    username.split_once(':').map(|(_, part)| part.to_string())
}

#[tokio::test]
async fn user_parts_rotation_turns_and_expiry() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let asked = SystemTime::now();
    let list = services(&romeo.iq_str(SERVICES).await?);
    assert_eq!(list.len(), 6);

    // The module's `user = "localpart"`.
    let localpart = by_port(&list, "turn", 3478);
    assert_eq!(
        check_minted(&localpart, "new", 7200, asked).as_deref(),
        Some("romeo")
    );
    // Signed with the first (newest) secret, not the old one.
    let username = localpart.username.clone().expect("username");
    assert_ne!(
        localpart.password.as_deref(),
        Some(turn_password("old", &username).as_str())
    );

    // `user = "none"`: the expiry alone.
    let none = by_port(&list, "turn", 3479);
    assert_eq!(check_minted(&none, "new", 7200, asked), None);
    assert!(!none.username.clone().expect("username").contains(':'));

    // `user = { fixed = "tern" }`.
    let fixed = by_port(&list, "turn", 3480);
    assert_eq!(
        check_minted(&fixed, "new", 7200, asked).as_deref(),
        Some("tern")
    );

    // `turns` gets credentials too (Prosody's turn_external leaves it without).
    let turns = by_port(&list, "turns", 5349);
    assert_eq!(turns.transport.as_deref(), Some("tcp"));
    assert_eq!(
        check_minted(&turns, "new", 7200, asked).as_deref(),
        Some("romeo")
    );

    // A service with its own secret, ttl and the hash user part.
    let own = by_port(&list, "turn", 3481);
    let hashed = check_minted(&own, "own-secret", 60, asked).expect("hash part");
    assert!(!hashed.contains("romeo") && !hashed.is_empty(), "{hashed}");

    let stun = by_port(&list, "stun", 3478);
    assert!(stun.username.is_none() && stun.expires.is_none() && !stun.restricted);

    // The same through a credentials request.
    let asked = SystemTime::now();
    let reply = romeo
        .iq_str(&credentials_iq(
            "<service type='turns' host='turn.example.org'/><service type='turn' host='turn.example.org' port='3480'/>",
        ))
        .await?;
    let list = services(&reply);
    assert_eq!(list.len(), 2);
    assert_eq!(
        check_minted(&by_port(&list, "turns", 5349), "new", 7200, asked).as_deref(),
        Some("romeo")
    );
    assert_eq!(
        check_minted(&by_port(&list, "turn", 3480), "new", 7200, asked).as_deref(),
        Some("tern")
    );
    Ok(())
}

#[tokio::test]
async fn the_hash_user_part_is_stable_per_user() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(CONFIG)
        .start()
        .await?;
    let part = |list: &[ExternalService]| {
        by_port(list, "turn", 3481)
            .username
            .and_then(|u| u.split_once(':').map(|(_, p)| p.to_string()))
            .expect("user part")
    };
    let mut romeo = server.client("romeo").await?;
    let first = part(&services(&romeo.iq_str(SERVICES).await?));
    let second = part(&services(&romeo.iq_str(SERVICES).await?));
    assert_eq!(first, second);
    let mut juliet = server.client("juliet").await?;
    let other = part(&services(&juliet.iq_str(SERVICES).await?));
    assert_ne!(first, other);
    Ok(())
}

#[tokio::test]
async fn preview_returns_what_a_user_would_get() -> anyhow::Result<()> {
    let server = server().await?;
    let host = server.host("localhost").expect("host");
    let romeo = BareJid::new("romeo@localhost")?;
    let asked = SystemTime::now();
    let list = preview(&host, &romeo, None).await?;
    assert_eq!(list.len(), 6, "{list:?}");
    assert_eq!(
        check_minted(&by_port(&list, "turn", 3478), "new", 7200, asked).as_deref(),
        Some("romeo")
    );
    assert_eq!(
        check_minted(&by_port(&list, "turns", 5349), "new", 7200, asked).as_deref(),
        Some("romeo")
    );
    let only_stun = preview(&host, &romeo, Some("stun")).await?;
    assert_eq!(only_stun.len(), 1);
    assert_eq!(only_stun[0].kind, "stun");
    // The preview runs the full pipeline for that JID, not for a session.
    let juliet = BareJid::new("juliet@localhost")?;
    let list = preview(&host, &juliet, Some("turn")).await?;
    assert_eq!(
        by_port(&list, "turn", 3478)
            .username
            .and_then(|u| u.split_once(':').map(|(_, p)| p.to_string()))
            .as_deref(),
        Some("juliet")
    );
    // The admin output line carries the credentials.
    let line = tern::modules::external_services::describe(&by_port(&list, "turn", 3478));
    assert!(
        line.starts_with("turn turn.example.org:3478 udp restricted username="),
        "{line}"
    );
    Ok(())
}
