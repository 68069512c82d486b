//! Graceful shutdown: every stream is closed with `system-shutdown`, resumable sessions
//! included, and the server stops within a bounded time.

use std::time::{Duration, Instant};

use tern::testing::TestServer;

#[tokio::test]
async fn streams_end_with_system_shutdown() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    romeo.available().await?;
    // A resumable session whose connection is gone must not hold the shutdown up.
    juliet
        .send_str("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await?;
    juliet.expect_where(|s| s.name() == "enabled").await?;
    drop(juliet);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    assert_eq!(
        romeo.raw().expect_stream_error().await?.as_deref(),
        Some("system-shutdown")
    );
    stopping.await?;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    Ok(())
}
