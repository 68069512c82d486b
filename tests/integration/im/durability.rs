//! Acknowledged writes survive `kill -9`: a real `tern` process is killed right after the
//! client got its acknowledgement, restarted on the same data, and the data checked.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tern::testing::{ClientOptions, TestClient, TlsMode};

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start(config: &Path) -> anyhow::Result<Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("tern did not start listening on {addr}")
}

fn adduser(config: &Path, jid: &str) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["adduser", jid, "--password", "pw", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "adduser {jid} failed");
    Ok(())
}

fn options(addr: SocketAddr, user: &str) -> ClientOptions {
    ClientOptions {
        addr,
        host: "localhost".into(),
        username: user.into(),
        password: "pw".into(),
        tls: TlsMode::None,
        ca_cert: None,
        mechanism: "SCRAM-SHA-1".into(),
        resource: None,
    }
}

#[tokio::test]
async fn roster_subscription_and_offline_message_survive_kill_9() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("tern.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nrequire_encryption = false\nmodules_enabled = [\"disco\", \"ping\", \"roster\", \"presence\", \"offline\"]\n[listen]\nc2s = [\"127.0.0.1:{port}\"]\nc2s_direct_tls = []\n[tls]\ncerts_dir = \"certs\"\n[hosts.localhost]\n"
        ),
    )?;
    adduser(&config, "romeo@localhost")?;
    adduser(&config, "juliet@localhost")?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;

    let mut server = start(&config)?;
    wait_listening(addr).await?;
    let mut romeo = TestClient::connect(options(addr, "romeo")).await?;
    let ack = romeo
        .iq_str("<iq type='set'><query xmlns='jabber:iq:roster'><item jid='nurse@localhost' name='Nurse'/></query></iq>")
        .await?;
    assert_eq!(ack.attr("type"), Some("result"));
    romeo
        .send_str("<presence to='juliet@localhost' type='subscribe'/>")
        .await?;
    // A message to offline Juliet; the ping round trip after it means it was processed,
    // and processing an offline message includes the durable write.
    romeo
        .send_str("<message to='juliet@localhost' type='chat'><body>meet me</body></message>")
        .await?;
    romeo.sync().await?;
    server.kill()?; // SIGKILL
    server.wait()?;

    let mut server = start(&config)?;
    wait_listening(addr).await?;
    let mut romeo = TestClient::connect(options(addr, "romeo")).await?;
    let roster = romeo
        .iq_str("<iq type='get'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    let items: Vec<(String, Option<String>)> = roster
        .children()
        .next()
        .map(|q| {
            q.children()
                .map(|i| {
                    (
                        i.attr("jid").unwrap_or("").to_string(),
                        i.attr("ask").map(str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        items.contains(&("nurse@localhost".to_string(), None)),
        "{items:?}"
    );
    assert!(
        items.contains(&(
            "juliet@localhost".to_string(),
            Some("subscribe".to_string())
        )),
        "{items:?}"
    );
    let mut juliet = TestClient::connect(options(addr, "juliet")).await?;
    juliet.available().await?;
    let request = juliet
        .expect_where(|s| s.attr("type") == Some("subscribe"))
        .await?;
    assert_eq!(request.attr("from"), Some("romeo@localhost"));
    let message = juliet.expect_where(|s| s.name() == "message").await?;
    assert_eq!(
        message
            .get_child("body", tern::xml::ns::CLIENT)
            .map(|b| b.text())
            .as_deref(),
        Some("meet me")
    );
    server.kill()?;
    server.wait()?;
    Ok(())
}
