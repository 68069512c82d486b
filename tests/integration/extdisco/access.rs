//! Access control: one rule for disco advertisement, services and credentials alike.

use tern::testing::TestServer;

use super::support::*;

fn config(access: &str) -> String {
    format!(
        r#"
modules_enabled = ["disco", "ping", "external_services"]
[modules.external_services]
host = "turn.example.org"
secret = "s"
rate_limit = false
{access}
"#
    )
}

const CREDENTIALS: &str = "<service type='turn' host='turn.example.org'/>";

async fn server(access: &str) -> anyhow::Result<TestServer> {
    TestServer::builder()
        .host("localhost")
        .host("other.test")
        .user("alice", "pw")
        .user("bob", "pw")
        .user("carol@other.test", "pw")
        .config_toml(&config(access))
        .start()
        .await
}

fn lists_extdisco(features: &[String]) -> (bool, bool) {
    (
        features.iter().any(|f| f == NS_V2),
        features.iter().any(|f| f == NS_V1),
    )
}

#[tokio::test]
async fn a_jid_list_admits_only_that_jid_on_all_three_paths() -> anyhow::Result<()> {
    let server = server(r#"access = ["alice@localhost"]"#).await?;
    let mut alice = server.client("alice").await?;
    let mut bob = server.client("bob").await?;

    // services
    let reply = alice.iq_str(SERVICES).await?;
    assert_eq!(services(&reply).len(), 2, "stun + turn on the module host");
    assert_error(&bob.iq_str(SERVICES).await?, "forbidden", "auth");

    // credentials: refused too (Prosody checks only services)
    let reply = alice.iq_str(&credentials_iq(CREDENTIALS)).await?;
    assert_eq!(services(&reply).len(), 1);
    assert_error(
        &bob.iq_str(&credentials_iq(CREDENTIALS)).await?,
        "forbidden",
        "auth",
    );
    // Even with a request that would otherwise be an item-not-found or bad-request.
    assert_error(
        &bob.iq_str(&credentials_iq(
            "<service type='turn' host='nowhere.example'/>",
        ))
        .await?,
        "forbidden",
        "auth",
    );
    // And in :1.
    let v1 = "<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:1'/></iq>";
    assert_error(&bob.iq_str(v1).await?, "forbidden", "auth");
    assert_eq!(alice.iq_str(v1).await?.attr("type"), Some("result"));

    // disco advertisement
    assert_eq!(
        lists_extdisco(&server_features(&mut alice).await?),
        (true, true)
    );
    let bob_features = server_features(&mut bob).await?;
    assert_eq!(
        lists_extdisco(&bob_features),
        (false, false),
        "{bob_features:?}"
    );
    assert!(
        bob_features.iter().any(|f| f == "urn:xmpp:ping"),
        "disco itself still answers bob: {bob_features:?}"
    );
    Ok(())
}

#[tokio::test]
async fn by_default_authenticated_local_users_are_admitted_and_others_not() -> anyhow::Result<()> {
    let server = server("").await?;
    for user in ["alice", "bob"] {
        let mut client = server.client(user).await?;
        let list = services(&client.iq_str(SERVICES).await?);
        assert_eq!(list.len(), 2, "{user}");
        assert!(
            list.iter()
                .any(|s| s.kind == "turn" && s.password.is_some()),
            "{user}"
        );
        let reply = client.iq_str(&credentials_iq(CREDENTIALS)).await?;
        assert_eq!(services(&reply).len(), 1, "{user}");
        assert_eq!(
            lists_extdisco(&server_features(&mut client).await?),
            (true, true),
            "{user}"
        );
    }
    // A user of another host of the same server is not "local" to localhost.
    let mut carol = server.client("carol@other.test").await?;
    assert_error(&carol.iq_str(SERVICES).await?, "forbidden", "auth");
    assert_error(
        &carol.iq_str(&credentials_iq(CREDENTIALS)).await?,
        "forbidden",
        "auth",
    );
    assert_eq!(
        lists_extdisco(&server_features(&mut carol).await?),
        (false, false)
    );
    Ok(())
}

#[tokio::test]
async fn a_domain_admits_every_user_of_that_domain() -> anyhow::Result<()> {
    let server = server(r#"access = ["localhost"]"#).await?;
    for user in ["alice", "bob"] {
        let mut client = server.client(user).await?;
        assert_eq!(services(&client.iq_str(SERVICES).await?).len(), 2, "{user}");
        let reply = client.iq_str(&credentials_iq(CREDENTIALS)).await?;
        assert_eq!(services(&reply).len(), 1, "{user}");
        assert_eq!(
            lists_extdisco(&server_features(&mut client).await?),
            (true, true),
            "{user}"
        );
    }
    let mut carol = server.client("carol@other.test").await?;
    assert_error(&carol.iq_str(SERVICES).await?, "forbidden", "auth");
    Ok(())
}

#[tokio::test]
async fn revoking_access_by_reload_withdraws_everything_by_push() -> anyhow::Result<()> {
    let server = server("").await?;
    let mut bob = server.client("bob").await?;
    assert_eq!(services(&bob.iq_str(SERVICES).await?).len(), 2);
    server
        .reload_toml(&config(r#"access = ["alice@localhost"]"#))
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    let push = next_push(&mut bob).await?;
    let changes = pushed(&push);
    assert_eq!(changes.len(), 2, "{}", show(&push));
    assert!(
        changes.iter().all(|(action, s)| *action
            == tern::modules::external_services::xml::Action::Delete
            && s.password.is_none()),
        "{}",
        show(&push)
    );
    assert_error(&bob.iq_str(SERVICES).await?, "forbidden", "auth");
    assert_eq!(
        lists_extdisco(&server_features(&mut bob).await?),
        (false, false)
    );
    Ok(())
}
