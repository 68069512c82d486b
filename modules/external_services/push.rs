//! Pushes (XEP-0215 §3.3), which no other server sends: a session that asked for services
//! and is still online gets an IQ-set `<services/>` with `action` on each `<service/>`
//! when what it may see changes (items added or removed, config reloaded), and a
//! `modify` with fresh credentials before its credentials expire.
//!
//! A subscription ends with the session, or when the client answers a push with an error.
//! One scheduler task (a module task, aborted on unload) fires the credential refreshes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use super::service::ExternalService;
use super::xml::{self, Action, Version};
use super::State;
use crate::api::*;
use crate::session::SessionId;

type Key = (SessionId, Option<String>);

/// The shortest interval between two credential refreshes of one subscription.
const MIN_REFRESH: Duration = Duration::from_secs(1);

struct Subscription {
    session: SessionHandle,
    requested_type: Option<String>,
    lang: Option<String>,
    /// What the client holds now.
    last: Vec<ExternalService>,
}

#[derive(Default)]
pub(crate) struct Pushes {
    /// By session, then by requested type: a session's close drops its entries without
    /// visiting anyone else's.
    subscriptions: Mutex<HashMap<SessionId, HashMap<Option<String>, Subscription>>>,
    schedule: Mutex<Schedule>,
    wake: Notify,
    /// Serialises recomputations: item events arrive in bursts (a reload replaces every
    /// item), and two concurrent diffs against the same `last` would push twice.
    updating: tokio::sync::Mutex<()>,
}

/// Credential refresh deadlines, in time order and by subscription, so that replacing or
/// dropping one costs a lookup rather than a walk over every subscriber.
#[derive(Default)]
struct Schedule {
    in_order: BTreeSet<(Instant, SessionId, Option<String>)>,
    by_key: HashMap<Key, Instant>,
}

impl Schedule {
    /// Replaces `key`'s deadline; true when the new one is now the earliest.
    fn set(&mut self, key: Key, at: Option<Instant>) -> bool {
        self.remove(&key);
        let Some(at) = at else {
            return false;
        };
        let earliest = self
            .in_order
            .first()
            .is_none_or(|(first, _, _)| at < *first);
        self.in_order.insert((at, key.0, key.1.clone()));
        self.by_key.insert(key, at);
        earliest
    }

    fn remove(&mut self, key: &Key) {
        if let Some(at) = self.by_key.remove(key) {
            self.in_order.remove(&(at, key.0, key.1.clone()));
        }
    }

    fn first(&self) -> Option<(Instant, SessionId, Option<String>)> {
        self.in_order.first().cloned()
    }
}

impl Pushes {
    /// Records that `session` saw `services` for `requested_type`.
    pub(crate) fn subscribe(
        &self,
        state: &State,
        info: &Arc<SessionInfo>,
        requested_type: Option<String>,
        lang: Option<String>,
        services: Vec<ExternalService>,
    ) {
        let Some(jid) = info.jid.as_ref() else {
            return;
        };
        let Some(session) = state.host.session(jid) else {
            return;
        };
        let key = (info.id, requested_type.clone());
        self.schedule_refresh(state, key, &services);
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(info.id)
            .or_default()
            .insert(
                requested_type.clone(),
                Subscription {
                    session,
                    requested_type,
                    lang,
                    last: services,
                },
            );
    }

    fn schedule_refresh(&self, state: &State, key: Key, services: &[ExternalService]) {
        let at = refresh_deadline(services, state.settings().refresh_at);
        let earliest = self
            .schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set(key, at);
        // The scheduler sleeps until the earliest deadline; a later one needs no wake-up
        // (had this key held the earliest, the scheduler wakes then, finds the next one
        // later and sleeps again).
        if earliest {
            self.wake.notify_one();
        }
    }

    fn unsubscribe_session(&self, id: SessionId) {
        let Some(kinds) = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
        else {
            return;
        };
        let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        for kind in kinds.into_keys() {
            schedule.remove(&(id, kind));
        }
    }

    fn unsubscribe(&self, key: &Key) {
        {
            let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(kinds) = subscriptions.get_mut(&key.0) {
                kinds.remove(&key.1);
                if kinds.is_empty() {
                    subscriptions.remove(&key.0);
                }
            }
        }
        self.schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    fn keys(&self) -> Vec<Key> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|(id, kinds)| kinds.keys().map(|kind| (*id, kind.clone())))
            .collect()
    }
}

