//! Credentials: TURN REST minting, the user part, and pluggable providers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use jid::BareJid;

use super::service::{CredentialSource, ExternalService, TurnRest, UserPart};
use crate::stanza::{Condition, StanzaError};

/// Minted credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub expires: Option<SystemTime>,
}

impl Credentials {
    fn fill(self, service: &mut ExternalService) {
        service.username = Some(self.username);
        service.password = Some(self.password);
        service.expires = self.expires;
    }
}

/// Why a provider could not mint credentials; each maps to the stanza error XEP-0215
/// lists for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderError {
    /// The credential source did not answer in time: `remote-server-timeout`.
    Timeout,
    /// The credential source cannot be reached: `remote-server-not-found`.
    Unreachable,
    /// The source refused this requester: `not-authorized`.
    NotAuthorized,
    /// Anything else: `internal-server-error` (the text goes to the log only).
    Internal(String),
}

impl ProviderError {
    pub fn to_stanza_error(&self) -> StanzaError {
        match self {
            ProviderError::Timeout => StanzaError::new(Condition::RemoteServerTimeout),
            ProviderError::Unreachable => StanzaError::new(Condition::RemoteServerNotFound),
            ProviderError::NotAuthorized => StanzaError::new(Condition::NotAuthorized),
            ProviderError::Internal(detail) => {
                tracing::error!(detail, "credential provider failed");
                StanzaError::new(Condition::InternalServerError)
            }
        }
    }
}

/// Who is asking, for JID-based credentials.
#[derive(Clone, Debug)]
pub struct Requester {
    pub jid: BareJid,
    pub session: Option<Arc<crate::session::SessionInfo>>,
}

/// Mints credentials for one service (Prosody's `credentials_cb`, sync or async). Register
/// with [`CredentialProviderItem`]; a service names it with `provider = "NAME"`.
pub trait CredentialProvider: Send + Sync + 'static {
    fn credentials<'a>(
        &'a self,
        requester: &'a Requester,
        service: &'a ExternalService,
    ) -> BoxFuture<'a, Result<Credentials, ProviderError>>;
}

/// The item a module adds to offer a provider.
pub struct CredentialProviderItem {
    pub name: String,
    pub provider: Arc<dyn CredentialProvider>,
}

type HmacSha1 = Hmac<sha1::Sha1>;
type HmacSha256 = Hmac<sha2::Sha256>;

/// TURN REST (draft-uberti-behave-turn-rest-00 §2.2, coturn `use-auth-secret`):
/// `username = "<expiry unix time>[:<user part>]"`, `password = base64(HMAC-SHA1(secret, username))`.
pub fn turn_rest(secret: &str, expiry_unix: u64, user_part: Option<&str>) -> (String, String) {
    let username = match user_part {
        Some(part) => format!("{expiry_unix}:{part}"),
        None => expiry_unix.to_string(),
    };
    (username.clone(), turn_password(secret, &username))
}

pub fn turn_password(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
    let mut mac = match HmacSha1::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The user part for `requester` under `rule`. The hash is keyed with the signing secret
/// so that it is stable per user, opaque on the wire, and not linkable across servers.
pub fn user_part(rule: &UserPart, secret: &str, requester: &BareJid) -> Option<String> {
    match rule {
        UserPart::None => None,
        UserPart::Fixed(fixed) => Some(fixed.clone()),
        UserPart::Localpart => requester.node().map(|n| n.to_string()),
        UserPart::Hash => {
            let mut mac =
                HmacSha256::new_from_slice(format!("tern-turn-user:{secret}").as_bytes()).ok()?;
            mac.update(requester.as_str().as_bytes());
            let digest = mac.finalize().into_bytes();
            Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12]))
        }
    }
}

/// Credentials minted for one request (or one push). Every service signed with the same
/// TURN REST settings gets the same username and password, as Prosody and ejabberd hand
/// them out, so they are computed once per request and not once per service: the hashes
/// are the costliest part of minting.
pub struct MintBatch {
    now: SystemTime,
    turn_rest: Vec<(TurnRest, Credentials)>,
}

impl MintBatch {
    pub fn new(now: SystemTime) -> Self {
        MintBatch {
            now,
            turn_rest: Vec::new(),
        }
    }

    fn turn_rest(
        &mut self,
        rest: &TurnRest,
        requester: &BareJid,
    ) -> Result<Credentials, ProviderError> {
        if let Some((_, minted)) = self.turn_rest.iter().find(|(seen, _)| seen == rest) {
            return Ok(minted.clone());
        }
        let Some(secret) = rest.secrets.first() else {
            return Err(ProviderError::Internal(
                "TURN REST service without a secret".into(),
            ));
        };
        let expiry_unix = (self.now + rest.ttl)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let part = user_part(&rest.user_part, secret, requester);
        let (username, password) = turn_rest(secret, expiry_unix, part.as_deref());
        let minted = Credentials {
            username,
            password,
            // Always stated: clients (and pushes) need to know when to ask again.
            expires: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(expiry_unix)),
        };
        self.turn_rest.push((rest.clone(), minted.clone()));
        Ok(minted)
    }
}

