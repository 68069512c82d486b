//! XEP-0215 External Service Discovery: STUN/TURN (and any other) services for clients,
//! with short-lived credentials.
//!
//! Where services come from: the config (`[modules.external_services]` and its
//! `[[...services]]` list), [`ExternalService`] items added by other modules
//! (`turn_external` is one), and the per-request events [`ServicesRequest`] and
//! [`CredentialsRequest`], whose async handlers may add, change or drop services or fail
//! the request. Every entry passes one validation step ([`prepare`]), also after the
//! handlers ran. Sessions that asked are pushed changes and fresh credentials
//! ([`push`]).

pub mod access;
pub mod credentials;
pub mod lint;
pub mod prepare;
pub mod push;
pub mod rate_limit;
pub mod service;
pub mod xml;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::api::*;
use crate::config::ModuleOptions;

pub use compact_str::CompactString;
pub use credentials::{
    CredentialProvider, CredentialProviderItem, Credentials, ProviderError, Requester,
};
pub use service::{CredentialSource, Delivery, ExternalService, TurnRest, UserPart};
pub use xml::{ServiceQuery, Version, NS_V1, NS_V2};

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "external_services",
    depends: &[],
    load,
};

/// Fired for each `services` request (and for each push computation), after config and
/// item services were gathered, filtered by type and given inline credentials.
pub struct ServicesRequest {
    pub host: Arc<Host>,
    /// The requesting session (read the JID from here for JID-based credentials).
    pub session: Option<Arc<SessionInfo>>,
    pub requester: BareJid,
    pub version: Version,
    pub requested_type: Option<String>,
    /// What the reply will list; handlers may add, change or remove entries.
    pub services: Vec<ExternalService>,
    /// True when this computes a push rather than answers a request.
    pub push: bool,
}

/// Fired for each `credentials` request after matching services got fresh credentials.
pub struct CredentialsRequest {
    pub host: Arc<Host>,
    pub session: Option<Arc<SessionInfo>>,
    pub requester: BareJid,
    pub version: Version,
    pub requested: Vec<ServiceQuery>,
    pub services: Vec<ExternalService>,
}

/// Settings read from the module options; replaced as a whole on reload.
pub struct Settings {
    pub services: Vec<ExternalService>,
    pub access: access::Access,
    pub v1: bool,
    pub push: bool,
    /// Fraction of the credential lifetime after which a refresh is pushed.
    pub refresh_at: f64,
    pub rate: Option<rate_limit::Rate>,
    pub provider_timeout: Duration,
    pub default_ttl: Duration,
}

pub(crate) struct State {
    host: Arc<Host>,
    settings: RwLock<Arc<Settings>>,
    limiter: rate_limit::Limiter,
    pushes: push::Pushes,
}

