//! Server side of SASL (RFC 4422) as XMPP uses it (RFC 6120 §6).
//!
//! Mechanisms: SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS variants
//! (RFC 5802, RFC 7677, channel bindings from RFC 9266 and RFC 5929), and
//! PLAIN (RFC 4616). Accounts only ever store [`StoredCredentials`], so PLAIN
//! is checked by deriving the SCRAM keys from the offered password.
//!
//! The caller owns the XML and the base64 layer: it decodes the text of
//! `<auth/>` / `<response/>` and feeds the bytes to [`SaslServer::step`], and
//! encodes what comes back into `<challenge/>` / `<success/>` / `<failure/>`.
//! An `<auth/>` without an initial response should be answered with an empty
//! challenge by the caller; the client's reply is then the first `step` input.

pub(crate) mod backoff;
mod plain;
mod scram;
mod stored_bytes;

use std::fmt;

use jid::{BareJid, NodePart};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use self::plain::PlainServer;
use self::scram::{ScramHash, ScramServer};

/// Iteration count for new credentials and for the fake credentials of
/// unknown users. RFC 7677 §4 asks for at least 4096.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Salt length for new credentials; also the length of the fake salt, so an
/// unknown user's challenge cannot be told apart by its size.
pub const SALT_LEN: usize = 16;

/// A SASL mechanism this server implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha1,
    ScramSha1Plus,
    ScramSha256,
    ScramSha256Plus,
    Plain,
}

impl Mechanism {
    /// Every mechanism, strongest first, so that advertising them in this
    /// order steers clients towards the best one they support.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA-registered name, as sent in `<mechanism/>` and `<auth mechanism=''/>`.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Exact, case-sensitive match: RFC 4422 §3.1 names are upper-case and
    /// XMPP clients send them as advertised.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether this is a channel-binding (-PLUS) mechanism.
    pub fn is_plus(&self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One hash's stored secret (RFC 5802): never the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentials {
    #[serde(with = "stored_bytes")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "stored_bytes")]
    pub stored_key: Vec<u8>,
    #[serde(with = "stored_bytes")]
    pub server_key: Vec<u8>,
}

/// Everything an account needs to authenticate with any mechanism here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredentials {
    pub sha1: ScramCredentials,
    pub sha256: ScramCredentials,
}

impl StoredCredentials {
    /// SASLprep the password, random 16-byte salt (one per hash, so the two
    /// secrets share nothing), given iterations (usually [`DEFAULT_ITERATIONS`]).
    pub fn derive(password: &str, iterations: u32) -> Result<Self, SaslError> {
        if iterations == 0 {
            return Err(SaslError::InvalidIterations);
        }
        let prepped = prep_password(password)?;
        let mut sha1_salt = vec![0u8; SALT_LEN];
        let mut sha256_salt = vec![0u8; SALT_LEN];
        OsRng
            .try_fill_bytes(&mut sha1_salt)
            .map_err(|_| SaslError::Random)?;
        OsRng
            .try_fill_bytes(&mut sha256_salt)
            .map_err(|_| SaslError::Random)?;
        Ok(StoredCredentials {
            sha1: ScramHash::Sha1.credentials(prepped.as_bytes(), sha1_salt, iterations),
            sha256: ScramHash::Sha256.credentials(prepped.as_bytes(), sha256_salt, iterations),
        })
    }

    /// Constant-time check (for PLAIN): derive with the stored salt/iterations
    /// and compare StoredKey.
    pub fn verify_password(&self, password: &str) -> bool {
        ScramHash::Sha256.verify_password(&self.sha256, password)
    }
}

/// Channel-binding data of this connection, filled by the TLS layer.
#[derive(Clone, Debug, Default)]
pub struct ChannelBindingData {
    /// RFC 9266: exporter output for label "EXPORTER-Channel-Binding", 32 bytes, empty context.
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929: hash of the server's certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
}

