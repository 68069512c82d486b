//! What one configured service turns into on the wire: delivery of credentials, names by
//! language, extended information, static credentials and fixed expiry.

use std::time::{Duration, SystemTime};

use tern::modules::external_services::credentials::turn_password;
use tern::testing::TestServer;
use tern::xml::ns;

use super::support::*;

const CONFIG: &str = r#"
modules_enabled = ["disco", "ping", "external_services"]
[modules.external_services]
host = "turn.example.org"
secret = "module-secret"
ttl = 600
rate_limit = false
[[modules.external_services.services]]
type = "turn"
port = 3478
credentials = "on_request"
name = { en = "Relay", de = "Relais" }
info = { region = "eu" }
[[modules.external_services.services]]
type = "turn"
host = "static.example.org"
username = "alice-static"
password = "s3cret"
[[modules.external_services.services]]
type = "turns"
host = "fixed.example.org"
username = "until-2030"
password = "pw2030"
expires = "2030-01-01T00:00:00Z"
[[modules.external_services.services]]
type = "turn"
host = "asked.example.org"
username = "ask-me"
password = "pw-asked"
credentials = "on_request"
[[modules.external_services.services]]
type = "stun"
host = "datetime.example.org"
expires = 2031-06-01T12:00:00Z
"#;

async fn server() -> anyhow::Result<TestServer> {
    TestServer::builder()
        .user("romeo", "pw")
        .config_toml(CONFIG)
        .start()
        .await
}

fn services_iq(lang: Option<&str>) -> String {
    let lang = lang.map(|l| format!(" xml:lang='{l}'")).unwrap_or_default();
    format!(
        "<iq type='get' to='localhost'{lang}><services xmlns='urn:xmpp:extdisco:2' type='turn'/></iq>"
    )
}

#[tokio::test]
async fn on_request_credentials_are_withheld_from_the_services_answer() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo.iq_str(&services_iq(None)).await?;
    let relay = service_elements(&reply)
        .into_iter()
        .find(|s| s.attr("host") == Some("turn.example.org"))
        .expect("the on_request relay is listed");
    assert_eq!(relay.attr("restricted"), Some("true"), "{}", show(&relay));
    for attr in ["username", "password", "expires"] {
        assert_eq!(relay.attr(attr), None, "{attr} in {}", show(&relay));
    }

    let asked = SystemTime::now();
    let reply = romeo
        .iq_str(&credentials_iq(
            "<service type='turn' host='turn.example.org' port='3478'/>",
        ))
        .await?;
    let list = services(&reply);
    assert_eq!(list.len(), 1, "{}", show(&reply));
    let relay = &list[0];
    let username = relay.username.clone().expect("username");
    assert_eq!(
        relay.password.as_deref(),
        Some(turn_password("module-secret", &username).as_str())
    );
    let expires = relay.expires.expect("expires");
    let lifetime = expires.duration_since(asked)?;
    assert!(
        lifetime > Duration::from_secs(590) && lifetime <= Duration::from_secs(601),
        "{lifetime:?}"
    );
    assert!(relay.restricted);
    Ok(())
}

#[tokio::test]
async fn on_request_withholds_static_credentials_too() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo.iq_str(&services_iq(None)).await?;
    let asked = service_elements(&reply)
        .into_iter()
        .find(|s| s.attr("host") == Some("asked.example.org"))
        .expect("the on_request static relay is listed");
    assert_eq!(asked.attr("restricted"), Some("true"), "{}", show(&asked));
    for attr in ["username", "password", "expires"] {
        assert_eq!(asked.attr(attr), None, "{attr} in {}", show(&asked));
    }
    let reply = romeo
        .iq_str(&credentials_iq(
            "<service type='turn' host='asked.example.org'/>",
        ))
        .await?;
    let list = services(&reply);
    assert_eq!(list.len(), 1, "{}", show(&reply));
    assert_eq!(
        (list[0].username.as_deref(), list[0].password.as_deref()),
        (Some("ask-me"), Some("pw-asked"))
    );
    // The admin preview (`tern extdisco`) shows every credential, on_request ones too.
    let host = server.host("localhost").expect("host");
    let jid = jid::BareJid::new("romeo@localhost")?;
    let preview = tern::modules::external_services::preview(&host, &jid, Some("turn")).await?;
    let find = |host: &str| {
        preview
            .iter()
            .find(|s| s.host == host)
            .cloned()
            .unwrap_or_else(|| panic!("{host} missing from {preview:?}"))
    };
    let asked = find("asked.example.org");
    assert_eq!(
        (asked.username.as_deref(), asked.password.as_deref()),
        (Some("ask-me"), Some("pw-asked"))
    );
    let minted = find("turn.example.org");
    let username = minted.username.clone().expect("minted username");
    assert_eq!(
        minted.password.as_deref(),
        Some(turn_password("module-secret", &username).as_str())
    );
    Ok(())
}

