//! The module system through a module of our own (`test_mod`): hook priorities and
//! `Handled`, handler errors, IQ handlers (payload, errors, timeouts), items and disco
//! features, unloading, lenient options with diagnostics, dependencies, failed loads, and
//! per-host enabling.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern::api::*;
use tern::testing::TestServer;
use tern::xml::writer;

use crate::common::*;

const TEST_NS: &str = "urn:example:test-mod";
const FEATURE: &str = "urn:example:test-mod:feature";

/// Shared between the module and the test: the module publishes it as an item, the test
/// finds it on the host.
#[derive(Default)]
struct Recorder {
    order: Mutex<Vec<&'static str>>,
    sessions: Mutex<Vec<String>>,
    count: Mutex<i64>,
    /// The ids of the IQ results and errors the stanza hooks saw.
    iq_answers: Mutex<Vec<String>>,
}

fn recorder(server: &TestServer) -> Arc<Recorder> {
    let host = server.host("localhost").expect("host");
    host.items
        .all::<Recorder>()
        .first()
        .cloned()
        .expect("test_mod is not loaded")
}

fn body_of(stanza: &Element) -> String {
    stanza
        .get_child("body", ns::CLIENT)
        .map(|b| b.text())
        .unwrap_or_default()
}

fn recording_hook(
    ctx: &mut ModuleContext,
    recorder: &Arc<Recorder>,
    priority: i32,
    label: &'static str,
) {
    let recorder = recorder.clone();
    ctx.hook::<StanzaEvent, _>(priority, move |event| {
        let recorder = recorder.clone();
        async move {
            if event.kind != StanzaKind::Message {
                return Ok(Flow::Continue);
            }
            let body = body_of(event.stanza.element());
            if body.starts_with("order") || body == "swallow" {
                recorder.order.lock().unwrap().push(label);
            }
            Ok(Flow::Continue)
        }
        .boxed()
    });
}

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let count = ctx.options().integer("count", 1..=10).unwrap_or(3);
    let recorder = Arc::new(Recorder::default());
    *recorder.count.lock().unwrap() = count;
    ctx.add_item(recorder.clone());
    ctx.add_feature(FEATURE);

    // Registered out of priority order on purpose; two share priority 0.
    recording_hook(ctx, &recorder, 0, "zero-a");
    recording_hook(ctx, &recorder, -5, "minus-five");
    recording_hook(ctx, &recorder, 5, "five");
    recording_hook(ctx, &recorder, 0, "zero-b");
    // Priority 10: the interceptor that swallows, refuses or rewrites.
    let r = recorder.clone();
    ctx.hook::<StanzaEvent, _>(10, move |event| {
        let recorder = r.clone();
        async move {
            // Bounces (type='error', carrying the original body) pass through the hooks
            // too; an interceptor must leave them alone.
            if event.kind != StanzaKind::Message || event.stanza.attr("type") == Some("error") {
                return Ok(Flow::Continue);
            }
            match body_of(event.stanza.element()).as_str() {
                body if body.starts_with("order") => {
                    recorder.order.lock().unwrap().push("ten");
                    Ok(Flow::Continue)
                }
                "swallow" => {
                    recorder.order.lock().unwrap().push("ten");
                    Ok(Flow::Handled)
                }
                "forbidden" => Err(HandlerError::Stanza(
                    StanzaError::new(Condition::Forbidden).text("not today"),
                )),
                "broken" => Err(HandlerError::Internal(anyhow::anyhow!(
                    "secret internal detail"
                ))),
                "stamp" => {
                    event
                        .stanza
                        .tree()
                        .append_child(element("stamped", TEST_NS));
                    Ok(Flow::Continue)
                }
                _ => Ok(Flow::Continue),
            }
        }
        .boxed()
    });

    let r = recorder.clone();
    ctx.hook::<StanzaEvent, _>(0, move |event| {
        let answer = event.kind == StanzaKind::Iq
            && matches!(event.stanza.attr("type"), Some("result" | "error"));
        if answer {
            let id = event.stanza.attr("id").unwrap_or_default().to_string();
            r.iq_answers.lock().unwrap().push(id);
        }
        async { Ok(Flow::Continue) }.boxed()
    });

    let r = recorder.clone();
    ctx.hook::<SessionBound, _>(0, move |event| {
        r.sessions
            .lock()
            .unwrap()
            .push(format!("bound {}", event.session.jid()));
        async { Ok(Flow::Continue) }.boxed()
    });
    let r = recorder.clone();
    ctx.hook::<SessionClosed, _>(0, move |event| {
        r.sessions
            .lock()
            .unwrap()
            .push(format!("closed {}", event.session.jid()));
        async { Ok(Flow::Continue) }.boxed()
    });

    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        TEST_NS,
        "payload",
        |request| async move {
            let session = request
                .session
                .as_ref()
                .and_then(|s| s.jid.as_ref())
                .map(|j| j.to_string())
                .unwrap_or_default();
            Ok(Some(
                element("payload", TEST_NS)
                    .with("from", request.from.to_string())
                    .with("to", request.to.to_string())
                    .with("session", session)
                    .with_text("42"),
            ))
        },
    );
    ctx.hook_iq(
        IqType::Set,
        IqTarget::Host,
        TEST_NS,
        "empty",
        |_request| async { Ok(None) },
    );
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        TEST_NS,
        "stanza-error",
        |_request| async {
            Err(StanzaError::new(Condition::NotAcceptable)
                .text("try again")
                .into())
        },
    );
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        TEST_NS,
        "internal",
        |_request| async {
            Err(HandlerError::Internal(anyhow::anyhow!(
                "secret internal detail"
            )))
        },
    );
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        TEST_NS,
        "slow",
        |_request| async {
            tokio::time::sleep(Duration::from_millis(2000)).await;
            Ok(Some(element("slow", TEST_NS).with_text("too late")))
        },
    );
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Bare,
        TEST_NS,
        "account",
        |request| async move {
            Ok(Some(
                element("account", TEST_NS).with("to", request.to.to_string()),
            ))
        },
    );
    Ok(())
}