/// What to answer after one client message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaslStep {
    /// Send `<challenge/>` with these bytes (base64-encoded by the caller).
    Challenge(Vec<u8>),
    /// Send `<success/>`, with the additional data if any.
    Success {
        /// The normalised localpart of the authenticated account.
        username: String,
        additional_data: Option<Vec<u8>>,
    },
    /// Send `<failure/>` with this condition.
    Failure(SaslFailure),
}

/// RFC 6120 §6.5 failure conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaslFailure {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The element name inside `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`.
    pub fn condition(&self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

impl fmt::Display for SaslFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.condition())
    }
}

/// Errors when creating credentials (not during an exchange: those are [`SaslFailure`]s).
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    #[error("password is not allowed by SASLprep (RFC 4013)")]
    InvalidPassword,
    #[error("password is empty")]
    EmptyPassword,
    #[error("iteration count must be at least 1")]
    InvalidIterations,
    #[error("the system random number generator failed")]
    Random,
}

/// Normalise a username: SCRAM's =2C/=3D decoding is done by the scram code;
/// this applies SASLprep then XMPP nodeprep (jid::NodePart::new) and returns
/// None when invalid.
pub fn normalize_username(raw: &str) -> Option<String> {
    let prepped = stringprep::saslprep(raw).ok()?;
    let node = NodePart::new(&prepped).ok()?;
    Some(node.as_str().to_owned())
}

/// SASLprep as a stored string (RFC 4013 with unassigned code points refused).
fn prep_password(password: &str) -> Result<String, SaslError> {
    let prepped = stringprep::saslprep(password).map_err(|_| SaslError::InvalidPassword)?;
    if prepped.is_empty() {
        return Err(SaslError::EmptyPassword);
    }
    Ok(prepped.into_owned())
}

/// An authzid is only honoured when it names the authenticated account
/// itself: Tern has no proxy authorisation, and an empty one means "the same".
fn authzid_allowed(authzid: &str, username: &str, host: &str) -> bool {
    if authzid.is_empty() {
        return true;
    }
    let Ok(requested) = BareJid::new(authzid) else {
        return false;
    };
    let Ok(own) = BareJid::new(&format!("{username}@{host}")) else {
        return false;
    };
    requested == own
}

/// Fake salt for unknown users: a keyed hash makes it stable for a given name
/// (a changing salt would betray the account's absence on a second try) and
/// unpredictable without the server secret.
fn fake_salt(key: &[u8; 32], username: &str) -> Vec<u8> {
    let mut salt = ScramHash::Sha256.hmac(key, username.as_bytes());
    salt.truncate(SALT_LEN);
    salt
}

enum State {
    Scram(Box<ScramServer>),
    Plain(PlainServer),
    Done,
}

/// One authentication exchange on one connection.
pub struct SaslServer {
    state: State,
}

/// Written by hand so that logging a connection never prints the fake-salt
/// key or an account's stored secrets.
impl fmt::Debug for SaslServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Scram(_) => "scram",
            State::Plain(_) => "plain",
            State::Done => "done",
        };
        f.debug_struct("SaslServer").field("state", &state).finish()
    }
}

impl SaslServer {
    /// `host`: the virtual host (for authzid checks). `plus_offered`: whether
    /// -PLUS mechanisms were advertised on this connection (so a client
    /// sending GS2 flag 'y' must be refused: downgrade). `fake_salt_key`:
    /// server secret used to derive a stable fake salt for unknown users.
    pub fn new(
        mechanism: Mechanism,
        host: &str,
        channel_binding: ChannelBindingData,
        plus_offered: bool,
        fake_salt_key: [u8; 32],
    ) -> Self {
        let state = match mechanism {
            Mechanism::Plain => State::Plain(PlainServer::new(host, fake_salt_key)),
            scram => State::Scram(Box::new(ScramServer::new(
                scram,
                host,
                channel_binding,
                plus_offered,
                fake_salt_key,
            ))),
        };
        SaslServer { state }
    }

