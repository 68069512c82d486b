//! TLS 1.3 record protection for an established connection (RFC 8446 §5.2, §7.1-7.3):
//! sealing and opening application-data records and ratcheting keys on a KeyUpdate.
//!
//! rustls runs every handshake; [`super::transport`] then takes a TLS 1.3 connection's
//! keys over and protects its records here, so that an idle client holds its keys and
//! nothing else (rustls keeps a 4 KiB receive buffer and its record queues for the
//! connection's whole life). The AEADs are ring's, the same code rustls uses.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use zeroize::Zeroize;

/// Largest plaintext in one record (RFC 8446 §5.1).
pub(crate) const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest ciphertext a peer may send in one record (RFC 8446 §5.2).
pub(crate) const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
pub(crate) const HEADER_LEN: usize = 5;
/// The three TLS 1.3 AEADs all have 16-byte tags.
const TAG_LEN: usize = 16;

pub(crate) const CONTENT_ALERT: u8 = 21;
pub(crate) const CONTENT_HANDSHAKE: u8 = 22;
pub(crate) const CONTENT_APPLICATION_DATA: u8 = 23;
const HANDSHAKE_KEY_UPDATE: u8 = 24;

/// The cipher suites TLS 1.3 defines and rustls offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suite {
    Aes128GcmSha256,
    Aes256GcmSha384,
    Chacha20Poly1305Sha256,
}

impl Suite {
    pub(crate) fn of(suite: rustls::CipherSuite) -> Option<Suite> {
        match suite {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => Some(Suite::Aes128GcmSha256),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => Some(Suite::Aes256GcmSha384),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => {
                Some(Suite::Chacha20Poly1305Sha256)
            }
            _ => None,
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Suite::Aes128GcmSha256 => &aead::AES_128_GCM,
            Suite::Aes256GcmSha384 => &aead::AES_256_GCM,
            Suite::Chacha20Poly1305Sha256 => &aead::CHACHA20_POLY1305,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Suite::Aes256GcmSha384 => hkdf::HKDF_SHA384,
            _ => hkdf::HKDF_SHA256,
        }
    }

    /// Records one AES-GCM key may seal before it must be replaced: the figure rustls
    /// uses (RFC 8446 §5.5 and the AEAD limits draft allow about 2^24.5). ChaCha20-Poly1305
    /// has no practical limit.
    fn records_per_key(self) -> u64 {
        match self {
            Suite::Chacha20Poly1305Sha256 => u64::MAX,
            _ => 1 << 24,
        }
    }
}

/// A traffic secret (at most a SHA-384 output), wiped when dropped.
pub(crate) struct Secret {
    bytes: [u8; 48],
    len: usize,
}

impl Secret {
    pub(crate) fn new(bytes: &[u8]) -> Option<Secret> {
        let mut secret = Secret {
            bytes: [0; 48],
            len: bytes.len(),
        };
        secret.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(secret)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// Why a record could not be accepted; each is the alert RFC 8446 §6 names for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordError {
    BadRecordMac,
    RecordOverflow,
    UnexpectedMessage,
    DecodeError,
    IllegalParameter,
    /// A key's sequence numbers ran out (2^64 records), or key derivation failed.
    InternalError,
    /// The peer sent this fatal alert.
    Alerted(u8),
}

impl RecordError {
    /// The alert to send for it; none for an alert the peer sent.
    pub(crate) fn alert(self) -> Option<u8> {
        match self {
            RecordError::UnexpectedMessage => Some(10),
            RecordError::BadRecordMac => Some(20),
            RecordError::RecordOverflow => Some(22),
            RecordError::IllegalParameter => Some(47),
            RecordError::DecodeError => Some(50),
            RecordError::InternalError => Some(80),
            RecordError::Alerted(_) => None,
        }
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordError::BadRecordMac => "TLS record failed authentication",
            RecordError::RecordOverflow => "TLS record too large",
            RecordError::UnexpectedMessage => "unexpected TLS record or message",
            RecordError::DecodeError => "malformed TLS record",
            RecordError::IllegalParameter => "illegal TLS KeyUpdate",
            RecordError::InternalError => "TLS record keys exhausted",
            RecordError::Alerted(description) => {
                return write!(f, "the client sent TLS alert {description}")
            }
        })
    }
}

impl std::error::Error for RecordError {}