const TEST_MOD: ModuleDescriptor = ModuleDescriptor {
    name: "test_mod",
    depends: &[],
    load,
};

fn load_needing_version(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    ctx.add_feature("urn:example:needs-version");
    Ok(())
}

const TEST_DEP: ModuleDescriptor = ModuleDescriptor {
    name: "test_dep",
    depends: &["version"],
    load: load_needing_version,
};

fn load_failing(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    ctx.add_feature("urn:example:half-loaded");
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        "urn:example:half-loaded",
        "query",
        |_request| async { Ok(None) },
    );
    anyhow::bail!("this module always fails to load")
}

const TEST_FAIL: ModuleDescriptor = ModuleDescriptor {
    name: "test_fail",
    depends: &[],
    load: load_failing,
};

const ENABLED: &str = "modules_enabled = [\"disco\", \"ping\", \"test_mod\"]";

async fn server_with(extra: &[&str]) -> anyhow::Result<TestServer> {
    let mut builder = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .module(TEST_MOD)
        .module(TEST_DEP)
        .module(TEST_FAIL);
    for toml in extra {
        builder = builder.config_toml(toml);
    }
    builder.start().await
}

async fn disco_features(client: &mut tern::testing::TestClient) -> anyhow::Result<Vec<String>> {
    let reply = client
        .iq_str("<iq type='get' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&reply)
    );
    Ok(reply
        .get_child("query", ns::DISCO_INFO)
        .map(|q| {
            q.children()
                .filter_map(|c| c.attr("var").map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

fn iq(name: &str, iq_type: &str) -> String {
    format!("<iq type='{iq_type}' to='localhost'><{name} xmlns='{TEST_NS}'/></iq>")
}

#[tokio::test]
async fn hooks_run_in_priority_order() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED]).await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    romeo
        .send_str(&message("juliet@localhost", "order please"))
        .await?;
    assert_eq!(
        body(&juliet.expect().await?).as_deref(),
        Some("order please")
    );
    let order = recorder(&server).order.lock().unwrap().clone();
    assert_eq!(order, vec!["ten", "five", "zero-a", "zero-b", "minus-five"]);
    Ok(())
}

#[tokio::test]
async fn handled_stops_lower_priority_handlers_and_delivery() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED]).await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    romeo
        .send_str(&message("juliet@localhost", "swallow"))
        .await?;
    romeo.sync().await?;
    juliet.expect_silence(QUIET).await?;
    romeo.expect_silence(QUIET).await?;
    assert_eq!(recorder(&server).order.lock().unwrap().clone(), vec!["ten"]);
    // Other messages still flow.
    romeo
        .send_str(&message("juliet@localhost", "normal"))
        .await?;
    assert_eq!(body(&juliet.expect().await?).as_deref(), Some("normal"));
    Ok(())
}

