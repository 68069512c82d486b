//! SCRAM-SHA-1(-PLUS) and SCRAM-SHA-256(-PLUS), server side (RFC 5802, RFC 7677).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    authzid_allowed, fake_salt, normalize_username, prep_password, ChannelBindingData, Mechanism,
    SaslFailure, SaslStep, ScramCredentials, StoredCredentials, DEFAULT_ITERATIONS,
};

/// Length of the random part of the server nonce before base64 (32 printable characters).
const SERVER_NONCE_LEN: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    pub(super) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length (long ones are hashed first), so
        // `new_from_slice` cannot fail whatever the key is.
        match self {
            ScramHash::Sha1 => {
                let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key)
                    .expect("HMAC accepts keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha256 => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .expect("HMAC accepts keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    pub(super) fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// Hi() of RFC 5802 §2.2, which is PBKDF2 with one output block.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        match self {
            ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
        }
        out
    }

    /// `password` must already be SASLprep'd.
    pub(super) fn credentials(
        self,
        password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> ScramCredentials {
        let salted = self.salted_password(password, &salt, iterations);
        let client_key = self.hmac(&salted, b"Client Key");
        ScramCredentials {
            stored_key: self.hash(&client_key),
            server_key: self.hmac(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// Runs the whole derivation even when the password cannot be prepared,
    /// so a refusal costs the same time as a mismatch.
    pub(super) fn verify_password(self, creds: &ScramCredentials, password: &str) -> bool {
        let prepped = prep_password(password);
        let bytes = match &prepped {
            Ok(p) => p.as_bytes(),
            Err(_) => password.as_bytes(),
        };
        let salted = self.salted_password(bytes, &creds.salt, creds.iterations.max(1));
        let client_key = self.hmac(&salted, b"Client Key");
        let stored_key = self.hash(&client_key);
        let matches: bool = stored_key.ct_eq(&creds.stored_key).into();
        matches && prepped.is_ok() && creds.iterations != 0
    }

    /// Keys that no password produces in practice, in the shape of real ones,
    /// so the last step for an unknown user costs what a real one does.
    pub(super) fn fake_credentials(self, key: &[u8; 32], username: &str) -> ScramCredentials {
        let mut material = Vec::with_capacity(username.len() + 16);
        material.extend_from_slice(b"fake stored key\0");
        material.extend_from_slice(username.as_bytes());
        let stored_key = self.hmac(key, &material);
        material[..16].copy_from_slice(b"fake server key\0");
        let server_key = self.hmac(key, &material);
        ScramCredentials {
            salt: fake_salt(key, username),
            iterations: DEFAULT_ITERATIONS,
            stored_key,
            server_key,
        }
    }
}

/// What the client-first message fixed, needed to check the client-final one.
struct Exchange {
    /// `gs2-header` exactly as sent, trailing comma included.
    gs2_header: Vec<u8>,
    /// The binding data the client must prove it sees (empty without binding).
    cb_data: Vec<u8>,
    authzid: String,
    /// The normalised localpart, when it names an existing account.
    account: Option<String>,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    creds: ScramCredentials,
}

enum ScramState {
    ClientFirst,
    ClientFinal(Box<Exchange>),
    Done,
}

pub(super) struct ScramServer {
    hash: ScramHash,
    plus: bool,
    host: String,
    channel_binding: ChannelBindingData,
    plus_offered: bool,
    fake_salt_key: [u8; 32],
    fixed_server_nonce: Option<String>,
    state: ScramState,
}

type StepResult<T> = Result<T, SaslFailure>;

impl ScramServer {
    pub(super) fn new(
        mechanism: Mechanism,
        host: &str,
        channel_binding: ChannelBindingData,
        plus_offered: bool,
        fake_salt_key: [u8; 32],
    ) -> Self {
        let hash = match mechanism {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => ScramHash::Sha1,
            _ => ScramHash::Sha256,
        };
        ScramServer {
            hash,
            plus: mechanism.is_plus(),
            host: host.to_owned(),
            channel_binding,
            plus_offered,
            fake_salt_key,
            fixed_server_nonce: None,
            state: ScramState::ClientFirst,
        }
    }

    #[cfg(test)]
    pub(super) fn set_server_nonce(&mut self, nonce: &str) {
        self.fixed_server_nonce = Some(nonce.to_owned());
    }

    pub(super) fn step(
        &mut self,
        input: &[u8],
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        let state = std::mem::replace(&mut self.state, ScramState::Done);
        let result = match state {
            ScramState::ClientFirst => self.client_first(input, lookup).map(|exchange| {
                let challenge = exchange.server_first.clone().into_bytes();
                self.state = ScramState::ClientFinal(Box::new(exchange));
                SaslStep::Challenge(challenge)
            }),
            ScramState::ClientFinal(exchange) => self.client_final(input, exchange),
            ScramState::Done => Err(SaslFailure::MalformedRequest),
        };
        result.unwrap_or_else(SaslStep::Failure)
    }

    fn client_first(
        &self,
        input: &[u8],
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> StepResult<Exchange> {
        let text = message_text(input)?;

        // gs2-header = gs2-cbind-flag "," [ authzid ] ","
        let (flag, rest) = text.split_once(',').ok_or(SaslFailure::MalformedRequest)?;
        let (authzid_field, bare) = rest.split_once(',').ok_or(SaslFailure::MalformedRequest)?;
        let gs2_len = flag.len() + authzid_field.len() + 2;
        let gs2_header = text.as_bytes()[..gs2_len].to_vec();

        let cb_data = self.check_cbind_flag(flag)?;

        let authzid = if authzid_field.is_empty() {
            String::new()
        } else {
            let raw = authzid_field
                .strip_prefix("a=")
                .ok_or(SaslFailure::MalformedRequest)?;
            decode_saslname(raw)?
        };

        // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
        let mut attrs = bare.split(',');
        let first = attrs.next().unwrap_or_default();
        if first.starts_with("m=") {
            // RFC 5802 §5.1: a mandatory extension we cannot know must fail.
            return Err(SaslFailure::MalformedRequest);
        }
        let raw_username = first
            .strip_prefix("n=")
            .ok_or(SaslFailure::MalformedRequest)?;
        let username = decode_saslname(raw_username)?;
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(SaslFailure::MalformedRequest)?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(is_printable) {
            return Err(SaslFailure::MalformedRequest);
        }
        check_extensions(attrs)?;

        let normalised = normalize_username(&username);
        let account = normalised
            .as_deref()
            .and_then(|name| lookup(name).map(|stored| (name.to_owned(), stored)));
        let (account, creds) = match account {
            Some((name, stored)) => {
                let creds = match self.hash {
                    ScramHash::Sha1 => stored.sha1,
                    ScramHash::Sha256 => stored.sha256,
                };
                (Some(name), creds)
            }
            None => {
                // Keyed on the normalised name when there is one, so "Ghost"
                // and "ghost" get one salt, as they would for a real account.
                let salt_name = normalised.as_deref().unwrap_or(&username);
                let fake = self.hash.fake_credentials(&self.fake_salt_key, salt_name);
                (None, fake)
            }
        };

        let server_nonce = match &self.fixed_server_nonce {
            Some(fixed) => fixed.clone(),
            None => {
                let mut random = [0u8; SERVER_NONCE_LEN];
                OsRng
                    .try_fill_bytes(&mut random)
                    .map_err(|_| SaslFailure::TemporaryAuthFailure)?;
                BASE64.encode(random)
            }
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&creds.salt),
            creds.iterations
        );

        Ok(Exchange {
            gs2_header,
            cb_data,
            authzid,
            account,
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
            creds,
        })
    }

    /// Returns the channel-binding data the client must echo in `c=`.
    fn check_cbind_flag(&self, flag: &str) -> StepResult<Vec<u8>> {
        match flag {
            // -PLUS means "with channel binding": agreeing to go without is
            // a contradiction, not a downgrade we should quietly accept.
            "n" | "y" if self.plus => Err(SaslFailure::MalformedRequest),
            "n" => Ok(Vec::new()),
            // The client could bind but believes we cannot; if we offered
            // -PLUS, someone stripped it from the feature list (RFC 5802 §6).
            "y" if self.plus_offered => Err(SaslFailure::NotAuthorized),
            "y" => Ok(Vec::new()),
            _ => {
                let name = flag
                    .strip_prefix("p=")
                    .ok_or(SaslFailure::MalformedRequest)?;
                let valid_name = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                if !valid_name || !self.plus {
                    return Err(SaslFailure::MalformedRequest);
                }
                let data = match name {
                    "tls-exporter" => self.channel_binding.tls_exporter.as_ref(),
                    "tls-server-end-point" => self.channel_binding.tls_server_end_point.as_ref(),
                    _ => None,
                };
                // A binding we cannot produce cannot be verified, so the
                // client cannot be authenticated on it.
                data.cloned().ok_or(SaslFailure::NotAuthorized)
            }
        }
    }

    fn client_final(&self, input: &[u8], exchange: Box<Exchange>) -> StepResult<SaslStep> {
        let text = message_text(input)?;

        // client-final-message = channel-binding "," nonce ["," extensions] "," proof
        let (without_proof, proof_attr) =
            text.rsplit_once(',').ok_or(SaslFailure::MalformedRequest)?;
        let proof_b64 = proof_attr
            .strip_prefix("p=")
            .ok_or(SaslFailure::MalformedRequest)?;
        let mut attrs = without_proof.split(',');
        let cbind_b64 = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(SaslFailure::MalformedRequest)?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(SaslFailure::MalformedRequest)?;
        check_extensions(attrs)?;
        if cbind_b64.is_empty() || proof_b64.is_empty() {
            return Err(SaslFailure::MalformedRequest);
        }
        let cbind = BASE64
            .decode(cbind_b64)
            .map_err(|_| SaslFailure::IncorrectEncoding)?;
        let proof = BASE64
            .decode(proof_b64)
            .map_err(|_| SaslFailure::IncorrectEncoding)?;

        let mut expected_cbind = exchange.gs2_header.clone();
        expected_cbind.extend_from_slice(&exchange.cb_data);
        let cbind_ok: bool = cbind.ct_eq(&expected_cbind).into();
        let nonce_ok = nonce == exchange.nonce;

        let auth_message = format!(
            "{},{},{}",
            exchange.client_first_bare, exchange.server_first, without_proof
        );
        let creds = &exchange.creds;
        let client_signature = self.hash.hmac(&creds.stored_key, auth_message.as_bytes());
        let proof_ok = proof.len() == client_signature.len() && {
            let client_key: Vec<u8> = proof
                .iter()
                .zip(&client_signature)
                .map(|(p, s)| p ^ s)
                .collect();
            self.hash.hash(&client_key).ct_eq(&creds.stored_key).into()
        };
        let server_signature = self.hash.hmac(&creds.server_key, auth_message.as_bytes());

        let username = match exchange.account {
            Some(name) if cbind_ok && nonce_ok && proof_ok => name,
            _ => return Err(SaslFailure::NotAuthorized),
        };
        if !authzid_allowed(&exchange.authzid, &username, &self.host) {
            return Err(SaslFailure::InvalidAuthzid);
        }
        let additional_data = format!("v={}", BASE64.encode(server_signature)).into_bytes();
        Ok(SaslStep::Success {
            username,
            additional_data: Some(additional_data),
        })
    }
}

/// SCRAM messages are UTF-8 and no attribute may contain NUL (RFC 5802 §7).
fn message_text(input: &[u8]) -> StepResult<&str> {
    if input.is_empty() || input.contains(&0) {
        return Err(SaslFailure::MalformedRequest);
    }
    std::str::from_utf8(input).map_err(|_| SaslFailure::MalformedRequest)
}

/// `printable = %x21-2B / %x2D-7E`: what a nonce may contain.
fn is_printable(b: u8) -> bool {
    matches!(b, 0x21..=0x2B | 0x2D..=0x7E)
}

/// `saslname`: "=2C" stands for "," and "=3D" for "=", any other "=" is an error.
fn decode_saslname(raw: &str) -> StepResult<String> {
    if raw.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        let escape = rest.get(pos..pos + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslFailure::MalformedRequest),
        }
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `extensions = attr-val *("," attr-val)`, `attr-val = ALPHA "=" value`.
/// Unknown optional extensions are ignored, but "m" is reserved for ones
/// that must be understood, which we cannot.
fn check_extensions<'a>(attrs: impl Iterator<Item = &'a str>) -> StepResult<()> {
    for attr in attrs {
        let mut bytes = attr.bytes();
        let name = bytes.next();
        let well_formed = matches!(name, Some(b) if b.is_ascii_alphabetic())
            && bytes.next() == Some(b'=')
            && bytes.next().is_some();
        if !well_formed || name == Some(b'm') {
            return Err(SaslFailure::MalformedRequest);
        }
    }
    Ok(())
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::super::{SaslServer, SALT_LEN};
    use super::*;
    use sasl::client::mechanisms::Scram;
    use sasl::client::Mechanism as ClientMechanism;
    use sasl::common::scram::{ScramProvider, Sha1 as ClientSha1, Sha256 as ClientSha256};
    use sasl::common::{ChannelBinding, Credentials};

    const HOST: &str = "example.com";
    const KEY: [u8; 32] = [7; 32];
    const EXPORTER: &[u8] = b"0123456789abcdef0123456789abcdef";
    const END_POINT: &[u8] = b"certificate hash, 32 bytes long!";

    fn cb_data() -> ChannelBindingData {
        ChannelBindingData {
            tls_exporter: Some(EXPORTER.to_vec()),
            tls_server_end_point: Some(END_POINT.to_vec()),
        }
    }

    /// Low iteration count so the many exchanges below stay fast.
    fn pencil() -> StoredCredentials {
        StoredCredentials::derive("pencil", 64).unwrap()
    }

    fn lookup_user(stored: StoredCredentials) -> impl Fn(&str) -> Option<StoredCredentials> {
        move |name: &str| (name == "user").then(|| stored.clone())
    }

    fn new_server(mechanism: Mechanism, plus_offered: bool) -> SaslServer {
        SaslServer::new(mechanism, HOST, cb_data(), plus_offered, KEY)
    }

    fn challenge(step: SaslStep) -> Vec<u8> {
        match step {
            SaslStep::Challenge(c) => c,
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    fn failure(step: SaslStep) -> SaslFailure {
        match step {
            SaslStep::Failure(f) => f,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// Runs a full exchange with the `sasl` crate's client; returns the final step.
    fn run_client(
        mut client: Box<dyn ClientMechanism>,
        server: &mut SaslServer,
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        let first = client.initial();
        let server_first = challenge(server.step(&first, lookup));
        let last = client.response(&server_first).unwrap();
        let result = server.step(&last, lookup);
        if let SaslStep::Success {
            additional_data: Some(data),
            ..
        } = &result
        {
            client
                .success(data)
                .expect("client accepts the server signature");
        }
        result
    }

    fn client_for(
        mechanism: Mechanism,
        user: &str,
        password: &str,
        cb: ChannelBinding,
    ) -> Box<dyn ClientMechanism> {
        let creds = Credentials::default()
            .with_username(user)
            .with_password(password)
            .with_channel_binding(cb);
        match mechanism {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => {
                Box::new(Scram::<ClientSha1>::from_credentials(creds).unwrap())
            }
            _ => Box::new(Scram::<ClientSha256>::from_credentials(creds).unwrap()),
        }
    }

    fn assert_success(step: SaslStep, expected_user: &str) {
        match step {
            SaslStep::Success {
                username,
                additional_data,
            } => {
                assert_eq!(username, expected_user);
                assert!(additional_data.unwrap().starts_with(b"v="));
            }
            other => panic!("expected success, got {other:?}"),
        }
    }

    /// Credentials as in the RFC examples: password "pencil" with the RFC's salts.
    fn rfc_credentials() -> StoredCredentials {
        StoredCredentials {
            sha1: ScramHash::Sha1.credentials(
                b"pencil",
                BASE64.decode("QSXCR+Q6sek8bf92").unwrap(),
                4096,
            ),
            sha256: ScramHash::Sha256.credentials(
                b"pencil",
                BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
                4096,
            ),
        }
    }

    #[test]
    fn rfc5802_scram_sha1_vector() {
        let lookup = lookup_user(rfc_credentials());
        let mut server = SaslServer::new(
            Mechanism::ScramSha1,
            HOST,
            ChannelBindingData::default(),
            false,
            KEY,
        );
        server.set_server_nonce("3rfcNHYJY1ZVvWVs7j");
        let server_first = challenge(server.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", &lookup));
        assert_eq!(
            server_first,
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
        );
        let result = server.step(
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            &lookup,
        );
        assert_eq!(
            result,
            SaslStep::Success {
                username: "user".into(),
                additional_data: Some(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=".to_vec()),
            }
        );
    }

    #[test]
    fn rfc7677_scram_sha256_vector() {
        let lookup = lookup_user(rfc_credentials());
        let mut server = SaslServer::new(
            Mechanism::ScramSha256,
            HOST,
            ChannelBindingData::default(),
            false,
            KEY,
        );
        server.set_server_nonce("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        let server_first = challenge(server.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &lookup));
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .to_vec()
        );
        let result = server.step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            &lookup,
        );
        assert_eq!(
            result,
            SaslStep::Success {
                username: "user".into(),
                additional_data: Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()),
            }
        );
    }

    #[test]
    fn rfc_vector_with_wrong_proof_fails() {
        let lookup = lookup_user(rfc_credentials());
        let mut server = SaslServer::new(
            Mechanism::ScramSha1,
            HOST,
            ChannelBindingData::default(),
            false,
            KEY,
        );
        server.set_server_nonce("3rfcNHYJY1ZVvWVs7j");
        challenge(server.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", &lookup));
        let result = server.step(
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v1X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            &lookup,
        );
        assert_eq!(result, SaslStep::Failure(SaslFailure::NotAuthorized));
    }

    #[test]
    fn non_canonical_base64_is_incorrect_encoding() {
        let lookup = lookup_user(rfc_credentials());
        let mut server = SaslServer::new(
            Mechanism::ScramSha1,
            HOST,
            ChannelBindingData::default(),
            false,
            KEY,
        );
        server.set_server_nonce("3rfcNHYJY1ZVvWVs7j");
        challenge(server.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", &lookup));
        // Same bytes as the RFC proof plus nonzero padding bits: one proof, one spelling.
        let result = server.step(
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Tt=",
            &lookup,
        );
        assert_eq!(result, SaslStep::Failure(SaslFailure::IncorrectEncoding));
    }

    #[test]
    fn sasl_client_non_plus_mechanisms() {
        let lookup = lookup_user(pencil());
        for mechanism in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
            for offered in [false, true] {
                let mut server = new_server(mechanism, offered);
                let client = client_for(mechanism, "user", "pencil", ChannelBinding::None);
                assert_success(run_client(client, &mut server, &lookup), "user");
            }
            // 'y' is fine when the server really did not offer -PLUS.
            let mut server = new_server(mechanism, false);
            let client = client_for(mechanism, "user", "pencil", ChannelBinding::Unsupported);
            assert_success(run_client(client, &mut server, &lookup), "user");
        }
    }

    #[test]
    fn sasl_client_plus_tls_exporter() {
        let lookup = lookup_user(pencil());
        for mechanism in [Mechanism::ScramSha1Plus, Mechanism::ScramSha256Plus] {
            let mut server = new_server(mechanism, true);
            let client = client_for(
                mechanism,
                "user",
                "pencil",
                ChannelBinding::TlsExporter(EXPORTER.to_vec()),
            );
            assert_success(run_client(client, &mut server, &lookup), "user");
        }
    }

    #[test]
    fn sasl_client_plus_wrong_binding_data() {
        let lookup = lookup_user(pencil());
        for mechanism in [Mechanism::ScramSha1Plus, Mechanism::ScramSha256Plus] {
            let mut server = new_server(mechanism, true);
            let client = client_for(
                mechanism,
                "user",
                "pencil",
                ChannelBinding::TlsExporter(b"a man in the middle sees another".to_vec()),
            );
            let result = run_client(client, &mut server, &lookup);
            assert_eq!(result, SaslStep::Failure(SaslFailure::NotAuthorized));
        }
    }

    #[test]
    fn binding_type_without_data_is_refused() {
        let lookup = lookup_user(pencil());
        let mut server = SaslServer::new(
            Mechanism::ScramSha256Plus,
            HOST,
            ChannelBindingData {
                tls_exporter: None,
                tls_server_end_point: Some(END_POINT.to_vec()),
            },
            true,
            KEY,
        );
        let mut client = client_for(
            Mechanism::ScramSha256Plus,
            "user",
            "pencil",
            ChannelBinding::TlsExporter(EXPORTER.to_vec()),
        );
        let result = server.step(&client.initial(), &lookup);
        assert_eq!(result, SaslStep::Failure(SaslFailure::NotAuthorized));

        // tls-unique is unsafe with TLS 1.3 and not implemented at all.
        let mut server = new_server(Mechanism::ScramSha256Plus, true);
        let mut client = client_for(
            Mechanism::ScramSha256Plus,
            "user",
            "pencil",
            ChannelBinding::TlsUnique(EXPORTER.to_vec()),
        );
        let result = server.step(&client.initial(), &lookup);
        assert_eq!(result, SaslStep::Failure(SaslFailure::NotAuthorized));
    }

    /// The `sasl` client has no tls-server-end-point, so this one is built
    /// from the crate's SCRAM primitives; the server code takes no part in it.
    struct EndPointClient<S: ScramProvider> {
        gs2_header: String,
        cb_data: Vec<u8>,
        bare: String,
        server_signature: Vec<u8>,
        _hash: std::marker::PhantomData<S>,
    }

    impl<S: ScramProvider> EndPointClient<S> {
        fn new(user: &str, cb_data: &[u8]) -> Self {
            EndPointClient {
                gs2_header: "p=tls-server-end-point,,".into(),
                cb_data: cb_data.to_vec(),
                bare: format!("n={user},r=endpointclientnonce"),
                server_signature: Vec::new(),
                _hash: std::marker::PhantomData,
            }
        }

        fn initial(&self) -> Vec<u8> {
            format!("{}{}", self.gs2_header, self.bare).into_bytes()
        }

        fn response(&mut self, server_first: &[u8], password: &str) -> Vec<u8> {
            let server_first = std::str::from_utf8(server_first).unwrap();
            let mut nonce = "";
            let mut salt = Vec::new();
            let mut iterations = 0;
            for attr in server_first.split(',') {
                match attr.split_at(2) {
                    ("r=", v) => nonce = v,
                    ("s=", v) => salt = BASE64.decode(v).unwrap(),
                    ("i=", v) => iterations = v.parse().unwrap(),
                    _ => panic!("unexpected attribute {attr}"),
                }
            }
            let mut cbind = self.gs2_header.clone().into_bytes();
            cbind.extend_from_slice(&self.cb_data);
            let without_proof = format!("c={},r={nonce}", BASE64.encode(cbind));
            let salted = S::derive(&password.into(), &salt, iterations).unwrap();
            let client_key = S::hmac(b"Client Key", &salted).unwrap();
            let server_key = S::hmac(b"Server Key", &salted).unwrap();
            let auth = format!("{},{server_first},{without_proof}", self.bare);
            let signature = S::hmac(auth.as_bytes(), &S::hash(&client_key)).unwrap();
            let proof: Vec<u8> = client_key
                .iter()
                .zip(&signature)
                .map(|(a, b)| a ^ b)
                .collect();
            self.server_signature = S::hmac(auth.as_bytes(), &server_key).unwrap();
            format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes()
        }

        fn check_success(&self, data: &[u8]) {
            let expected = format!("v={}", BASE64.encode(&self.server_signature));
            assert_eq!(data, expected.as_bytes());
        }
    }

    fn run_end_point<S: ScramProvider>(
        mechanism: Mechanism,
        client_cb: &[u8],
        password: &str,
    ) -> SaslStep {
        let lookup = lookup_user(pencil());
        let mut server = new_server(mechanism, true);
        let mut client = EndPointClient::<S>::new("user", client_cb);
        let server_first = challenge(server.step(&client.initial(), &lookup));
        let result = server.step(&client.response(&server_first, password), &lookup);
        if let SaslStep::Success {
            additional_data: Some(data),
            ..
        } = &result
        {
            client.check_success(data);
        }
        result
    }

    #[test]
    fn plus_tls_server_end_point() {
        assert_success(
            run_end_point::<ClientSha1>(Mechanism::ScramSha1Plus, END_POINT, "pencil"),
            "user",
        );
        assert_success(
            run_end_point::<ClientSha256>(Mechanism::ScramSha256Plus, END_POINT, "pencil"),
            "user",
        );
        assert_eq!(
            run_end_point::<ClientSha256>(Mechanism::ScramSha256Plus, EXPORTER, "pencil"),
            SaslStep::Failure(SaslFailure::NotAuthorized)
        );
        assert_eq!(
            run_end_point::<ClientSha1>(Mechanism::ScramSha1Plus, END_POINT, "pencil2"),
            SaslStep::Failure(SaslFailure::NotAuthorized)
        );
    }

    #[test]
    fn wrong_password_fails_at_the_end() {
        let lookup = lookup_user(pencil());
        for mechanism in Mechanism::ALL
            .into_iter()
            .filter(|m| *m != Mechanism::Plain)
        {
            let cb = if mechanism.is_plus() {
                ChannelBinding::TlsExporter(EXPORTER.to_vec())
            } else {
                ChannelBinding::None
            };
            let mut server = new_server(mechanism, true);
            let client = client_for(mechanism, "user", "pencil!", cb);
            let result = run_client(client, &mut server, &lookup);
            assert_eq!(result, SaslStep::Failure(SaslFailure::NotAuthorized));
        }
    }

    /// Splits a server-first message into (nonce, salt, iterations).
    fn parse_server_first(message: &[u8]) -> (String, Vec<u8>, u32) {
        let text = std::str::from_utf8(message).unwrap();
        let attrs: Vec<&str> = text.split(',').collect();
        assert_eq!(attrs.len(), 3, "{text}");
        let nonce = attrs[0].strip_prefix("r=").unwrap().to_owned();
        let salt = BASE64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        (nonce, salt, iterations)
    }

    #[test]
    fn unknown_user_looks_like_a_known_one() {
        let stored = StoredCredentials::derive("pencil", DEFAULT_ITERATIONS).unwrap();
        let lookup = lookup_user(stored);
        for mechanism in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
            let first_for = |user: &str| {
                let mut server = new_server(mechanism, false);
                let mut client = client_for(mechanism, user, "pencil", ChannelBinding::None);
                let first = client.initial();
                let server_first = challenge(server.step(&first, &lookup));
                (server, client, server_first)
            };
            let (_, _, known) = first_for("user");
            let (mut server, mut client, unknown) = first_for("ghost");
            let (known_nonce, known_salt, known_iter) = parse_server_first(&known);
            let (unknown_nonce, unknown_salt, unknown_iter) = parse_server_first(&unknown);
            assert_eq!(known_nonce.len(), unknown_nonce.len());
            assert_eq!(known_salt.len(), unknown_salt.len());
            assert_eq!(unknown_salt.len(), SALT_LEN);
            assert_eq!(known_iter, unknown_iter);

            // The fake salt is stable, per user, and follows normalisation.
            let (_, _, again) = first_for("ghost");
            assert_eq!(parse_server_first(&again).1, unknown_salt);
            let (_, _, upper) = first_for("GHOST");
            assert_eq!(parse_server_first(&upper).1, unknown_salt);
            let (_, _, other) = first_for("phantom");
            assert_ne!(parse_server_first(&other).1, unknown_salt);

            let last = client.response(&unknown).unwrap();
            assert_eq!(
                server.step(&last, &lookup),
                SaslStep::Failure(SaslFailure::NotAuthorized)
            );
        }
    }

    #[test]
    fn invalid_username_fails_only_at_the_end() {
        let lookup = lookup_user(pencil());
        // SASLprep refuses the control character, nodeprep the space and "@".
        for raw in ["us er", "a@b", "x\u{0007}y", "\u{00AD}"] {
            let mut server = new_server(Mechanism::ScramSha256, false);
            let mut client =
                client_for(Mechanism::ScramSha256, raw, "pencil", ChannelBinding::None);
            let server_first = challenge(server.step(&client.initial(), &lookup));
            let (_, salt, iterations) = parse_server_first(&server_first);
            assert_eq!(salt.len(), SALT_LEN);
            assert_eq!(iterations, DEFAULT_ITERATIONS);
            let last = client.response(&server_first).unwrap();
            assert_eq!(
                server.step(&last, &lookup),
                SaslStep::Failure(SaslFailure::NotAuthorized),
                "{raw}"
            );
        }
    }

    #[test]
    fn username_is_normalised() {
        let lookup = lookup_user(pencil());
        let mut server = new_server(Mechanism::ScramSha256, false);
        let client = client_for(
            Mechanism::ScramSha256,
            "USER",
            "pencil",
            ChannelBinding::None,
        );
        assert_success(run_client(client, &mut server, &lookup), "user");
    }

    #[test]
    fn saslname_escapes_reach_the_lookup() {
        let stored = pencil();
        let lookup = move |name: &str| (name == "a=b").then(|| stored.clone());
        let mut server = new_server(Mechanism::ScramSha1, false);
        let client = client_for(
            Mechanism::ScramSha1,
            "a=3Db",
            "pencil",
            ChannelBinding::None,
        );
        assert_success(run_client(client, &mut server, &lookup), "a=b");
    }

    #[test]
    fn y_flag_refused_when_plus_offered() {
        let lookup = lookup_user(pencil());
        for mechanism in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
            let mut server = new_server(mechanism, true);
            let mut client = client_for(mechanism, "user", "pencil", ChannelBinding::Unsupported);
            assert_eq!(
                server.step(&client.initial(), &lookup),
                SaslStep::Failure(SaslFailure::NotAuthorized)
            );
        }
    }

    #[test]
    fn plus_mechanism_requires_p_flag() {
        let lookup = lookup_user(pencil());
        for flag in ["n,,", "y,,"] {
            let mut server = new_server(Mechanism::ScramSha256Plus, true);
            let input = format!("{flag}n=user,r=abcdef");
            assert_eq!(
                failure(server.step(input.as_bytes(), &lookup)),
                SaslFailure::MalformedRequest
            );
        }
    }

    #[test]
    fn non_plus_mechanism_refuses_p_flag() {
        let lookup = lookup_user(pencil());
        let mut server = new_server(Mechanism::ScramSha256, true);
        let mut client = client_for(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            ChannelBinding::TlsExporter(EXPORTER.to_vec()),
        );
        assert_eq!(
            failure(server.step(&client.initial(), &lookup)),
            SaslFailure::MalformedRequest
        );
    }

    /// Drives an exchange by hand so the GS2 header can carry an authzid.
    fn run_with_gs2(
        gs2_header: &str,
        user: &str,
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        let mut server = new_server(Mechanism::ScramSha256, false);
        let bare = format!("n={user},r=clientnonce");
        let server_first = challenge(server.step(format!("{gs2_header}{bare}").as_bytes(), lookup));
        let (nonce, salt, iterations) = parse_server_first(&server_first);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(gs2_header));
        let salted = ClientSha256::derive(&"pencil".into(), &salt, iterations).unwrap();
        let client_key = ClientSha256::hmac(b"Client Key", &salted).unwrap();
        let auth = format!(
            "{bare},{},{without_proof}",
            std::str::from_utf8(&server_first).unwrap()
        );
        let signature =
            ClientSha256::hmac(auth.as_bytes(), &ClientSha256::hash(&client_key)).unwrap();
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let last = format!("{without_proof},p={}", BASE64.encode(proof));
        server.step(last.as_bytes(), lookup)
    }

    #[test]
    fn authzid_accepted_and_refused() {
        let lookup = lookup_user(pencil());
        assert_success(run_with_gs2("n,,", "user", &lookup), "user");
        assert_success(
            run_with_gs2("n,a=user@example.com,", "user", &lookup),
            "user",
        );
        assert_success(
            run_with_gs2("n,a=USER@Example.COM,", "user", &lookup),
            "user",
        );
        assert_eq!(
            run_with_gs2("n,a=admin@example.com,", "user", &lookup),
            SaslStep::Failure(SaslFailure::InvalidAuthzid)
        );
        assert_eq!(
            run_with_gs2("n,a=user@example.org,", "user", &lookup),
            SaslStep::Failure(SaslFailure::InvalidAuthzid)
        );
        assert_eq!(
            run_with_gs2("n,a=user@example.com/phone,", "user", &lookup),
            SaslStep::Failure(SaslFailure::InvalidAuthzid)
        );
        assert_eq!(
            run_with_gs2("n,a=us=2Cer@example.com,", "user", &lookup),
            SaslStep::Failure(SaslFailure::InvalidAuthzid)
        );
        // Wrong credentials say so, rather than revealing the authzid verdict.
        assert_eq!(
            run_with_gs2("n,a=admin@example.com,", "ghost", &lookup),
            SaslStep::Failure(SaslFailure::NotAuthorized)
        );
    }

    fn first_failure(mechanism: Mechanism, input: &[u8]) -> SaslFailure {
        let lookup = lookup_user(pencil());
        failure(new_server(mechanism, false).step(input, &lookup))
    }

    #[test]
    fn malformed_client_first() {
        use SaslFailure::*;
        let cases: &[(&[u8], SaslFailure)] = &[
            (b"", MalformedRequest),
            (b"n", MalformedRequest),
            (b"n,", MalformedRequest),
            (b"n,,", MalformedRequest),
            (b"n,,n=user", MalformedRequest),
            (b"n,,n=user,", MalformedRequest),
            (b"n,,n=user,r=", MalformedRequest),
            (b"n,,r=abc,n=user", MalformedRequest),
            (b"n,,n=,r=abc", MalformedRequest),
            (b"n,,n=us=er,r=abc", MalformedRequest),
            (b"n,,n=user=2,r=abc", MalformedRequest),
            (b"n,,n=user=2c,r=abc", MalformedRequest),
            (b"n,,m=ext,n=user,r=abc", MalformedRequest),
            (b"n,,n=user,r=abc,m=ext", MalformedRequest),
            (b"n,,n=user,r=abc,ext=1", MalformedRequest),
            (b"n,,n=user,r=abc,x=", MalformedRequest),
            (b"n,,n=user,r=abc,", MalformedRequest),
            (b"n,,n=user,r=ab\x7fc", MalformedRequest),
            (b"n,,n=user,r=ab c", MalformedRequest),
            (b"n,,n=us\0er,r=abc", MalformedRequest),
            (b"n,,n=\xff\xfe,r=abc", MalformedRequest),
            (b"x,,n=user,r=abc", MalformedRequest),
            (b"nn,,n=user,r=abc", MalformedRequest),
            (b",,n=user,r=abc", MalformedRequest),
            (b"n,b=x,n=user,r=abc", MalformedRequest),
            (b"n,a=,n=user,r=abc", MalformedRequest),
            (b"n,a=x=y,n=user,r=abc", MalformedRequest),
            (b"p=,,n=user,r=abc", MalformedRequest),
            (b"p=tls exporter,,n=user,r=abc", MalformedRequest),
            (b"\x00\x01\x02\x03", MalformedRequest),
            (b"\xc3\x28", MalformedRequest),
        ];
        for (input, expected) in cases {
            for mechanism in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
                assert_eq!(
                    first_failure(mechanism, input),
                    *expected,
                    "{}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn optional_extensions_are_ignored() {
        let lookup = lookup_user(pencil());
        let mut server = new_server(Mechanism::ScramSha1, false);
        let step = server.step(b"n,,n=user,r=abc,x=1,y=two", &lookup);
        assert!(matches!(step, SaslStep::Challenge(_)));
    }

    /// A server waiting for the client-final message; returns it with the combined nonce.
    fn at_client_final() -> (SaslServer, String) {
        let lookup = lookup_user(pencil());
        let mut server = new_server(Mechanism::ScramSha256, false);
        let server_first = challenge(server.step(b"n,,n=user,r=abc", &lookup));
        let (nonce, _, _) = parse_server_first(&server_first);
        (server, nonce)
    }

    #[test]
    fn malformed_client_final() {
        use SaslFailure::*;
        let lookup = lookup_user(pencil());
        let proof = BASE64.encode([0u8; 32]);
        let cases: Vec<(String, SaslFailure)> = vec![
            (String::new(), MalformedRequest),
            ("c=biws".into(), MalformedRequest),
            ("c=biws,r={n}".into(), MalformedRequest),
            ("c=biws,r={n},p=".into(), MalformedRequest),
            ("r={n},c=biws,p={p}".into(), MalformedRequest),
            ("c=biws,p={p}".into(), MalformedRequest),
            ("c=,r={n},p={p}".into(), MalformedRequest),
            ("c=biws,r={n},m=x,p={p}".into(), MalformedRequest),
            ("c=biws,r={n},p={p},x=y".into(), MalformedRequest),
            ("c=biws,r={n},,p={p}".into(), MalformedRequest),
            ("c=biws,r={n},p={p}\0".into(), MalformedRequest),
            ("c=bi!s,r={n},p={p}".into(), IncorrectEncoding),
            ("c=biw,r={n},p={p}".into(), IncorrectEncoding),
            ("c=biws,r={n},p=***".into(), IncorrectEncoding),
            ("c=biws,r={n},p=AAAA=".into(), IncorrectEncoding),
            // Well-formed but wrong: these are authentication failures.
            ("c=biws,r={n},p={p}".into(), NotAuthorized),
            ("c=biws,r={n},x=1,p={p}".into(), NotAuthorized),
            ("c=biws,r={n},p=AAAA".into(), NotAuthorized),
            ("c=biws,r=abc,p={p}".into(), NotAuthorized),
            ("c=biws,r={n}x,p={p}".into(), NotAuthorized),
            ("c=eSws,r={n},p={p}".into(), NotAuthorized),
        ];
        for (template, expected) in cases {
            let (mut server, nonce) = at_client_final();
            let input = template.replace("{n}", &nonce).replace("{p}", &proof);
            assert_eq!(
                failure(server.step(input.as_bytes(), &lookup)),
                expected,
                "{input}"
            );
        }
        let (mut server, _) = at_client_final();
        assert_eq!(
            failure(server.step(b"\xff\xfe\xfd", &lookup)),
            MalformedRequest
        );
    }

    #[test]
    fn garbage_never_panics() {
        let lookup = lookup_user(pencil());
        // Deterministic pseudo-random inputs, with SCRAM-ish punctuation mixed in.
        let mut seed: u32 = 0x1234_5678;
        let alphabet = b"nypcra=,ms2C3D\0\xff AZ09+/";
        for round in 0..2000 {
            let len = (round % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    if seed >> 31 == 0 {
                        alphabet[(seed >> 8) as usize % alphabet.len()]
                    } else {
                        (seed >> 16) as u8
                    }
                })
                .collect();
            let mut first = new_server(Mechanism::ScramSha1Plus, true);
            let _ = first.step(&input, &lookup);
            let (mut second, _) = at_client_final();
            assert!(!matches!(
                second.step(&input, &lookup),
                SaslStep::Success { .. } | SaslStep::Challenge(_)
            ));
        }
    }

    #[test]
    fn step_after_success_or_failure() {
        let lookup = lookup_user(pencil());
        let mut server = new_server(Mechanism::ScramSha256, false);
        let client = client_for(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            ChannelBinding::None,
        );
        assert_success(run_client(client, &mut server, &lookup), "user");
        assert_eq!(
            failure(server.step(b"n,,n=user,r=abc", &lookup)),
            SaslFailure::MalformedRequest
        );

        let mut server = new_server(Mechanism::ScramSha256, false);
        failure(server.step(b"garbage", &lookup));
        assert_eq!(
            failure(server.step(b"n,,n=user,r=abc", &lookup)),
            SaslFailure::MalformedRequest
        );
    }

    #[test]
    fn decode_saslname_cases() {
        assert_eq!(decode_saslname("abc").unwrap(), "abc");
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert_eq!(decode_saslname("=3D=3D").unwrap(), "==");
        assert_eq!(decode_saslname("ä=2C").unwrap(), "ä,");
        assert!(decode_saslname("").is_err());
        assert!(decode_saslname("=").is_err());
        assert!(decode_saslname("a=2").is_err());
        assert!(decode_saslname("a=2c").is_err());
        assert!(decode_saslname("a=20").is_err());
        assert!(decode_saslname("=ä").is_err());
    }

    #[test]
    fn stored_keys_have_hash_lengths() {
        let fake = ScramHash::Sha1.fake_credentials(&KEY, "ghost");
        assert_eq!(fake.stored_key.len(), 20);
        assert_eq!(fake.server_key.len(), 20);
        assert_ne!(fake.stored_key, fake.server_key);
        let fake = ScramHash::Sha256.fake_credentials(&KEY, "ghost");
        assert_eq!(fake.stored_key.len(), 32);
        assert_eq!(fake.salt.len(), SALT_LEN);
        assert_eq!(fake.iterations, DEFAULT_ITERATIONS);
    }
}