impl State {
    fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

const KNOWN_OPTIONS: &[&str] = &[
    "host",
    "port",
    "tls_port",
    "secret",
    "ttl",
    "access",
    "services",
    "user",
    "v1",
    "push",
    "refresh_at",
    "rate_limit",
    "provider_timeout",
];

/// Reads the settings; `None` when they contain errors (a reload then keeps the old ones).
pub fn read_settings(options: &ModuleOptions) -> (Settings, bool) {
    let diagnostics = options.diagnostics().clone();
    let errors_before = diagnostics
        .all()
        .iter()
        .filter(|d| d.severity == crate::config::Severity::Error)
        .count();
    let report = prepare::ConfigReport {
        diagnostics: &diagnostics,
        path: options.path("").trim_end_matches('.').to_string(),
    };
    let secrets = match options.raw("secret") {
        None => Vec::new(),
        Some(toml::Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(toml::Value::Array(_)) => options.string_list("secret").unwrap_or_default(),
        Some(other) => {
            diagnostics.warn(
                &options.path("secret"),
                format!(
                    "expected a string or a list of strings, found {}; ignored",
                    crate::config::options::describe(other)
                ),
            );
            Vec::new()
        }
    };
    let default_ttl =
        Duration::from_secs(options.integer("ttl", 1..=30 * 86400).unwrap_or(86400) as u64);
    let defaults = prepare::Defaults {
        host: options.string("host"),
        port: options
            .integer("port", 1..=65535)
            .and_then(|p| u16::try_from(p).ok()),
        tls_port: options
            .integer("tls_port", 1..=65535)
            .and_then(|p| u16::try_from(p).ok()),
        secrets: Arc::new(secrets),
        ttl: default_ttl,
        user_part: prepare::user_part_option(options.raw("user"), &report),
    };
    let services = match options.raw("services") {
        None => default_services(&defaults, &report),
        Some(toml::Value::Array(list)) => {
            prepare::services_from_list(list, &defaults, &options.path("services"), &diagnostics)
        }
        Some(other) => {
            diagnostics.error(
                &options.path("services"),
                format!(
                    "expected a list of service tables ([[...services]]), found {}; ignored",
                    crate::config::options::describe(other)
                ),
            );
            Vec::new()
        }
    };
    let rate = match options.raw("rate_limit") {
        None => Some(rate_limit::Rate {
            burst: 20,
            per_minute: 10,
        }),
        Some(toml::Value::Boolean(false)) => None,
        Some(toml::Value::Integer(n)) if (1..=100_000).contains(n) => Some(rate_limit::Rate {
            burst: *n as u32,
            per_minute: *n as u32,
        }),
        Some(other) => {
            diagnostics.warn(&options.path("rate_limit"), format!("expected false or requests per minute (1..=100000), found {}; using the default", crate::config::options::describe(other)));
            Some(rate_limit::Rate {
                burst: 20,
                per_minute: 10,
            })
        }
    };
    let refresh_at = options
        .integer("refresh_at", 10..=95)
        .map(|p| p as f64 / 100.0)
        .unwrap_or(0.8);
    lint::lint(&services, refresh_at, &diagnostics);
    let settings = Settings {
        services,
        access: access::Access::from_options(options),
        v1: options.bool("v1").unwrap_or(true),
        push: options.bool("push").unwrap_or(true),
        refresh_at,
        rate,
        provider_timeout: Duration::from_secs(
            options.integer("provider_timeout", 1..=60).unwrap_or(10) as u64,
        ),
        default_ttl,
    };
    for key in options.table().keys() {
        if !KNOWN_OPTIONS.contains(&key.as_str()) {
            options.raw(key);
            diagnostics.warn(&options.path(key), "unknown option; ignored");
        }
    }
    let errors_after = diagnostics
        .all()
        .iter()
        .filter(|d| d.severity == crate::config::Severity::Error)
        .count();
    (settings, errors_after == errors_before)
}

/// Without a `services` list: STUN and TURN on the module `host`, as Prosody does.
fn default_services(
    defaults: &prepare::Defaults,
    report: &dyn prepare::Report,
) -> Vec<ExternalService> {
    if defaults.host.is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for kind in ["stun", "turn"] {
        let mut table = toml::Table::new();
        table.insert("type".into(), toml::Value::String(kind.into()));
        if let Some(service) =
            prepare::from_table(&table, defaults, &format!("default {kind} service"), report)
        {
            out.push(service);
        }
    }
    out
}

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let (settings, _) = read_settings(ctx.options());
    let state = Arc::new(State {
        host: ctx.host().clone(),
        settings: RwLock::new(Arc::new(settings)),
        limiter: rate_limit::Limiter::default(),
        pushes: push::Pushes::default(),
    });

    for version in [Version::V2, Version::V1] {
        let namespace = version.namespace();
        let s = state.clone();
        ctx.hook_iq(
            IqType::Get,
            IqTarget::Host,
            namespace,
            "services",
            move |request| {
                let state = s.clone();
                async move { handle_services(&state, request, version).await }
            },
        );
        let s = state.clone();
        ctx.hook_iq(
            IqType::Get,
            IqTarget::Host,
            namespace,
            "credentials",
            move |request| {
                let state = s.clone();
                async move { handle_credentials(&state, request, version).await }
            },
        );
        for name in ["services", "credentials"] {
            ctx.hook_iq(
                IqType::Set,
                IqTarget::Host,
                namespace,
                name,
                |_request| async {
                    Err(StanzaError::new(Condition::NotAllowed)
                        .text("services are discovered with an IQ get")
                        .into())
                },
            );
        }
    }

    let s = state.clone();
    ctx.hook::<crate::modules::disco::DiscoInfoRequest, _>(0, move |event| {
        let state = s.clone();
        Box::pin(async move {
            if event.node.is_none() {
                let settings = state.settings();
                if let Some(requester) = requester_of(event.session.as_deref(), &event.from) {
                    if allowed(&settings, &state.host, event.session.as_deref(), &requester) {
                        event.features.push(NS_V2.to_string());
                        if settings.v1 {
                            event.features.push(NS_V1.to_string());
                        }
                    }
                }
            }
            Ok(Flow::Continue)
        })
    });

    push::hook(ctx, state.clone());
    Ok(())
}

fn requester_of(session: Option<&SessionInfo>, from: &Jid) -> Option<BareJid> {
    match session {
        Some(session) => session.bare_jid(),
        None => Some(from.to_bare()),
    }
}

fn allowed(
    settings: &Settings,
    host: &Host,
    session: Option<&SessionInfo>,
    requester: &BareJid,
) -> bool {
    let authenticated_here = session.is_some_and(|s| s.is_authenticated() && s.host == host.name);
    settings
        .access
        .allows(requester, &host.name, authenticated_here)
}

fn check_access(state: &State, request: &IqRequest) -> Result<BareJid, StanzaError> {
    let settings = state.settings();
    let requester = requester_of(request.session.as_deref(), &request.from)
        .ok_or_else(|| StanzaError::new(Condition::Forbidden))?;
    if !allowed(
        &settings,
        &state.host,
        request.session.as_deref(),
        &requester,
    ) {
        return Err(StanzaError::new(Condition::Forbidden)
            .text("you may not use this server's external services"));
    }
    Ok(requester)
}

fn check_version(state: &State, version: Version) -> Result<(), StanzaError> {
    if version == Version::V1 && !state.settings().v1 {
        return Err(StanzaError::new(Condition::ServiceUnavailable));
    }
    Ok(())
}

fn check_rate(state: &State, requester: &BareJid) -> Result<(), StanzaError> {
    if let Some(rate) = state.settings().rate {
        if !state
            .limiter
            .try_take(requester.as_str(), rate, Instant::now())
        {
            return Err(StanzaError::new(Condition::ResourceConstraint)
                .text("too many credential requests; try again later"));
        }
    }
    Ok(())
}

/// Config services plus item services that pass `wanted`, validated. Only those are
/// copied: a request pays for the services it serves, not for all of them.
fn all_services(
    state: &State,
    settings: &Settings,
    wanted: impl Fn(&ExternalService) -> bool,
) -> Vec<ExternalService> {
    let mut services: Vec<ExternalService> = settings
        .services
        .iter()
        .filter(|s| wanted(s))
        .cloned()
        .collect();
    state.host.items.for_each::<ExternalService>(|item| {
        let origin = if item.origin.is_empty() {
            "item"
        } else {
            &item.origin
        };
        // Validation may complete a service (port, transport), so filter after it.
        if let Some(prepared) = prepare::prepare(item.clone(), &prepare::LogReport { origin }) {
            if wanted(&prepared) {
                services.push(prepared);
            }
        }
    });
    services
}

/// Whether any service (config or item) matching `wanted` mints credentials inline.
fn any_service(
    state: &State,
    settings: &Settings,
    wanted: impl Fn(&ExternalService) -> bool,
) -> bool {
    settings.services.iter().any(&wanted) || state.host.items.any::<ExternalService>(&wanted)
}

async fn mint(
    settings: &Settings,
    providers: &[Arc<CredentialProviderItem>],
    service: &mut ExternalService,
    requester: &Requester,
    batch: &mut credentials::MintBatch,
) -> Result<(), StanzaError> {
    let minted = match credentials::resolve_at_once(service, &requester.jid, batch) {
        Some(minted) => minted,
        // Boxed: inline, a provider's wait and its timer would make every answer's
        // future larger than glibc's per-thread cache (1,032 bytes), providers or not.
        None => Box::pin(from_provider(settings, providers, service, requester)).await,
    };
    minted.map_err(|err| err.to_stanza_error())
}

/// A provider may wait on something outside this process: it answers within the timeout.
async fn from_provider(
    settings: &Settings,
    providers: &[Arc<CredentialProviderItem>],
    service: &mut ExternalService,
    requester: &Requester,
) -> Result<(), ProviderError> {
    tokio::time::timeout(
        settings.provider_timeout,
        credentials::ask_provider(service, requester, providers),
    )
    .await
    .unwrap_or(Err(ProviderError::Timeout))
}

/// The registered credential providers, fetched only when a service needs one.
fn providers_for(state: &State, services: &[ExternalService]) -> Vec<Arc<CredentialProviderItem>> {
    if services
        .iter()
        .any(|s| matches!(s.source, CredentialSource::Provider(_)))
    {
        state.host.items.all::<CredentialProviderItem>()
    } else {
        Vec::new()
    }
}

/// What `requester` may see now: the services answer and the source of pushes.
/// `withhold`: leave out the credentials of `credentials = "on_request"` services, static
/// or minted (everything but the admin preview).
pub(crate) async fn visible_services(
    state: &State,
    session: Option<Arc<SessionInfo>>,
    requester: &BareJid,
    version: Version,
    requested_type: Option<&str>,
    push: bool,
    withhold: bool,
) -> Result<Vec<ExternalService>, HandlerError> {
    let settings = state.settings();
    let who = Requester {
        jid: requester.clone(),
        session: session.clone(),
    };
    let mut services = all_services(state, &settings, |s| {
        requested_type.is_none_or(|t| t == s.kind)
    });
    let providers = providers_for(state, &services);
    let mut batch = credentials::MintBatch::new(SystemTime::now());
    for service in services
        .iter_mut()
        .filter(|s| s.mints_credentials() && s.delivery == Delivery::Inline)
    {
        mint(&settings, &providers, service, &who, &mut batch).await?;
    }
    let mut event = ServicesRequest {
        host: state.host.clone(),
        session,
        requester: requester.clone(),
        version,
        requested_type: requested_type.map(str::to_string),
        services,
        push,
    };
    state.host.events.fire(&mut event).await?;
    let mut out = Vec::with_capacity(event.services.len());
    let mut unminted = Vec::new();
    for service in event.services {
        match settle(service, requested_type, withhold) {
            Settled::Dropped => {}
            Settled::Ready(service) => out.push(service),
            Settled::NeedsCredentials(service) => {
                unminted.push(out.len());
                out.push(service);
            }
        }
    }
    // Minted after the loop, and boxed (rare): a service held across this wait (the
    // loop's, or a match's temporary) would add its 256 bytes to every answer's future
    // and make it larger than glibc's per-thread cache (1,032 bytes).
    for index in unminted {
        let service = &mut out[index];
        let providers = providers_for(state, std::slice::from_ref(service));
        Box::pin(mint(&settings, &providers, service, &who, &mut batch)).await?;
    }
    Ok(out)
}

/// What becomes of a service after the `services` handlers ran.
enum Settled {
    Dropped,
    Ready(ExternalService),
    /// Added by a handler without the credentials it mints.
    NeedsCredentials(ExternalService),
}

fn settle(service: ExternalService, requested_type: Option<&str>, withhold: bool) -> Settled {
    let Some(mut service) = prepare::prepare(
        service,
        &prepare::LogReport {
            origin: "services event handler",
        },
    ) else {
        return Settled::Dropped;
    };
    if requested_type.is_some_and(|t| t != service.kind) {
        return Settled::Dropped;
    }
    if withhold
        && service.delivery == Delivery::OnRequest
        && (service.restricted || service.mints_credentials())
    {
        service.username = None;
        service.password = None;
        service.expires = None;
    } else if service.mints_credentials() && service.username.is_none() {
        return Settled::NeedsCredentials(service);
    }
    Settled::Ready(service)
}

async fn handle_services(state: &Arc<State>, request: IqRequest, version: Version) -> IqResult {
    check_version(state, version)?;
    let requester = check_access(state, &request)?;
    let requested_type = request
        .payload()
        .attr("type")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let settings = state.settings();
    let mints = any_service(state, &settings, |s| {
        s.mints_credentials()
            && s.delivery == Delivery::Inline
            && requested_type.as_deref().is_none_or(|t| t == s.kind)
    });
    if mints {
        check_rate(state, &requester)?;
    }
    let services = visible_services(
        state,
        request.session.clone(),
        &requester,
        version,
        requested_type.as_deref(),
        false,
        true,
    )
    .await?;
    let lang = request.lang();
    let subscriber = request
        .session
        .as_ref()
        .filter(|_| version == Version::V2 && settings.push);
    let reply = xml::render(
        "services",
        version,
        requested_type.as_deref(),
        services.iter().map(|s| (None, s)),
        lang.as_deref(),
    );
    if let Some(session) = subscriber {
        // The subscription keeps what the client was told (pushes are diffs from it).
        state
            .pushes
            .subscribe(state, session, requested_type, lang, services);
    }
    Ok(Some(reply))
}

async fn handle_credentials(state: &Arc<State>, request: IqRequest, version: Version) -> IqResult {
    check_version(state, version)?;
    let requester = check_access(state, &request)?;
    let queries = xml::parse_credentials_request(request.payload(), version)?;
    let settings = state.settings();
    let mut matching = all_services(state, &settings, |s| {
        s.restricted && queries.iter().any(|q| q.matches(s))
    });
    if matching.is_empty() {
        return Err(StanzaError::new(Condition::ItemNotFound)
            .text("no restricted service matches")
            .into());
    }
    check_rate(state, &requester)?;
    let who = Requester {
        jid: requester.clone(),
        session: request.session.clone(),
    };
    let providers = providers_for(state, &matching);
    let mut batch = credentials::MintBatch::new(SystemTime::now());
    for service in matching.iter_mut() {
        mint(&settings, &providers, service, &who, &mut batch).await?;
    }
    let mut event = CredentialsRequest {
        host: state.host.clone(),
        session: request.session.clone(),
        requester,
        version,
        requested: queries,
        services: matching,
    };
    state.host.events.fire(&mut event).await?;
    let services: Vec<ExternalService> = event
        .services
        .into_iter()
        .filter_map(|s| {
            prepare::prepare(
                s,
                &prepare::LogReport {
                    origin: "credentials event handler",
                },
            )
        })
        .collect();
    if services.is_empty() {
        return Err(StanzaError::new(Condition::ItemNotFound).into());
    }
    let lang = request.lang();
    Ok(Some(xml::render(
        "credentials",
        version,
        None,
        services.iter().map(|s| (None, s)),
        lang.as_deref(),
    )))
}

/// What `jid` would receive now (for `tern extdisco`): runs the whole pipeline without a
/// session, credentials included.
pub async fn preview(
    host: &Arc<Host>,
    jid: &BareJid,
    requested_type: Option<&str>,
) -> anyhow::Result<Vec<ExternalService>> {
    let (settings, _) = read_settings(&host.module_options(MODULE.name));
    let state = State {
        host: host.clone(),
        settings: RwLock::new(Arc::new(settings)),
        limiter: rate_limit::Limiter::default(),
        pushes: push::Pushes::default(),
    };
    let settings = state.settings();
    let mut services =
        visible_services(&state, None, jid, Version::V2, requested_type, false, false)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let who = Requester {
        jid: jid.clone(),
        session: None,
    };
    let providers = providers_for(&state, &services);
    let mut batch = credentials::MintBatch::new(SystemTime::now());
    for service in services
        .iter_mut()
        .filter(|s| s.mints_credentials() && s.username.is_none())
    {
        mint(&settings, &providers, service, &who, &mut batch)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(services)
}

/// One line per service for admin output (`tern extdisco`).
pub fn describe(service: &ExternalService) -> String {
    let mut line = format!(
        "{} {}:{} {}",
        service.kind,
        service.host,
        service
            .port
            .map(|p| p.to_string())
            .unwrap_or_else(|| "?".into()),
        service.transport.as_deref().unwrap_or("?")
    );
    if service.restricted {
        line.push_str(" restricted");
    }
    if let (Some(username), Some(password)) = (&service.username, &service.password) {
        line.push_str(&format!(" username={username} password={password}"));
    }
    if let Some(expires) = service.expires {
        line.push_str(&format!(" expires={}", prepare::format_timestamp(expires)));
    }
    if let Some(name) = service.name_for(None) {
        line.push_str(&format!(" name={name:?}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `handler` returns, without calling it.
    fn future_size<F, Fut>(_: F) -> usize
    where
        F: FnOnce(&'static Arc<State>, IqRequest, Version) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Each answer's future is one allocation; glibc serves blocks of up to 1,032 bytes
    /// from a per-thread cache and larger ones from its slower bins. The IQ hook's
    /// closure around the handler adds the request it captured (about 100 bytes). The
    /// services handler was 1,432 bytes here (1,536 with the closure, in a release
    /// build) before a provider's wait and the handlers' additions were boxed.
    #[test]
    fn answer_futures_fit_glibcs_per_thread_cache() {
        let services = future_size(handle_services);
        let credentials = future_size(handle_credentials);
        assert!(services <= 900, "services: {services} bytes");
        assert!(credentials <= 900, "credentials: {credentials} bytes");
    }
}