#[tokio::test]
async fn handlers_may_rewrite_the_stanza() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED]).await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    romeo
        .send_str(&message("juliet@localhost", "stamp"))
        .await?;
    let got = juliet.expect().await?;
    assert!(
        got.get_child("stamped", TEST_NS).is_some(),
        "{}",
        writer::to_string(&got)
    );
    Ok(())
}

#[tokio::test]
async fn handler_errors_reach_the_sender() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED]).await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    romeo
        .send_str(
            "<message to='juliet@localhost' type='chat' id='f1'><body>forbidden</body></message>",
        )
        .await?;
    let error = romeo.expect().await?;
    assert_eq!(error.attr("id"), Some("f1"));
    assert_error(&error, "forbidden");
    assert_eq!(error_type(&error).as_deref(), Some("auth"));
    let text = error
        .get_child("error", ns::CLIENT)
        .and_then(|e| e.get_child("text", ns::STANZAS_ERR))
        .map(|t| t.text());
    assert_eq!(text.as_deref(), Some("not today"));
    // An internal failure is internal-server-error, without the internal detail.
    romeo
        .send_str(
            "<message to='juliet@localhost' type='chat' id='f2'><body>broken</body></message>",
        )
        .await?;
    let error = romeo.expect().await?;
    assert_eq!(error.attr("id"), Some("f2"));
    assert_error(&error, "internal-server-error");
    assert!(
        !writer::to_string(&error).contains("secret"),
        "{}",
        writer::to_string(&error)
    );
    juliet.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn iq_handler_payload_becomes_the_result() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED]).await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo.iq_str(&iq("payload", "get")).await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&reply)
    );
    assert_eq!(reply.attr("from"), Some("localhost"));
    let payload = reply.get_child("payload", TEST_NS).expect("payload");
    assert_eq!(payload.text(), "42");
    assert_eq!(payload.attr("from"), Some(romeo.jid().to_string().as_str()));
    assert_eq!(payload.attr("to"), Some("localhost"));
    assert_eq!(
        payload.attr("session"),
        Some(romeo.jid().to_string().as_str())
    );
    // No payload: an empty result.
    let reply = romeo.iq_str(&iq("empty", "set")).await?;
    assert_eq!(reply.attr("type"), Some("result"));
    assert_eq!(reply.children().count(), 0);
    // The type matters: a set to a get handler is not handled.
    let reply = romeo.iq_str(&iq("payload", "set")).await?;
    assert_error(&reply, "service-unavailable");
    // An account-level handler sees the addressed bare JID.
    let reply = romeo
        .iq_str(&format!(
            "<iq type='get' to='juliet@localhost'><account xmlns='{TEST_NS}'/></iq>"
        ))
        .await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&reply)
    );
    assert_eq!(
        reply
            .get_child("account", TEST_NS)
            .and_then(|a| a.attr("to")),
        Some("juliet@localhost")
    );
    romeo.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn iq_handler_errors_become_the_error_reply() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED]).await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo.iq_str(&iq("stanza-error", "get")).await?;
    assert_error(&reply, "not-acceptable");
    assert_eq!(error_type(&reply).as_deref(), Some("modify"));
    let reply = romeo.iq_str(&iq("internal", "get")).await?;
    assert_error(&reply, "internal-server-error");
    assert!(
        !writer::to_string(&reply).contains("secret"),
        "{}",
        writer::to_string(&reply)
    );
    romeo.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn slow_iq_handler_gets_exactly_one_error_reply() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED, "[limits]\niq_timeout = 1"]).await?;
    let mut romeo = server.client("romeo").await?;
    let started = std::time::Instant::now();
    let reply = romeo.iq_str(&iq("slow", "get")).await?;
    let elapsed = started.elapsed();
    assert_error(&reply, "internal-server-error");
    assert!(
        elapsed >= Duration::from_millis(900),
        "answered before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1900),
        "answered after the handler finished: {elapsed:?}"
    );
    // The handler would have finished at 2 s: no late second reply.
    romeo.expect_silence(Duration::from_millis(1300)).await?;
    romeo.sync().await
}

