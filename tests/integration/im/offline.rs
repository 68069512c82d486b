use tern::testing::TestServer;
use tern::xml::ns;

const IM: &str = r#"modules_enabled = ["disco", "ping", "roster", "presence", "offline"]
[modules.offline]
max_messages = 3"#;

#[tokio::test]
async fn stored_in_order_with_delay_and_delivered_after_initial_presence() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(IM)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    for i in 1..=3 {
        romeo
            .send_str(&format!(
                "<message to='juliet@localhost' type='chat' id='m{i}'><body>{i}</body></message>"
            ))
            .await?;
    }
    romeo
        .send_str("<message to='juliet@localhost' type='headline'><body>news</body></message>")
        .await?;
    // The fourth chat message exceeds the cap of 3: a clear error back.
    romeo
        .send_str("<message to='juliet@localhost' type='chat' id='m4'><body>4</body></message>")
        .await?;
    let bounce = romeo.expect_where(|s| s.attr("id") == Some("m4")).await?;
    assert_eq!(bounce.attr("type"), Some("error"));
    let text = bounce
        .get_child("error", ns::CLIENT)
        .and_then(|e| e.get_child("text", ns::STANZAS_ERR))
        .map(|t| t.text());
    assert!(text.is_some_and(|t| t.contains("full")));

    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let message = juliet.expect_where(|s| s.name() == "message").await?;
        let delay = message
            .get_child("delay", "urn:xmpp:delay")
            .expect("delay stamp");
        assert!(delay.attr("stamp").is_some());
        assert_eq!(message.attr("from"), Some(romeo.jid().to_string().as_str()));
        bodies.push(
            message
                .get_child("body", ns::CLIENT)
                .map(|b| b.text())
                .unwrap_or_default(),
        );
    }
    assert_eq!(bodies, vec!["1", "2", "3"]);
    // Delivered once: a second login gets no message (presence may arrive).
    let mut again = server.client("juliet").await?;
    again.available().await?;
    let late = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        again.expect_where(|s| s.name() == "message"),
    )
    .await;
    assert!(
        late.is_err(),
        "offline messages were delivered twice: {late:?}"
    );
    Ok(())
}

/// A session that is closing (here: its client stopped reading and its queue filled up)
/// no longer takes messages; the account is treated as having no available resource,
/// so messages go to offline storage instead of being dropped silently.
#[tokio::test]
async fn messages_to_a_closing_session_are_stored_not_lost() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(
            r#"modules_enabled = ["disco", "ping", "roster", "presence", "offline"]
[limits]
outbound_queue = 16
rate = 0"#,
        )
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    let host = server.host("localhost").expect("host");
    // Juliet reads nothing from now on: socket buffers, then her queue, fill up.
    let body = "x".repeat(100 * 1024);
    let mut closing = false;
    for _ in 0..2000 {
        romeo
            .send_str(&format!(
                "<message to='juliet@localhost' type='chat'><body>{body}</body></message>"
            ))
            .await?;
        // Closing, or already gone: on a loaded machine the session can end between
        // two checks.
        if host.sessions_of("juliet").iter().all(|s| s.is_closing()) {
            closing = true;
            break;
        }
    }
    assert!(closing, "juliet's session should be closing");
    romeo
        .send_str(
            "<message to='juliet@localhost' type='chat' id='after'><body>after</body></message>",
        )
        .await?;
    romeo.sync().await?;
    let stored = server
        .server()
        .storage()
        .scan("localhost", "offline", "juliet/")?;
    assert!(
        stored.iter().any(
            |(_, bytes)| String::from_utf8_lossy(bytes).contains("id=\"after\"")
                || String::from_utf8_lossy(bytes).contains("id='after'")
        ),
        "the message after the close was stored ({} stored)",
        stored.len()
    );
    drop(juliet);
    Ok(())
}

/// A session without stream management that ends with messages still in its outbound
/// queue (never written: here the client stopped reading) re-routes them; they are not
/// dropped.
#[tokio::test]
async fn messages_never_written_to_an_ended_session_go_offline() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(
            r#"modules_enabled = ["disco", "ping", "roster", "presence", "offline"]
[limits]
outbound_queue = 16
rate = 0
ping_timeout = 1"#,
        )
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    let host = server.host("localhost").expect("host");
    let body = "x".repeat(100 * 1024);
    let mut closing = false;
    for _ in 0..2000 {
        romeo
            .send_str(&format!(
                "<message to='juliet@localhost' type='chat'><body>{body}</body></message>"
            ))
            .await?;
        romeo.sync().await?;
        // Closing, or already gone: on a loaded machine the session can end between
        // two checks.
        if host.sessions_of("juliet").iter().all(|s| s.is_closing()) {
            closing = true;
            break;
        }
    }
    assert!(closing, "juliet's queue filled up");
    // The stalled session ends (ping_timeout) with its queue full of messages.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !host.sessions_of("juliet").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the session ended");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stored = server
        .server()
        .storage()
        .scan("localhost", "offline", "juliet/")?;
    assert!(
        stored.len() >= 16,
        "the queued messages went offline ({} stored)",
        stored.len()
    );
    drop(juliet);
    Ok(())
}

/// Messages keep arriving while two resources of the recipient log in at once: each
/// message reaches exactly one of them (live or from the store), none is delivered twice,
/// and none is left in the store for a later login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_racing_two_logins_arrive_exactly_once() -> anyhow::Result<()> {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(
            r#"modules_enabled = ["disco", "ping", "roster", "presence", "offline"]
[modules.offline]
max_messages = 100000
[limits]
rate = 0
stanza_rate = 0"#,
        )
        .start()
        .await?;
    for round in 0..8 {
        let mut romeo = server.client("romeo").await?;
        let mut high = server.client("juliet").await?;
        let mut low = server.client("juliet").await?;
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut sent = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    romeo
                        .send_str(&format!(
                            "<message to='juliet@localhost' type='chat' id='r{round}-{sent}'><body>{sent}</body></message>"
                        ))
                        .await?;
                    sent += 1;
                    // A steady trickle (the recipients read only at the end).
                    if sent % 4 == 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }
                romeo.sync().await?;
                anyhow::Ok(sent)
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        // Different priorities: a live message goes to one resource only, as a stored
        // one does.
        let (a, b) = tokio::join!(
            high.send_str("<presence><priority>5</priority></presence>"),
            low.send_str("<presence><priority>1</priority></presence>"),
        );
        a?;
        b?;
        let (a, b) = tokio::join!(high.sync(), low.sync());
        a?;
        b?;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        stop.store(true, Ordering::Relaxed);
        let sent = sender.await??;
        let mut received: HashMap<String, usize> = HashMap::new();
        for client in [&mut high, &mut low] {
            loop {
                let next = tokio::time::timeout(
                    std::time::Duration::from_millis(300),
                    client.expect_where(|s| s.name() == "message"),
                )
                .await;
                let Ok(message) = next else { break };
                let id = message?.attr("id").unwrap_or_default().to_string();
                *received.entry(id).or_default() += 1;
            }
        }
        let twice: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "round {round}: delivered twice: {twice:?}"
        );
        let stored = server
            .server()
            .storage()
            .scan("localhost", "offline", "juliet/")?;
        assert!(
            stored.is_empty(),
            "round {round}: {} of {sent} messages left in the store",
            stored.len()
        );
        assert_eq!(received.len(), sent, "round {round}: messages lost");
    }
    Ok(())
}
