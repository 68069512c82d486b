//! Presence broadcasts racing the end of the session that sent them.

use std::collections::BTreeMap;

use tern::modules::roster::store::STORE;
use tern::modules::roster::{Roster, RosterItem, Subscription};
use tern::testing::{RawClient, TestServer};

const IM: &str = r#"modules_enabled = ["disco", "ping", "roster", "presence"]
[limits]
rate = 0
stanza_rate = 0"#;

/// Juliet's "available" is still being broadcast (to 300 contacts, Romeo last) when a
/// new login takes her resource and ends the session that sent it. Romeo must end up
/// seeing her resource unavailable, never a ghost "available" after the "unavailable".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_racing_the_end_of_its_session_leaves_no_ghost() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(IM)
        .start()
        .await?;
    let storage = server.server().storage();
    let both = RosterItem {
        subscription: Subscription::Both,
        ..Default::default()
    };
    // Contacts sorted before "romeo" are told first: a long broadcast, Romeo at its end.
    let mut items: BTreeMap<String, RosterItem> = (0..300)
        .map(|i| (format!("contact{i:03}@localhost"), both.clone()))
        .collect();
    items.insert("romeo@localhost".into(), both.clone());
    let juliet_roster = Roster {
        items,
        ..Default::default()
    };
    storage
        .put(
            "localhost",
            STORE,
            "juliet",
            &serde_json::to_vec(&juliet_roster)?,
        )
        .await?;
    let romeo_roster = Roster {
        items: [("juliet@localhost".to_string(), both)].into(),
        ..Default::default()
    };
    storage
        .put(
            "localhost",
            STORE,
            "romeo",
            &serde_json::to_vec(&romeo_roster)?,
        )
        .await?;
    let mut romeo = server.client("romeo").await?;
    romeo.available().await?;

    for round in 0..10 {
        let resource = format!("phone{round}");
        let mut first = RawClient::connect(server.addr()).await?;
        first.login("localhost", "juliet", "pw").await?;
        first.bind(Some(&resource)).await?;
        let mut second = RawClient::connect(server.addr()).await?;
        second.login("localhost", "juliet", "pw").await?;
        // The second bind replaces the first session while its presence is broadcast.
        first.send_raw("<presence/>").await?;
        second.bind(Some(&resource)).await?;
        let full = format!("juliet@localhost/{resource}");
        // Everything Romeo hears about this resource, until it has been quiet a while.
        let mut last: Option<String> = None;
        loop {
            let next = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                romeo.expect_where(|s| s.name() == "presence" && s.attr("from") == Some(&full)),
            )
            .await;
            let Ok(presence) = next else { break };
            last = Some(presence?.attr("type").unwrap_or("available").to_string());
        }
        assert!(
            last.as_deref().is_none_or(|t| t == "unavailable"),
            "round {round}: romeo's last word on {full} is {last:?}"
        );
        drop(first);
        drop(second);
    }
    Ok(())
}