#[tokio::test]
async fn module_items_show_in_disco_and_unloading_removes_everything() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED]).await?;
    let host = server.host("localhost").expect("host");
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    assert!(disco_features(&mut romeo)
        .await?
        .contains(&FEATURE.to_string()));
    assert!(tern::module::loaded(&host).contains(&"test_mod".to_string()));

    assert!(tern::module::unload(&host, "test_mod"));
    assert!(!tern::module::unload(&host, "test_mod"), "unloaded twice");
    assert!(!tern::module::loaded(&host).contains(&"test_mod".to_string()));
    let features = disco_features(&mut romeo).await?;
    assert!(!features.contains(&FEATURE.to_string()), "{features:?}");
    assert!(
        features.contains(&ns::PING.to_string()),
        "other modules' features went too"
    );
    assert!(
        host.items.all::<Recorder>().is_empty(),
        "the module's item survived"
    );
    // Its IQ handlers are gone.
    let reply = romeo.iq_str(&iq("payload", "get")).await?;
    assert_error(&reply, "service-unavailable");
    // Its hooks are gone: a message it used to swallow is delivered.
    romeo
        .send_str(&message("juliet@localhost", "swallow"))
        .await?;
    assert_eq!(body(&juliet.expect().await?).as_deref(), Some("swallow"));
    Ok(())
}

#[tokio::test]
async fn session_events_fire_on_bind_and_close() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED]).await?;
    let mut options = server.options("romeo", "pw");
    options.resource = Some("events".into());
    let romeo = server.client_with(options).await?;
    romeo.close().await?;
    let recorder = recorder(&server);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let sessions = recorder.sessions.lock().unwrap().clone();
        if sessions.len() >= 2 {
            assert_eq!(
                sessions,
                vec![
                    "bound romeo@localhost/events",
                    "closed romeo@localhost/events"
                ]
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{sessions:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test]
async fn wrong_typed_option_uses_the_default_and_reports_the_key() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED, "[modules.test_mod]\ncount = \"abc\""]).await?;
    assert_eq!(
        *recorder(&server).count.lock().unwrap(),
        3,
        "the default was not used"
    );
    let diagnostics = server.server().config().diagnostics.all();
    assert!(
        diagnostics
            .iter()
            .any(|d| d.key == "modules.test_mod.count"),
        "no diagnostic for modules.test_mod.count in {diagnostics:?}"
    );
    // The server runs regardless.
    let mut romeo = server.client("romeo").await?;
    romeo.sync().await
}

#[tokio::test]
async fn valid_and_out_of_range_options() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED, "[modules.test_mod]\ncount = 7"]).await?;
    assert_eq!(*recorder(&server).count.lock().unwrap(), 7);
    let diagnostics = server.server().config().diagnostics.all();
    assert!(
        !diagnostics.iter().any(|d| d.key.contains("test_mod")),
        "{diagnostics:?}"
    );

    let server = server_with(&[ENABLED, "[modules.test_mod]\ncount = 50"]).await?;
    assert_eq!(*recorder(&server).count.lock().unwrap(), 3);
    let diagnostics = server.server().config().diagnostics.all();
    assert!(
        diagnostics
            .iter()
            .any(|d| d.key == "modules.test_mod.count"),
        "{diagnostics:?}"
    );

    // Host options override global ones.
    let server = server_with(&[
        ENABLED,
        "[modules.test_mod]\ncount = 2\n[hosts.localhost.modules.test_mod]\ncount = 9",
    ])
    .await?;
    assert_eq!(*recorder(&server).count.lock().unwrap(), 9);
    Ok(())
}

#[tokio::test]
async fn per_host_disabled_module_is_not_loaded_there() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .host("localhost")
        .host("other.test")
        .user("romeo", "pw")
        .config_toml("[hosts.localhost]\nmodules_disabled = [\"ping\"]")
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_error(&reply, "service-unavailable");
    let features = disco_features(&mut romeo).await?;
    assert!(!features.contains(&ns::PING.to_string()), "{features:?}");
    assert!(features.contains(&ns::VERSION.to_string()), "{features:?}");
    // The other host still runs it.
    let reply = romeo
        .iq_str("<iq type='get' to='other.test'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&reply)
    );
    let other = server.host("other.test").expect("host");
    assert!(tern::module::loaded(&other).contains(&"ping".to_string()));
    let local = server.host("localhost").expect("host");
    assert!(!tern::module::loaded(&local).contains(&"ping".to_string()));
    Ok(())
}