#[tokio::test]
async fn names_follow_the_request_language() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let name = |reply: &tern::xml::Element| {
        service_elements(reply)
            .into_iter()
            .find(|s| s.attr("host") == Some("turn.example.org"))
            .and_then(|s| s.attr("name").map(str::to_string))
    };
    let reply = romeo.iq_str(&services_iq(Some("de"))).await?;
    assert_eq!(name(&reply).as_deref(), Some("Relais"), "{}", show(&reply));
    let reply = romeo.iq_str(&services_iq(Some("de-CH"))).await?;
    assert_eq!(name(&reply).as_deref(), Some("Relais"), "primary subtag");
    // Without xml:lang on the IQ, the stream's (en) applies.
    let reply = romeo.iq_str(&services_iq(None)).await?;
    assert_eq!(name(&reply).as_deref(), Some("Relay"), "{}", show(&reply));
    let reply = romeo.iq_str(&services_iq(Some("fr"))).await?;
    assert_eq!(name(&reply).as_deref(), Some("Relay"), "fallback");
    // The credentials answer is localised too.
    let reply = romeo
        .iq_str("<iq type='get' to='localhost' xml:lang='de'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='turn.example.org'/></credentials></iq>")
        .await?;
    assert_eq!(name(&reply).as_deref(), Some("Relais"), "{}", show(&reply));
    Ok(())
}

#[tokio::test]
async fn extended_information_is_a_data_form() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo.iq_str(&services_iq(None)).await?;
    let elements = service_elements(&reply);
    let relay = elements
        .iter()
        .find(|s| s.attr("host") == Some("turn.example.org"))
        .expect("relay");
    let form = relay
        .get_child("x", ns::DATA_FORMS)
        .unwrap_or_else(|| panic!("no form in {}", show(relay)));
    assert_eq!(form.attr("type"), Some("result"));
    let fields: Vec<(String, Vec<String>)> = form
        .children()
        .filter(|f| f.name() == "field")
        .map(|f| {
            (
                f.attr("var").unwrap_or_default().to_string(),
                f.children()
                    .filter(|v| v.name() == "value")
                    .map(|v| v.text())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(fields, vec![("region".to_string(), vec!["eu".to_string()])]);
    // Services without `info` carry no form.
    let static_relay = elements
        .iter()
        .find(|s| s.attr("host") == Some("static.example.org"))
        .expect("static relay");
    assert!(static_relay.get_child("x", ns::DATA_FORMS).is_none());
    Ok(())
}

#[tokio::test]
async fn static_credentials_are_returned_as_configured() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo.iq_str(SERVICES).await?;
    let elements = service_elements(&reply);
    let find = |host: &str| {
        elements
            .iter()
            .find(|s| s.attr("host") == Some(host))
            .cloned()
            .unwrap_or_else(|| panic!("{host} missing from {}", show(&reply)))
    };
    // Static credentials win over the module secret, and have no expiry.
    let fixed_creds = find("static.example.org");
    assert_eq!(fixed_creds.attr("username"), Some("alice-static"));
    assert_eq!(fixed_creds.attr("password"), Some("s3cret"));
    assert_eq!(fixed_creds.attr("restricted"), Some("true"));
    assert_eq!(fixed_creds.attr("expires"), None, "{}", show(&fixed_creds));
    // A fixed expiry is shown as configured (a string or a TOML date-time).
    let until = find("fixed.example.org");
    assert_eq!(until.attr("username"), Some("until-2030"));
    assert_eq!(until.attr("expires"), Some("2030-01-01T00:00:00Z"));
    assert_eq!(until.attr("restricted"), Some("true"));
    let datetime = find("datetime.example.org");
    assert_eq!(datetime.attr("expires"), Some("2031-06-01T12:00:00Z"));
    assert_eq!(datetime.attr("restricted"), Some("false"));

    // A credentials request returns static credentials unchanged.
    let reply = romeo
        .iq_str(&credentials_iq(
            "<service type='turn' host='static.example.org'/><service type='turns' host='fixed.example.org'/>",
        ))
        .await?;
    let list = services(&reply);
    let summary: Vec<(Option<&str>, Option<&str>, Option<SystemTime>)> = list
        .iter()
        .map(|s| (s.username.as_deref(), s.password.as_deref(), s.expires))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some("alice-static"), Some("s3cret"), None),
            (
                Some("until-2030"),
                Some("pw2030"),
                tern::modules::external_services::prepare::parse_timestamp("2030-01-01T00:00:00Z")
            ),
        ]
    );
    Ok(())
}