/// When to push fresh credentials: at `fraction` of the shortest remaining lifetime.
fn refresh_deadline(services: &[ExternalService], fraction: f64) -> Option<Instant> {
    let now = SystemTime::now();
    services
        .iter()
        .filter(|s| s.mints_credentials() && s.username.is_some())
        .filter_map(|s| s.expires)
        .map(|expires| expires.duration_since(now).unwrap_or(Duration::ZERO))
        .min()
        // A floor, so that a provider handing out credentials that are (nearly)
        // expired cannot make the scheduler spin minting and pushing.
        .map(|remaining| Instant::now() + remaining.mul_f64(fraction).max(MIN_REFRESH))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Something changed: push what was added, removed or changed (ignoring credentials).
    Changes,
    /// Credentials are about to expire: also push every service with fresh credentials.
    Refresh,
}

/// What changed between what the client holds and what it may see now.
fn diff(
    old: &[ExternalService],
    new: &[ExternalService],
    mode: Mode,
) -> Vec<(Action, ExternalService)> {
    let mut out = Vec::new();
    for service in old {
        if !new.iter().any(|n| n.key() == service.key()) {
            out.push((Action::Delete, service.without_credentials()));
        }
    }
    for service in new {
        match old.iter().find(|o| o.key() == service.key()) {
            None => out.push((Action::Add, service.clone())),
            Some(previous) => {
                let changed = previous.without_credentials() != service.without_credentials();
                let refreshed = mode == Mode::Refresh
                    && service.mints_credentials()
                    && service.username.is_some();
                if changed || refreshed {
                    out.push((Action::Modify, service.clone()));
                }
            }
        }
    }
    out
}

/// Recomputes one subscription and sends what changed.
async fn update(state: Arc<State>, key: Key, mode: Mode) {
    let _serial = state.pushes.updating.lock().await;
    let (session, requested_type, lang, last) = {
        let subscriptions = state
            .pushes
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(sub) = subscriptions
            .get(&key.0)
            .and_then(|kinds| kinds.get(&key.1))
        else {
            return;
        };
        (
            sub.session.clone(),
            sub.requested_type.clone(),
            sub.lang.clone(),
            sub.last.clone(),
        )
    };
    if session.is_closing() {
        state.pushes.unsubscribe(&key);
        return;
    }
    let Some(requester) = session.info().bare_jid() else {
        return;
    };
    let settings = state.settings();
    let authenticated_here =
        session.info().is_authenticated() && session.info().host == state.host.name;
    let now_visible = if settings
        .access
        .allows(&requester, &state.host.name, authenticated_here)
    {
        match super::visible_services(
            &state,
            Some(session.info().clone()),
            &requester,
            Version::V2,
            requested_type.as_deref(),
            true,
            true,
        )
        .await
        {
            Ok(services) => services,
            Err(err) => {
                tracing::warn!(jid = %session.jid(), %err, "could not compute a services push");
                return;
            }
        }
    } else {
        // Access was revoked (e.g. by a reload): everything goes.
        Vec::new()
    };
    let changes = diff(&last, &now_visible, mode);
    if let Some(sub) = state
        .pushes
        .subscriptions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&key.0)
        .and_then(|kinds| kinds.get_mut(&key.1))
    {
        sub.last = now_visible.clone();
    }
    state
        .pushes
        .schedule_refresh(&state, key.clone(), &now_visible);
    if changes.is_empty() {
        return;
    }
    let payload = xml::render(
        "services",
        Version::V2,
        requested_type.as_deref(),
        changes
            .iter()
            .map(|(action, service)| (Some(*action), service)),
        lang.as_deref(),
    );
    let iq = Element::bare("iq", ns::CLIENT)
        .with("type", "set")
        .with_child(payload);
    let to = Jid::from(session.jid().clone());
    let host = state.host.clone();
    let state = state.clone();
    // The reply may take a while; do not hold up other subscribers.
    tokio::spawn(async move {
        match host.send_iq(&to, iq, Duration::from_secs(30)).await {
            Ok(reply) if reply.attr("type") == Some("result") => {}
            Ok(_) | Err(_) => {
                tracing::debug!(jid = %to, "services push refused or unanswered; subscription ended");
                state.pushes.unsubscribe(&key);
            }
        }
    });
}