    /// `input` is the decoded (base64-decoded by caller) client message;
    /// `lookup` returns the stored credentials of a NORMALISED localpart.
    pub fn step(
        &mut self,
        input: &[u8],
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        let result = match &mut self.state {
            State::Scram(scram) => scram.step(input, lookup),
            State::Plain(plain) => plain.step(input, lookup),
            State::Done => SaslStep::Failure(SaslFailure::MalformedRequest),
        };
        if !matches!(result, SaslStep::Challenge(_)) {
            self.state = State::Done;
        }
        result
    }

    /// Test hook: fixes the SCRAM server nonce so RFC exchanges replay byte for byte.
    #[cfg(test)]
    pub(crate) fn set_server_nonce(&mut self, nonce: &str) {
        if let State::Scram(scram) = &mut self.state {
            scram.set_server_nonce(nonce);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(Mechanism::from_name("scram-sha-1"), None);
        assert_eq!(Mechanism::from_name("SCRAM-SHA-512"), None);
        assert_eq!(Mechanism::from_name(""), None);
        assert!(Mechanism::ScramSha1Plus.is_plus());
        assert!(Mechanism::ScramSha256Plus.is_plus());
        assert!(!Mechanism::ScramSha1.is_plus());
        assert!(!Mechanism::ScramSha256.is_plus());
        assert!(!Mechanism::Plain.is_plus());
    }

    #[test]
    fn failure_conditions() {
        assert_eq!(SaslFailure::NotAuthorized.condition(), "not-authorized");
        assert_eq!(SaslFailure::InvalidAuthzid.condition(), "invalid-authzid");
        assert_eq!(
            SaslFailure::MalformedRequest.to_string(),
            "malformed-request"
        );
        assert_eq!(
            SaslFailure::TemporaryAuthFailure.condition(),
            "temporary-auth-failure"
        );
    }

    #[test]
    fn normalize_username_cases() {
        assert_eq!(normalize_username("user").as_deref(), Some("user"));
        assert_eq!(normalize_username("User").as_deref(), Some("user"));
        // SASLprep maps non-ASCII space to space, which nodeprep then refuses.
        assert_eq!(normalize_username("a\u{00A0}b"), None);
        // SASLprep drops soft hyphens (mapped to nothing).
        assert_eq!(normalize_username("us\u{00AD}er").as_deref(), Some("user"));
        assert_eq!(normalize_username("a@b"), None);
        assert_eq!(normalize_username("a/b"), None);
        assert_eq!(normalize_username(""), None);
        assert_eq!(normalize_username("a\u{0}b"), None);
        assert_eq!(normalize_username(&"a".repeat(1024)), None);
        assert_eq!(normalize_username("ÄÖ").as_deref(), Some("äö"));
    }

    #[test]
    fn derive_and_verify() {
        let creds = StoredCredentials::derive("pencil", 16).unwrap();
        assert_eq!(creds.sha1.salt.len(), SALT_LEN);
        assert_eq!(creds.sha256.salt.len(), SALT_LEN);
        assert_ne!(creds.sha1.salt, creds.sha256.salt);
        assert_eq!(creds.sha1.iterations, 16);
        assert_eq!(creds.sha1.stored_key.len(), 20);
        assert_eq!(creds.sha1.server_key.len(), 20);
        assert_eq!(creds.sha256.stored_key.len(), 32);
        assert_eq!(creds.sha256.server_key.len(), 32);
        assert!(creds.verify_password("pencil"));
        assert!(!creds.verify_password("pencil "));
        assert!(!creds.verify_password("Pencil"));
        assert!(!creds.verify_password(""));
        // Salts are random: the same password twice gives different secrets.
        let again = StoredCredentials::derive("pencil", 16).unwrap();
        assert_ne!(creds, again);
    }

    #[test]
    fn derive_applies_saslprep() {
        // U+00AD maps to nothing and U+2000 to SPACE under SASLprep.
        let creds = StoredCredentials::derive("pen\u{00AD}cil\u{2000}x", 8).unwrap();
        assert!(creds.verify_password("pencil x"));
        assert!(creds.verify_password("pen\u{00AD}cil\u{2000}x"));
    }

    #[test]
    fn derive_rejects_bad_input() {
        assert!(matches!(
            StoredCredentials::derive("a\u{0007}b", 8),
            Err(SaslError::InvalidPassword)
        ));
        assert!(matches!(
            StoredCredentials::derive("", 8),
            Err(SaslError::EmptyPassword)
        ));
        assert!(matches!(
            StoredCredentials::derive("\u{00AD}", 8),
            Err(SaslError::EmptyPassword)
        ));
        assert!(matches!(
            StoredCredentials::derive("pencil", 0),
            Err(SaslError::InvalidIterations)
        ));
    }

    #[test]
    fn verify_password_with_zero_iterations_is_false() {
        let mut creds = StoredCredentials::derive("pencil", 4).unwrap();
        creds.sha256.iterations = 0;
        assert!(!creds.verify_password("pencil"));
    }

    #[test]
    fn credentials_are_serde() {
        fn is_serde<T: Serialize + for<'de> Deserialize<'de>>() {}
        is_serde::<StoredCredentials>();
        is_serde::<ScramCredentials>();
    }

    #[test]
    fn authzid_rules() {
        assert!(authzid_allowed("", "user", "example.com"));
        assert!(authzid_allowed("user@example.com", "user", "example.com"));
        assert!(authzid_allowed("User@EXAMPLE.com", "user", "example.com"));
        assert!(!authzid_allowed("other@example.com", "user", "example.com"));
        assert!(!authzid_allowed("user@example.org", "user", "example.com"));
        assert!(!authzid_allowed(
            "user@example.com/res",
            "user",
            "example.com"
        ));
        assert!(!authzid_allowed("example.com", "user", "example.com"));
        assert!(!authzid_allowed("user", "user", "example.com"));
        assert!(!authzid_allowed("@@@", "user", "example.com"));
    }

    #[test]
    fn fake_salt_is_stable_and_keyed() {
        let a = fake_salt(&[1; 32], "ghost");
        assert_eq!(a.len(), SALT_LEN);
        assert_eq!(a, fake_salt(&[1; 32], "ghost"));
        assert_ne!(a, fake_salt(&[1; 32], "ghost2"));
        assert_ne!(a, fake_salt(&[2; 32], "ghost"));
    }

    #[test]
    fn server_is_send_and_debug_hides_secrets() {
        fn is_send<T: Send>() {}
        is_send::<SaslServer>();
        let server = SaslServer::new(
            Mechanism::ScramSha256,
            "example.com",
            ChannelBindingData::default(),
            false,
            [0xAB; 32],
        );
        assert_eq!(format!("{server:?}"), "SaslServer { state: \"scram\" }");
    }

    #[test]
    fn step_after_end_is_malformed() {
        let creds = StoredCredentials::derive("pencil", 4).unwrap();
        let lookup = move |u: &str| (u == "user").then(|| creds.clone());
        let mut server = SaslServer::new(
            Mechanism::Plain,
            "example.com",
            ChannelBindingData::default(),
            false,
            [0; 32],
        );
        assert!(matches!(
            server.step(b"\0user\0pencil", &lookup),
            SaslStep::Success { .. }
        ));
        assert_eq!(
            server.step(b"\0user\0pencil", &lookup),
            SaslStep::Failure(SaslFailure::MalformedRequest)
        );

        let mut server = SaslServer::new(
            Mechanism::Plain,
            "example.com",
            ChannelBindingData::default(),
            false,
            [0; 32],
        );
        assert_eq!(
            server.step(b"\0user\0wrong", &lookup),
            SaslStep::Failure(SaslFailure::NotAuthorized)
        );
        assert_eq!(
            server.step(b"\0user\0pencil", &lookup),
            SaslStep::Failure(SaslFailure::MalformedRequest)
        );
    }
}
