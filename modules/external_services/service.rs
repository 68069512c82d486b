//! The data model: one external service (a `<service/>` element, XEP-0215 §2).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use compact_str::CompactString;

/// How a service's credentials are obtained.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum CredentialSource {
    /// Unrestricted, or static `username`/`password` given with the service.
    #[default]
    Static,
    /// TURN REST (draft-uberti-behave-turn-rest-00, coturn `use-auth-secret`).
    TurnRest(TurnRest),
    /// Minted by a [`super::credentials::CredentialProvider`] registered under this name.
    Provider(String),
}

/// TURN REST parameters of one service.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnRest {
    /// The first signs; the others are still accepted by the TURN server (rotation), so
    /// only the first matters here.
    pub secrets: Arc<Vec<String>>,
    pub ttl: Duration,
    pub user_part: UserPart,
}

impl std::fmt::Debug for TurnRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("TurnRest")
            .field("secrets", &format!("<{} secret(s)>", self.secrets.len()))
            .field("ttl", &self.ttl)
            .field("user_part", &self.user_part)
            .finish()
    }
}

/// What follows the expiry in a TURN REST username (`<expiry>:<user-part>`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum UserPart {
    /// `<expiry>` alone.
    None,
    /// A fixed string.
    Fixed(String),
    /// The requester's localpart (readable in TURN logs; travels in clear).
    Localpart,
    /// An opaque keyed hash of the requester's bare JID: per-user accounting on the TURN
    /// server without putting JIDs on the wire. The default.
    #[default]
    Hash,
}

/// Whether credentials go in the `services` answer or only in a `credentials` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Inline in `services` (Conversations and Dino never send a credentials request).
    #[default]
    Inline,
    OnRequest,
}

/// One external service as configured, contributed as an item, or edited by an event
/// handler. `username`/`password`/`expires` hold minted credentials once resolved.
///
/// Every request copies the services it answers with (handlers may edit the copies, and
/// pushes keep what each client was told), so the fields that name a service are
/// [`CompactString`]s: up to 24 bytes they live inline and copy without an allocation.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExternalService {
    /// `type`: any NCName (`stun`, `turn`, `stuns`, `turns`, `ftp`, ...).
    pub kind: CompactString,
    pub host: CompactString,
    pub port: Option<u16>,
    /// `udp` or `tcp`.
    pub transport: Option<CompactString>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub restricted: bool,
    pub expires: Option<SystemTime>,
    /// Human-readable names by language (`""` = no language given).
    pub names: BTreeMap<String, String>,
    /// Extended information (XEP-0128): field var -> values; rendered as a data form.
    pub extended: BTreeMap<String, Vec<String>>,
    pub source: CredentialSource,
    pub delivery: Delivery,
    /// Where the entry came from, for diagnostics (`services[2]`, `item from turn_external`).
    /// Shared rather than inline: a config key path is longer than 24 bytes.
    pub origin: Arc<str>,
}

impl ExternalService {
    pub fn new(kind: &str, host: &str) -> Self {
        ExternalService {
            kind: kind.into(),
            host: host.into(),
            ..Default::default()
        }
    }

    /// Whether credentials must be minted per request.
    pub fn mints_credentials(&self) -> bool {
        !matches!(self.source, CredentialSource::Static)
    }

    /// The name in `lang` (or its primary subtag), else the unlabelled one, else any.
    pub fn name_for(&self, lang: Option<&str>) -> Option<&str> {
        if let Some(lang) = lang {
            if let Some(name) = self.names.get(lang) {
                return Some(name);
            }
            let primary = lang.split('-').next().unwrap_or(lang);
            if let Some(name) = self.names.get(primary) {
                return Some(name);
            }
        }
        self.names
            .get("")
            .or_else(|| self.names.get("en"))
            .or_else(|| self.names.values().next())
            .map(String::as_str)
    }

    /// The identity of a service across requests and pushes: what a client would use to
    /// match a `modify` or `delete` to what it saw before.
    pub fn key(
        &self,
    ) -> (
        CompactString,
        CompactString,
        Option<u16>,
        Option<CompactString>,
    ) {
        (
            self.kind.clone(),
            self.host.clone(),
            self.port,
            self.transport.clone(),
        )
    }

    /// The same service without per-request credentials (for comparisons in pushes).
    pub fn without_credentials(&self) -> ExternalService {
        let mut copy = self.clone();
        if self.mints_credentials() {
            copy.username = None;
            copy.password = None;
            copy.expires = None;
        }
        copy
    }
}

/// Per-type defaults, as ejabberd has them.
pub fn default_port(kind: &str) -> Option<u16> {
    match kind {
        "stun" | "turn" => Some(3478),
        "stuns" | "turns" => Some(5349),
        _ => None,
    }
}

pub fn default_transport(kind: &str) -> Option<&'static str> {
    match kind {
        "stun" | "turn" => Some("udp"),
        "stuns" | "turns" => Some("tcp"),
        _ => None,
    }
}