/// Pushes changes to every subscriber.
async fn update_all(state: Arc<State>, mode: Mode) {
    for key in state.pushes.keys() {
        update(state.clone(), key, mode).await;
    }
}

/// Hooks that feed pushes, and the refresh scheduler.
pub(crate) fn hook(ctx: &mut ModuleContext, state: Arc<State>) {
    let s = state.clone();
    ctx.hook::<SessionClosed, _>(0, move |event| {
        let state = s.clone();
        Box::pin(async move {
            state.pushes.unsubscribe_session(event.session.id());
            Ok(Flow::Continue)
        })
    });
    let s = state.clone();
    ctx.hook::<ItemAdded<ExternalService>, _>(0, move |_event| {
        let state = s.clone();
        Box::pin(async move {
            update_all(state, Mode::Changes).await;
            Ok(Flow::Continue)
        })
    });
    let s = state.clone();
    ctx.hook::<ItemRemoved<ExternalService>, _>(0, move |_event| {
        let state = s.clone();
        Box::pin(async move {
            update_all(state, Mode::Changes).await;
            Ok(Flow::Continue)
        })
    });
    let s = state.clone();
    ctx.hook::<ConfigReloaded, _>(0, move |event| {
        let state = s.clone();
        Box::pin(async move {
            let options = event.host.module_options(super::MODULE.name);
            let (settings, clean) = super::read_settings(&options);
            if clean {
                *state.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
                update_all(state, Mode::Changes).await;
            } else {
                tracing::error!(host = %event.host.name, "external_services: the reloaded options have errors; keeping the previous services");
            }
            Ok(Flow::Continue)
        })
    });

    let s = state;
    ctx.spawn(async move {
        loop {
            let next = s
                .pushes
                .schedule
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first();
            let notified = s.pushes.wake.notified();
            match next {
                None => notified.await,
                Some((at, _, _)) if at > Instant::now() => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = notified => {}
                    }
                }
                Some((_, id, kind)) => {
                    let key = (id, kind);
                    s.pushes
                        .schedule
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                    update(s.clone(), key, Mode::Refresh).await;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use compact_str::CompactString;

    fn svc(kind: &str, port: u16) -> ExternalService {
        let mut s = ExternalService::new(kind, "h");
        s.port = Some(port);
        s.transport = Some("udp".into());
        s
    }

    #[test]
    fn schedule_replaces_a_deadline_and_says_when_it_became_the_earliest() {
        let now = Instant::now();
        let at = |secs| Some(now + Duration::from_secs(secs));
        let mut schedule = Schedule::default();
        assert!(
            schedule.set((1, None), at(100)),
            "the only one is the earliest"
        );
        assert!(!schedule.set((2, None), at(200)), "later than the earliest");
        assert!(schedule.set((3, Some("turn".into())), at(50)));
        // Replacing a deadline drops the old one: nothing left at 50.
        assert!(!schedule.set((3, Some("turn".into())), at(300)));
        assert_eq!(
            schedule.first(),
            Some((now + Duration::from_secs(100), 1, None))
        );
        assert_eq!(schedule.in_order.len(), 3);
        // No deadline (nothing with credentials) leaves none behind.
        assert!(!schedule.set((1, None), None));
        assert_eq!(
            schedule.first(),
            Some((now + Duration::from_secs(200), 2, None))
        );
        schedule.remove(&(2, None));
        schedule.remove(&(2, None));
        assert_eq!(
            schedule.first(),
            Some((now + Duration::from_secs(300), 3, Some("turn".into())))
        );
        assert_eq!((schedule.in_order.len(), schedule.by_key.len()), (1, 1));
    }

    #[test]
    fn diff_actions() {
        let old = vec![svc("stun", 3478), svc("turn", 3478)];
        let mut changed = svc("turn", 3478);
        changed.names.insert(String::new(), "renamed".into());
        let new = vec![changed.clone(), svc("turns", 5349)];
        let d = diff(&old, &new, Mode::Changes);
        let actions: Vec<(Action, CompactString)> =
            d.iter().map(|(a, s)| (*a, s.kind.clone())).collect();
        assert_eq!(
            actions,
            vec![
                (Action::Delete, "stun".into()),
                (Action::Modify, "turn".into()),
                (Action::Add, "turns".into())
            ]
        );
        assert!(diff(&new, &new, Mode::Changes).is_empty());
    }
}