#[tokio::test]
async fn per_host_enabled_module_is_loaded_only_there() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .host("localhost")
        .host("other.test")
        .user("romeo", "pw")
        .module(TEST_MOD)
        .config_toml("modules_enabled = [\"disco\", \"ping\"]\n[hosts.\"other.test\"]\nmodules_enabled = [\"test_mod\"]")
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let here = romeo.iq_str(&iq("payload", "get")).await?;
    assert_error(&here, "service-unavailable");
    let there = romeo
        .iq_str(&format!(
            "<iq type='get' to='other.test'><payload xmlns='{TEST_NS}'/></iq>"
        ))
        .await?;
    assert_eq!(
        there.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&there)
    );
    Ok(())
}

#[tokio::test]
async fn dependencies_are_loaded_first() -> anyhow::Result<()> {
    let server = server_with(&["modules_enabled = [\"disco\", \"ping\", \"test_dep\"]"]).await?;
    let host = server.host("localhost").expect("host");
    let loaded = tern::module::loaded(&host);
    let version = loaded
        .iter()
        .position(|m| m == "version")
        .expect("version was not loaded");
    let dependent = loaded
        .iter()
        .position(|m| m == "test_dep")
        .expect("test_dep was not loaded");
    assert!(version < dependent, "{loaded:?}");
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
        .await?;
    assert_eq!(reply.attr("type"), Some("result"));
    Ok(())
}

#[tokio::test]
async fn a_failing_module_leaves_nothing_behind_and_the_server_runs() -> anyhow::Result<()> {
    let server = server_with(&[
        "modules_enabled = [\"disco\", \"ping\", \"test_fail\", \"no_such_module\"]",
    ])
    .await?;
    let host = server.host("localhost").expect("host");
    assert!(!tern::module::loaded(&host).contains(&"test_fail".to_string()));
    let mut romeo = server.client("romeo").await?;
    let features = disco_features(&mut romeo).await?;
    assert!(
        !features.contains(&"urn:example:half-loaded".to_string()),
        "{features:?}"
    );
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><query xmlns='urn:example:half-loaded'/></iq>")
        .await?;
    assert_error(&reply, "service-unavailable");
    let diagnostics: Vec<String> = server
        .server()
        .config()
        .diagnostics
        .all()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(
        diagnostics.iter().any(|d| d.contains("test_fail")),
        "{diagnostics:?}"
    );
    assert!(
        diagnostics.iter().any(|d| d.contains("no_such_module")),
        "{diagnostics:?}"
    );
    Ok(())
}

/// The server's answers to a client's own requests go straight back to the session that
/// asked; an answer from another client is a stanza like any other and passes the
/// stanza hooks on its way.
#[tokio::test]
async fn server_answers_skip_the_stanza_hooks_and_client_answers_pass_them() -> anyhow::Result<()> {
    let server = server_with(&[ENABLED]).await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    let pong = romeo
        .iq_str("<iq type='get' id='to-server' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_eq!(pong.attr("type"), Some("result"));
    assert_eq!(pong.attr("id"), Some("to-server"));
    assert_eq!(pong.attr("to"), Some(romeo.jid().as_str()));
    let refused = romeo
        .iq_str(&iq("stanza-error", "get").replace("<iq ", "<iq id='refused' "))
        .await?;
    assert_eq!(refused.attr("type"), Some("error"));

    romeo
        .send_str(&format!(
            "<iq type='get' id='to-juliet' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
            juliet.jid()
        ))
        .await?;
    let request = juliet.expect_where(|s| s.name() == "iq").await?;
    juliet
        .send_str(&format!(
            "<iq type='result' id='to-juliet' to='{}'/>",
            request.attr("from").unwrap_or_default()
        ))
        .await?;
    let answer = romeo.expect_where(|s| s.name() == "iq").await?;
    assert_eq!(answer.attr("id"), Some("to-juliet"));
    assert_eq!(answer.attr("from"), Some(juliet.jid().as_str()));

    let seen = recorder(&server).iq_answers.lock().unwrap().clone();
    assert_eq!(seen, vec!["to-juliet".to_string()]);
    Ok(())
}