/// Fills the credentials that need nothing outside this process (static ones stay as they
/// are, TURN REST ones are computed); `None` for a provider's, which [`ask_provider`] awaits.
pub fn resolve_at_once(
    service: &mut ExternalService,
    requester: &BareJid,
    batch: &mut MintBatch,
) -> Option<Result<(), ProviderError>> {
    let minted = match &service.source {
        CredentialSource::Static => return Some(Ok(())),
        CredentialSource::TurnRest(rest) => batch.turn_rest(rest, requester),
        CredentialSource::Provider(_) => return None,
    };
    Some(minted.map(|credentials| credentials.fill(service)))
}

/// Fills `service`'s credentials from the provider its source names; the other sources
/// are [`resolve_at_once`]'s, and a service with one is left as it is.
pub async fn ask_provider(
    service: &mut ExternalService,
    requester: &Requester,
    providers: &[Arc<CredentialProviderItem>],
) -> Result<(), ProviderError> {
    let CredentialSource::Provider(name) = &service.source else {
        return Ok(());
    };
    let Some(item) = providers.iter().find(|p| p.name == *name) else {
        return Err(ProviderError::Internal(format!(
            "no credential provider named {name:?} is loaded"
        )));
    };
    let credentials = item.provider.credentials(requester, service).await?;
    credentials.fill(service);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same username and secret give the password coturn computes for
    /// `use-auth-secret` (base64 of HMAC-SHA1). Reference values computed independently
    /// with `printf '%s' USER | openssl dgst -sha1 -hmac SECRET -binary | base64`.
    #[test]
    fn turn_rest_known_answers() {
        assert_eq!(
            turn_password("north", "1700000000:alice"),
            "Cd/49soE35ICqcJF/bCTn8Z4OyE="
        );
        let (user, pass) = turn_rest("north", 1700000000, Some("alice"));
        assert_eq!(user, "1700000000:alice");
        assert_eq!(pass, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
        let (user, pass) = turn_rest("north", 1700000000, None);
        assert_eq!(user, "1700000000");
        assert_eq!(pass, "CWyHi3zCeWqXBir9thl4m+iZPRY=");
    }

    #[test]
    fn user_parts() {
        let jid = BareJid::new("romeo@montague.lit").expect("jid");
        assert_eq!(user_part(&UserPart::None, "s", &jid), None);
        assert_eq!(
            user_part(&UserPart::Localpart, "s", &jid).as_deref(),
            Some("romeo")
        );
        assert_eq!(
            user_part(&UserPart::Fixed("x".into()), "s", &jid).as_deref(),
            Some("x")
        );
        let hashed = user_part(&UserPart::Hash, "s", &jid).expect("hash");
        assert_eq!(hashed.len(), 16);
        assert!(!hashed.contains("romeo"));
        assert_eq!(
            user_part(&UserPart::Hash, "s", &jid),
            Some(hashed.clone()),
            "stable"
        );
        let other = BareJid::new("juliet@capulet.lit").expect("jid");
        assert_ne!(
            user_part(&UserPart::Hash, "s", &other),
            Some(hashed.clone())
        );
        assert_ne!(user_part(&UserPart::Hash, "t", &jid), Some(hashed));
    }

    fn turn_rest_service(secret: &str, ttl_s: u64) -> ExternalService {
        let mut service = ExternalService::new("turn", "turn.example.org");
        service.source = CredentialSource::TurnRest(TurnRest {
            secrets: Arc::new(vec![secret.to_string()]),
            ttl: Duration::from_secs(ttl_s),
            user_part: UserPart::Hash,
        });
        service
    }

    /// One request mints once per TURN REST setting: services that share it get the same
    /// credentials, the ones that coturn computes for them; another secret or lifetime
    /// gets its own.
    #[tokio::test]
    async fn a_batch_mints_once_per_setting() {
        let requester = Requester {
            jid: BareJid::new("romeo@montague.lit").expect("jid"),
            session: None,
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut batch = MintBatch::new(now);
        let mut services = [
            turn_rest_service("north", 600),
            turn_rest_service("north", 600),
            turn_rest_service("south", 600),
            turn_rest_service("north", 60),
            ExternalService::new("stun", "stun.example.org"),
        ];
        for service in services.iter_mut() {
            resolve_at_once(service, &requester.jid, &mut batch)
                .expect("no provider needed")
                .expect("minted");
        }
        assert_eq!(batch.turn_rest.len(), 3, "three settings, three mints");
        let part = user_part(&UserPart::Hash, "north", &requester.jid).expect("hash");
        let username = format!("1700000600:{part}");
        assert_eq!(services[0].username.as_deref(), Some(username.as_str()));
        assert_eq!(
            services[0].password,
            Some(turn_password("north", &username))
        );
        assert_eq!(
            services[0].expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_600))
        );
        assert_eq!(services[1].username, services[0].username);
        assert_eq!(services[1].password, services[0].password);
        assert_ne!(services[2].password, services[0].password);
        assert_eq!(
            services[3].username.as_deref(),
            Some(format!("1700000060:{part}").as_str())
        );
        assert_eq!(
            services[4].username, None,
            "static services stay as they are"
        );
    }
}
