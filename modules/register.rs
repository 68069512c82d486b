//! `register` (XEP-0077): in-band registration (off unless `allow_registration = true`,
//! rate-limited per IP), and for logged-in users password change and account removal.
//!
//! ```toml
//! [modules.register]
//! allow_registration = false   # new accounts from clients
//! registrations_per_hour = 3   # per IP address
//! min_password_length = 8
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::*;
use crate::sasl::{normalize_username, StoredCredentials, DEFAULT_ITERATIONS};
use crate::stanza::{StreamError, StreamErrorCondition};

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "register",
    depends: &[],
    load,
};

pub const NS_REGISTER: &str = "jabber:iq:register";
const NS_FEATURE: &str = "http://jabber.org/features/iq-register";

struct Settings {
    allow_registration: bool,
    per_hour: usize,
    min_password_length: usize,
    /// Recent registrations by address.
    recent: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl Settings {
    /// Takes one of `ip`'s registrations for this hour, atomically (parallel attempts
    /// cannot all pass the check); `false` when none is left.
    fn reserve(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|_, times| {
            times.retain(|t| now.duration_since(*t) < Duration::from_secs(3600));
            !times.is_empty()
        });
        let times = recent.entry(ip).or_default();
        if times.len() >= self.per_hour {
            return false;
        }
        times.push(now);
        true
    }

    /// Gives a reservation back: refused attempts (a taken name) do not count.
    fn release(&self, ip: IpAddr) {
        if let Some(times) = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&ip)
        {
            times.pop();
        }
    }
}

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let options = ctx.options();
    let settings = Arc::new(Settings {
        allow_registration: options.bool("allow_registration").unwrap_or(false),
        per_hour: options
            .integer("registrations_per_hour", 1..=10_000)
            .unwrap_or(3) as usize,
        min_password_length: options
            .integer("min_password_length", 1..=1024)
            .unwrap_or(8) as usize,
        recent: Mutex::new(HashMap::new()),
    });
    ctx.add_feature(NS_REGISTER);
    if settings.allow_registration {
        ctx.add_item(Arc::new(PreAuthStreamFeature(element(
            "register", NS_FEATURE,
        ))));
    }

    let s = settings.clone();
    ctx.hook::<PreAuthIq, _>(0, move |event| {
        let settings = s.clone();
        Box::pin(async move {
            let Some(query) = event.stanza.get_child("query", NS_REGISTER) else {
                return Ok(Flow::Continue);
            };
            let reply = match event.stanza.attr("type") {
                Some("get") => Ok(Some(
                    element("query", NS_REGISTER)
                        .with_child(
                            element("instructions", NS_REGISTER)
                                .with_text("Choose a user name and password."),
                        )
                        .with_child(element("username", NS_REGISTER))
                        .with_child(element("password", NS_REGISTER)),
                )),
                Some("set") => register(&settings, &event.host, event.peer.ip(), query).await,
                _ => Err(StanzaError::bad_request("get or set")),
            };
            event.reply = Some(match reply {
                Ok(payload) => {
                    let mut result = iq_result(&event.stanza, payload);
                    result.remove_attr("from");
                    result
                }
                Err(error) => {
                    let mut reply = error_reply(&event.stanza, &error);
                    reply.remove_attr("from");
                    reply
                }
            });
            Ok(Flow::Handled)
        })
    });

    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        NS_REGISTER,
        "query",
        |request| async move {
            let user = request
                .from
                .node()
                .map(|n| n.to_string())
                .unwrap_or_default();
            Ok(Some(
                element("query", NS_REGISTER)
                    .with_child(element("registered", NS_REGISTER))
                    .with_child(element("username", NS_REGISTER).with_text(user)),
            ))
        },
    );
    let s = settings;
    ctx.hook_iq(
        IqType::Set,
        IqTarget::Host,
        NS_REGISTER,
        "query",
        move |request| {
            let settings = s.clone();
            async move {
                // Only a client of this host changes its own password here: `from` of a
                // user of another virtual host names a different account.
                let user = request
                    .session
                    .as_ref()
                    .filter(|s| s.host == request.host.name)
                    .and_then(|s| s.username.clone())
                    .filter(|_| request.from.domain().as_str() == request.host.name)
                    .ok_or_else(|| {
                        StanzaError::new(Condition::NotAllowed)
                            .text("one may only change one's own password")
                    })?;
                let query = request.payload();
                if let Some(name) = query.get_child("username", NS_REGISTER).map(|u| u.text()) {
                    if normalize_username(&name).as_deref() != Some(user.as_str()) {
                        return Err(StanzaError::new(Condition::NotAllowed)
                            .text("one may only change one's own password")
                            .into());
                    }
                }
                let password = query
                    .get_child("password", NS_REGISTER)
                    .map(|p| p.text())
                    .ok_or_else(|| StanzaError::bad_request("a new <password/> is required"))?;
                let credentials = checked_credentials(&settings, &password)?;
                let host = &request.host;
                host.storage()
                    .set_credentials(&host.name, &user, &credentials)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                tracing::info!(user = %user, host = %host.name, "password changed in-band");
                Ok(None)
            }
        },
    );

    // Account removal answers first, then ends the user's streams, in that order: the
    // result goes through the same queue as the close.
    ctx.hook::<OutgoingStanza, _>(10, |event| {
        // Every stanza a client sends comes here: the others pass without a future.
        if event.kind != StanzaKind::Iq || event.stanza.attr("type") != Some("set") {
            return pass();
        }
        Box::pin(async move {
            let removal = event
                .stanza
                .attr("to")
                .is_none_or(|to| to == event.host.name)
                && event
                    .stanza
                    .element()
                    .get_child("query", NS_REGISTER)
                    .is_some_and(|q| q.has_child("remove", NS_REGISTER));
            if !removal {
                return Ok(Flow::Continue);
            }
            let Some(jid) = event.origin.jid.clone() else {
                return Ok(Flow::Continue);
            };
            let user = jid.node().map(|n| n.to_string()).unwrap_or_default();
            let host = event.host.clone();
            host.delete_account(&user)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            tracing::info!(user = %user, host = %host.name, "account removed in-band");
            let sessions = host.sessions_of(&user);
            if let Some(own) = sessions.iter().find(|s| s.id() == event.origin.id) {
                let mut result = iq_result(event.stanza.element(), None);
                result.set("to", jid.to_string());
                result.remove_attr("from");
                own.send(result);
            }
            for session in sessions {
                session.close(Some(StreamError::with_text(
                    StreamErrorCondition::NotAuthorized,
                    "account removed",
                )));
            }
            Ok(Flow::Handled)
        })
    });
    Ok(())
}