/// One direction's keys: the traffic secret (kept for KeyUpdate), the AEAD key and IV
/// derived from it, and the next record's sequence number.
pub(crate) struct Direction {
    suite: Suite,
    secret: Secret,
    key: LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl Direction {
    pub(crate) fn new(suite: Suite, secret: Secret) -> Result<Direction, RecordError> {
        let (key, iv) = traffic_key_and_iv(suite, &secret)?;
        Ok(Direction {
            suite,
            secret,
            key,
            iv,
            seq: 0,
        })
    }

    /// The keys rustls reported for one direction, used as they are, with `secret`, the
    /// traffic secret they were derived from ([`secret_derives_iv`]), kept for KeyUpdate;
    /// `seq` is the next record's sequence number. Deriving the keys again from the secret
    /// would cost two more HKDF expansions per direction for keys already at hand.
    pub(crate) fn from_keys(
        suite: Suite,
        secret: Secret,
        key: &[u8],
        iv: &[u8],
        seq: u64,
    ) -> Result<Direction, RecordError> {
        let unbound = UnboundKey::new(suite.aead(), key).map_err(|_| RecordError::InternalError)?;
        let iv = <[u8; aead::NONCE_LEN]>::try_from(iv).map_err(|_| RecordError::InternalError)?;
        Ok(Direction {
            suite,
            secret,
            key: LessSafeKey::new(unbound),
            iv,
            seq,
        })
    }

    /// The next generation of keys (RFC 8446 §7.2), sequence numbers from 0.
    pub(crate) fn update(&mut self) -> Result<(), RecordError> {
        let secret = next_secret(self.suite, &self.secret)?;
        let (key, iv) = traffic_key_and_iv(self.suite, &secret)?;
        *self = Direction {
            suite: self.suite,
            secret,
            key,
            iv,
            seq: 0,
        };
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn set_sequence(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Whether this key has sealed as many records as it safely may.
    pub(crate) fn worn_out(&self) -> bool {
        self.seq >= self.suite.records_per_key()
    }

    fn next_nonce(&mut self) -> Result<Nonce, RecordError> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(RecordError::InternalError)?;
        let mut nonce = self.iv;
        for (byte, seq_byte) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *byte ^= seq_byte;
        }
        Ok(Nonce::assume_unique_for_key(nonce))
    }

    /// Appends one record carrying `plaintext` (at most [`MAX_PLAINTEXT`] bytes) of
    /// `content_type` to `out`.
    pub(crate) fn seal(
        &mut self,
        content_type: u8,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(RecordError::RecordOverflow);
        }
        let length = plaintext.len() + 1 + TAG_LEN;
        let header = [
            CONTENT_APPLICATION_DATA,
            0x03,
            0x03,
            (length >> 8) as u8,
            length as u8,
        ];
        let nonce = self.next_nonce()?;
        let start = out.len();
        out.reserve(HEADER_LEN + length);
        out.extend_from_slice(&header);
        out.extend_from_slice(plaintext);
        out.push(content_type);
        let body = &mut out[start + HEADER_LEN..];
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), body)
            .map_err(|_| RecordError::InternalError)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens one whole record (header included, as [`record_len`] measured it) in place:
    /// its content type and plaintext, padding removed.
    pub(crate) fn open<'a>(&mut self, record: &'a mut [u8]) -> Result<(u8, &'a [u8]), RecordError> {
        let (header, body) = record.split_at_mut(HEADER_LEN);
        let header: [u8; HEADER_LEN] = (&*header)
            .try_into()
            .map_err(|_| RecordError::DecodeError)?;
        let nonce = self.next_nonce()?;
        let inner = self
            .key
            .open_in_place(nonce, Aad::from(header), body)
            .map_err(|_| RecordError::BadRecordMac)?;
        // TLSInnerPlaintext: content, its type, then zero padding (RFC 8446 §5.4), at
        // most 2^14 + 1 bytes with the padding.
        if inner.len() > MAX_PLAINTEXT + 1 {
            return Err(RecordError::RecordOverflow);
        }
        let Some(type_at) = inner.iter().rposition(|&byte| byte != 0) else {
            return Err(RecordError::UnexpectedMessage);
        };
        Ok((inner[type_at], &inner[..type_at]))
    }
}

