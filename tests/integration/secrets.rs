//! Passwords and secrets never reach the log, even at the most verbose level.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tern::testing::{TestServer, TlsMode};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PASSWORD: &str = "correct horse battery staple";
const TURN_SECRET: &str = "turn-shared-secret-9f2c";

#[tokio::test]
async fn a_full_run_logs_no_secret() -> anyhow::Result<()> {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // #[tokio::test] runs every task on this thread, so a thread default sees them all.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::builder()
        .tls(true)
        .user("romeo", PASSWORD)
        .config_toml(&format!(
            "modules_enabled = [\"disco\", \"ping\", \"roster\", \"presence\", \"external_services\", \"register\"]\n[modules.external_services]\nhost = \"turn.example.org\"\nsecret = \"{TURN_SECRET}\"\n[modules.register]\nmin_password_length = 6"
        ))
        .start()
        .await?;
    let mut minted = Vec::new();
    for mechanism in ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"] {
        let mut options = server.options("romeo", PASSWORD);
        options.mechanism = mechanism.to_string();
        options.tls = TlsMode::StartTls;
        let mut client = server.client_with(options).await?;
        let reply = client
            .iq_str("<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>")
            .await?;
        for service in reply
            .children()
            .next()
            .into_iter()
            .flat_map(|p| p.children())
        {
            if let Some(password) = service.attr("password") {
                minted.push(password.to_string());
            }
        }
    }
    // A failed login with a wrong password, and a password change.
    let mut wrong = server.options("romeo", "not the password at all");
    wrong.tls = TlsMode::StartTls;
    assert!(server.client_with(wrong).await.is_err());
    let mut options = server.options("romeo", PASSWORD);
    options.tls = TlsMode::StartTls;
    let mut client = server.client_with(options).await?;
    let changed = client
        .iq_str("<iq type='set' to='localhost'><query xmlns='jabber:iq:register'><username>romeo</username><password>brand new secret</password></query></iq>")
        .await?;
    assert_eq!(changed.attr("type"), Some("result"));
    server.shutdown().await;

    let log = String::from_utf8_lossy(&capture.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))?)
        .into_owned();
    assert!(log.len() > 1000, "the capture caught the server's log");
    assert!(!minted.is_empty());
    for secret in [
        PASSWORD,
        "not the password at all",
        "brand new secret",
        TURN_SECRET,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(minted)
    {
        assert!(
            !log.contains(&secret),
            "the log contains a secret: {secret}"
        );
    }
    Ok(())
}