fn checked_credentials(
    settings: &Settings,
    password: &str,
) -> Result<StoredCredentials, StanzaError> {
    if password.chars().count() < settings.min_password_length {
        return Err(StanzaError::new(Condition::NotAcceptable).text(format!(
            "passwords need at least {} characters",
            settings.min_password_length
        )));
    }
    StoredCredentials::derive(password, DEFAULT_ITERATIONS).map_err(|err| {
        StanzaError::new(Condition::NotAcceptable).text(format!("unusable password: {err}"))
    })
}

async fn register(
    settings: &Settings,
    host: &Host,
    ip: IpAddr,
    query: &Element,
) -> Result<Option<Element>, StanzaError> {
    if !settings.allow_registration {
        return Err(
            StanzaError::new(Condition::NotAllowed).text("in-band registration is disabled here")
        );
    }
    let username = query
        .get_child("username", NS_REGISTER)
        .map(|u| u.text())
        .unwrap_or_default();
    let password = query
        .get_child("password", NS_REGISTER)
        .map(|p| p.text())
        .unwrap_or_default();
    let user = normalize_username(&username)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            StanzaError::new(Condition::NotAcceptable).text("invalid or missing user name")
        })?;
    let credentials = checked_credentials(settings, &password)?;
    if !settings.reserve(ip) {
        return Err(StanzaError::new(Condition::ResourceConstraint)
            .text("too many registrations from your address; try later"));
    }
    let created = match host
        .storage()
        .create_account(&host.name, &user, &credentials)
        .await
    {
        Ok(created) => created,
        Err(err) => {
            settings.release(ip);
            tracing::error!(%err, "registration failed");
            return Err(StanzaError::new(Condition::InternalServerError));
        }
    };
    if !created {
        settings.release(ip);
        return Err(StanzaError::new(Condition::Conflict).text("that user name is taken"));
    }
    tracing::info!(user = %user, host = %host.name, %ip, "account registered in-band");
    Ok(None)
}