/// The length of the record at the start of `bytes` if all of it is there. A TLS 1.3
/// peer sends nothing but protected records after the handshake.
pub(crate) fn record_len(bytes: &[u8]) -> Result<Option<usize>, RecordError> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[0] != CONTENT_APPLICATION_DATA {
        return Err(RecordError::UnexpectedMessage);
    }
    if header[1] != 0x03 {
        return Err(RecordError::DecodeError);
    }
    let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if length > MAX_CIPHERTEXT {
        return Err(RecordError::RecordOverflow);
    }
    if length < 1 + TAG_LEN {
        return Err(RecordError::DecodeError);
    }
    Ok((bytes.len() >= HEADER_LEN + length).then_some(HEADER_LEN + length))
}

/// What a post-handshake handshake record from a client may hold: one KeyUpdate, alone,
/// since a message before a key change must end at a record boundary (RFC 8446 §5.1).
/// Returns whether the client asked us to update our keys too.
pub(crate) fn key_update_request(message: &[u8]) -> Result<bool, RecordError> {
    match message {
        [HANDSHAKE_KEY_UPDATE, 0, 0, 1, 0] => Ok(false),
        [HANDSHAKE_KEY_UPDATE, 0, 0, 1, 1] => Ok(true),
        [HANDSHAKE_KEY_UPDATE, 0, 0, 1, _] => Err(RecordError::IllegalParameter),
        _ => Err(RecordError::UnexpectedMessage),
    }
}

/// Our KeyUpdate, not asking the peer to update in turn.
pub(crate) const KEY_UPDATE_NOT_REQUESTED: [u8; 5] = [HANDSHAKE_KEY_UPDATE, 0, 0, 1, 0];

/// The traffic secret of the next generation (RFC 8446 §7.2).
pub(crate) fn next_secret(suite: Suite, secret: &Secret) -> Result<Secret, RecordError> {
    let mut next = [0u8; 48];
    let len = secret.len;
    expand_label(
        suite.hkdf(),
        secret.as_bytes(),
        b"traffic upd",
        next.get_mut(..len).ok_or(RecordError::InternalError)?,
    )?;
    let secret = Secret::new(&next[..len]).ok_or(RecordError::InternalError);
    next.zeroize();
    secret
}

/// Whether `secret` derives `iv`: which generation of keys a connection uses, told by one
/// HKDF expansion instead of two (the key and the IV are both expanded from the secret,
/// so an IV that matches names the secret). Both sides are our own secrets, so the
/// comparison need not be constant-time.
pub(crate) fn secret_derives_iv(suite: Suite, secret: &Secret, iv: &[u8]) -> bool {
    let mut own = [0u8; aead::NONCE_LEN];
    expand_label(suite.hkdf(), secret.as_bytes(), b"iv", &mut own).is_ok() && own[..] == *iv
}

fn traffic_key_and_iv(
    suite: Suite,
    secret: &Secret,
) -> Result<(LessSafeKey, [u8; aead::NONCE_LEN]), RecordError> {
    let algorithm = suite.aead();
    let mut key = [0u8; 32];
    let key_len = algorithm.key_len();
    expand_label(suite.hkdf(), secret.as_bytes(), b"key", &mut key[..key_len])?;
    let unbound = UnboundKey::new(algorithm, &key[..key_len]);
    key.zeroize();
    let key = LessSafeKey::new(unbound.map_err(|_| RecordError::InternalError)?);
    let mut iv = [0u8; aead::NONCE_LEN];
    expand_label(suite.hkdf(), secret.as_bytes(), b"iv", &mut iv)?;
    Ok((key, iv))
}

/// HKDF-Expand-Label with an empty context (RFC 8446 §7.1).
fn expand_label(
    algorithm: hkdf::Algorithm,
    secret: &[u8],
    label: &[u8],
    out: &mut [u8],
) -> Result<(), RecordError> {
    struct Length(usize);
    impl hkdf::KeyType for Length {
        fn len(&self) -> usize {
            self.0
        }
    }
    const PREFIX: &[u8] = b"tls13 ";
    let length = u16::try_from(out.len())
        .map_err(|_| RecordError::InternalError)?
        .to_be_bytes();
    let label_len =
        [u8::try_from(PREFIX.len() + label.len()).map_err(|_| RecordError::InternalError)?];
    let info: [&[u8]; 5] = [&length, &label_len, PREFIX, label, &[0]];
    hkdf::Prk::new_less_safe(algorithm, secret)
        .expand(&info, Length(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| RecordError::InternalError)
}

#[cfg(test)]
mod tests;
