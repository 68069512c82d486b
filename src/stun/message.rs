//! The STUN message codec (RFC 8489 §5, §14, §15; TURN attributes of RFC 8656 §18).
//!
//! A [`Message`] holds the method, class, transaction ID and the attributes in wire
//! order, without MESSAGE-INTEGRITY and FINGERPRINT: [`Message::encode`] appends those,
//! and [`decode`] keeps their positions in the [`Decoded`] message so that they can be
//! checked against the bytes received. Decoding never panics: every length read from
//! the network is bounds-checked.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

/// The fixed value in bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the message header.
pub const HEADER_LEN: usize = 20;
/// XORed into the CRC-32 of a FINGERPRINT attribute ("STUN").
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Size of an encoded MESSAGE-INTEGRITY attribute (header and HMAC-SHA1).
const INTEGRITY_ATTR_LEN: usize = 4 + 20;
/// Size of an encoded FINGERPRINT attribute.
const FINGERPRINT_ATTR_LEN: usize = 4 + 4;

/// Method numbers (RFC 8489 §18.2, RFC 8656 §17).
pub mod method {
    pub const BINDING: u16 = 0x001;
    pub const ALLOCATE: u16 = 0x003;
    pub const REFRESH: u16 = 0x004;
}

/// Attribute types (RFC 8489 §18.3, RFC 8656 §18).
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const SOFTWARE: u16 = 0x8022;
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    pub const FINGERPRINT: u16 = 0x8028;
}

/// REQUESTED-TRANSPORT protocol number for UDP (RFC 8656 §18.7).
pub const PROTOCOL_UDP: u8 = 17;

pub type TransactionId = [u8; 12];

/// The class bits of the message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// Why bytes are not a (well-formed) STUN message, or a message cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// Fewer bytes than the header, or than the header's length field announces.
    Truncated,
    /// The two top bits are not zero or the magic cookie is wrong: not STUN (RFC 5389+).
    NotStun,
    /// The length field is not a multiple of 4 or disagrees with the bytes given.
    BadLength,
    /// An attribute runs past the end of the message.
    AttributeOverrun,
    /// MESSAGE-INTEGRITY or FINGERPRINT with a value of the wrong size.
    BadAttribute(u16),
    /// Encoding: an attribute or the whole message exceeds 65535 bytes.
    TooLong,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Truncated => write!(f, "truncated STUN message"),
            CodecError::NotStun => write!(f, "not a STUN message"),
            CodecError::BadLength => write!(f, "bad STUN message length"),
            CodecError::AttributeOverrun => write!(f, "STUN attribute runs past the message"),
            CodecError::BadAttribute(kind) => write!(f, "malformed STUN attribute 0x{kind:04x}"),
            CodecError::TooLong => write!(f, "STUN message too long"),
        }
    }
}

impl std::error::Error for CodecError {}

/// The 14-bit message type: method bits M0..M11 interleaved with class bits C0, C1
/// (RFC 8489 §5, figure 3).
pub fn message_type(method: u16, class: Class) -> u16 {
    let c: u16 = match class {
        Class::Request => 0b00,
        Class::Indication => 0b01,
        Class::Success => 0b10,
        Class::Error => 0b11,
    };
    let m = method & 0x0FFF;
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

/// The inverse of [`message_type`].
pub fn split_type(message_type: u16) -> (u16, Class) {
    let t = message_type & 0x3FFF;
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = match ((t >> 4) & 1) | ((t >> 7) & 2) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (method, class)
}

/// One attribute: type and value (without padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub kind: u16,
    pub value: Vec<u8>,
}

/// A STUN message without its MESSAGE-INTEGRITY and FINGERPRINT attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub method: u16,
    pub class: Class,
    pub transaction_id: TransactionId,
    pub attributes: Vec<Attribute>,
}

impl Message {
    pub fn new(method: u16, class: Class, transaction_id: TransactionId) -> Self {
        Message {
            method,
            class,
            transaction_id,
            attributes: Vec::new(),
        }
    }

    /// A request with a fresh random transaction ID.
    pub fn request(method: u16) -> Self {
        Message::new(method, Class::Request, rand::random())
    }

    /// Appends an attribute.
    pub fn with(mut self, kind: u16, value: impl Into<Vec<u8>>) -> Self {
        self.push(kind, value);
        self
    }

    pub fn push(&mut self, kind: u16, value: impl Into<Vec<u8>>) {
        self.attributes.push(Attribute {
            kind,
            value: value.into(),
        });
    }

    /// The value of the first attribute of this type.
    pub fn get(&self, kind: u16) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.value.as_slice())
    }

    /// A text attribute (USERNAME, REALM, NONCE, SOFTWARE), decoded leniently.
    pub fn text(&self, kind: u16) -> Option<String> {
        self.get(kind)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// A 32-bit attribute such as LIFETIME.
    pub fn u32(&self, kind: u16) -> Option<u32> {
        let v = self.get(kind)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }

    /// An XOR-encoded address attribute (XOR-MAPPED-ADDRESS, XOR-RELAYED-ADDRESS, ...).
    pub fn xor_address(&self, kind: u16) -> Option<SocketAddr> {
        decode_xor_address(self.get(kind)?, &self.transaction_id)
    }

    /// ERROR-CODE as (code, reason phrase).
    pub fn error_code(&self) -> Option<(u16, String)> {
        decode_error_code(self.get(attr::ERROR_CODE)?)
    }

    /// The wire form; with `integrity_key`, a MESSAGE-INTEGRITY (HMAC-SHA1) follows the
    /// attributes, and with `fingerprint` a FINGERPRINT ends the message.
    pub fn encode(
        &self,
        integrity_key: Option<&[u8]>,
        fingerprint: bool,
    ) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&message_type(self.method, self.class).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(&self.transaction_id);
        for attribute in &self.attributes {
            let len = u16::try_from(attribute.value.len()).map_err(|_| CodecError::TooLong)?;
            out.extend_from_slice(&attribute.kind.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&attribute.value);
            out.resize(out.len() + padding(attribute.value.len()), 0);
        }
        if let Some(key) = integrity_key {
            let len = out.len() - HEADER_LEN + INTEGRITY_ATTR_LEN;
            set_length(&mut out, len)?;
            let mac = hmac_sha1(key, &out);
            out.extend_from_slice(&attr::MESSAGE_INTEGRITY.to_be_bytes());
            out.extend_from_slice(&20u16.to_be_bytes());
            out.extend_from_slice(&mac);
        }
        if fingerprint {
            let len = out.len() - HEADER_LEN + FINGERPRINT_ATTR_LEN;
            set_length(&mut out, len)?;
            let crc = crc32(&out) ^ FINGERPRINT_XOR;
            out.extend_from_slice(&attr::FINGERPRINT.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&crc.to_be_bytes());
        }
        let len = out.len() - HEADER_LEN;
        set_length(&mut out, len)?;
        Ok(out)
    }
}

/// A message as received, with what is needed to check its MESSAGE-INTEGRITY and
/// FINGERPRINT against the bytes on the wire.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub message: Message,
    raw: Vec<u8>,
    integrity_at: Option<usize>,
    fingerprint_at: Option<usize>,
}

impl Decoded {
    pub fn has_integrity(&self) -> bool {
        self.integrity_at.is_some()
    }

    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint_at.is_some()
    }

    /// True when MESSAGE-INTEGRITY is present and is the HMAC-SHA1 under `key` of the
    /// message up to it, with the length field covering it (RFC 8489 §14.5).
    pub fn check_integrity(&self, key: &[u8]) -> bool {
        let Some(at) = self.integrity_at else {
            return false;
        };
        let (Some(covered), Some(mac)) = (self.raw.get(..at), self.raw.get(at + 4..at + 24)) else {
            return false;
        };
        let mut input = covered.to_vec();
        if set_length(&mut input, at - HEADER_LEN + INTEGRITY_ATTR_LEN).is_err() {
            return false;
        }
        let Ok(mut hmac) = Hmac::<sha1::Sha1>::new_from_slice(key) else {
            return false;
        };
        hmac.update(&input);
        hmac.verify_slice(mac).is_ok()
    }

    /// True when FINGERPRINT is absent or correct (RFC 8489 §14.7).
    pub fn fingerprint_ok(&self) -> bool {
        let Some(at) = self.fingerprint_at else {
            return true;
        };
        let (Some(covered), Some(value)) = (self.raw.get(..at), self.raw.get(at + 4..at + 8))
        else {
            return false;
        };
        let mut input = covered.to_vec();
        if set_length(&mut input, at - HEADER_LEN + FINGERPRINT_ATTR_LEN).is_err() {
            return false;
        }
        let expected = crc32(&input) ^ FINGERPRINT_XOR;
        value == expected.to_be_bytes()
    }
}

/// The total size of the message whose header starts `buf` (for stream framing), or
/// an error if the header is not a STUN header. `None` until 20 bytes are there.
pub fn frame_len(buf: &[u8]) -> Option<Result<usize, CodecError>> {
    let header = buf.get(..HEADER_LEN)?;
    Some(check_header(header).map(|len| HEADER_LEN + len))
}

/// Checks the fixed parts of a header; returns the length field.
fn check_header(header: &[u8]) -> Result<usize, CodecError> {
    if header.len() < HEADER_LEN {
        return Err(CodecError::Truncated);
    }
    if header[0] & 0xC0 != 0 || header[4..8] != MAGIC_COOKIE.to_be_bytes() {
        return Err(CodecError::NotStun);
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if len % 4 != 0 {
        return Err(CodecError::BadLength);
    }
    Ok(len)
}

/// Decodes exactly one message (a UDP datagram, or one frame of a stream). Attributes
/// after MESSAGE-INTEGRITY other than FINGERPRINT are ignored, as RFC 8489 §14.5 says;
/// nothing after FINGERPRINT is read.
pub fn decode(buf: &[u8]) -> Result<Decoded, CodecError> {
    let len = check_header(buf)?;
    match buf.len().cmp(&(HEADER_LEN + len)) {
        std::cmp::Ordering::Less => return Err(CodecError::Truncated),
        std::cmp::Ordering::Greater => return Err(CodecError::BadLength),
        std::cmp::Ordering::Equal => {}
    }
    let (method, class) = split_type(u16::from_be_bytes([buf[0], buf[1]]));
    let mut transaction_id = [0u8; 12];
    transaction_id.copy_from_slice(&buf[8..20]);
    let mut message = Message::new(method, class, transaction_id);
    let mut integrity_at = None;
    let mut fingerprint_at = None;
    let mut pos = HEADER_LEN;
    while pos < buf.len() {
        let header = buf.get(pos..pos + 4).ok_or(CodecError::AttributeOverrun)?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let value_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = buf
            .get(pos + 4..pos + 4 + value_len)
            .ok_or(CodecError::AttributeOverrun)?;
        let next = pos + 4 + value_len + padding(value_len);
        if next > buf.len() {
            return Err(CodecError::AttributeOverrun);
        }
        match kind {
            attr::FINGERPRINT => {
                if value_len != 4 {
                    return Err(CodecError::BadAttribute(kind));
                }
                fingerprint_at = Some(pos);
                break;
            }
            attr::MESSAGE_INTEGRITY if integrity_at.is_none() => {
                if value_len != 20 {
                    return Err(CodecError::BadAttribute(kind));
                }
                integrity_at = Some(pos);
            }
            _ if integrity_at.is_none() => message.push(kind, value),
            _ => {}
        }
        pos = next;
    }
    Ok(Decoded {
        message,
        raw: buf.to_vec(),
        integrity_at,
        fingerprint_at,
    })
}

/// The long-term credential key: MD5(username ":" realm ":" password) (RFC 8489
/// §9.2.2). The password is used as given (no SASLprep/OpaqueString processing, which
/// changes nothing for ASCII passwords such as TURN REST ones).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(username.as_bytes());
    md5.update(b":");
    md5.update(realm.as_bytes());
    md5.update(b":");
    md5.update(password.as_bytes());
    md5.finalize().into()
}

/// Decodes an XOR-MAPPED-ADDRESS style value (RFC 8489 §14.2).
pub fn decode_xor_address(value: &[u8], transaction_id: &TransactionId) -> Option<SocketAddr> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
    match *value.get(1)? {
        0x01 => {
            let bytes: [u8; 4] = value.get(4..8)?.try_into().ok()?;
            let ip = u32::from_be_bytes(bytes) ^ MAGIC_COOKIE;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        0x02 => {
            let bytes = value.get(4..20)?;
            let mut ip = [0u8; 16];
            for (i, b) in ip.iter_mut().enumerate() {
                let mask = if i < 4 {
                    cookie[i]
                } else {
                    transaction_id[i - 4]
                };
                *b = bytes[i] ^ mask;
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Encodes an address as XOR-MAPPED-ADDRESS and friends.
pub fn encode_xor_address(addr: SocketAddr, transaction_id: &TransactionId) -> Vec<u8> {
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut out = Vec::with_capacity(20);
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[0, 0x01]);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[0, 0x02]);
            out.extend_from_slice(&port.to_be_bytes());
            for (i, b) in ip.octets().iter().enumerate() {
                let mask = if i < 4 {
                    cookie[i]
                } else {
                    transaction_id[i - 4]
                };
                out.push(b ^ mask);
            }
        }
    }
    out
}

/// Decodes a plain MAPPED-ADDRESS / ALTERNATE-SERVER value (RFC 8489 §14.1).
pub fn decode_plain_address(value: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]);
    match *value.get(1)? {
        0x01 => {
            let bytes: [u8; 4] = value.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(bytes)), port))
        }
        0x02 => {
            let bytes: [u8; 16] = value.get(4..20)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(bytes)), port))
        }
        _ => None,
    }
}

/// ERROR-CODE value -> (class * 100 + number, reason phrase) (RFC 8489 §14.8).
pub fn decode_error_code(value: &[u8]) -> Option<(u16, String)> {
    let class = u16::from(*value.get(2)? & 0x07);
    let number = u16::from(*value.get(3)?);
    let reason = String::from_utf8_lossy(value.get(4..)?).trim().to_string();
    Some((class * 100 + number, reason))
}

pub fn encode_error_code(code: u16, reason: &str) -> Vec<u8> {
    let mut out = vec![0, 0, ((code / 100) & 0x07) as u8, (code % 100) as u8];
    out.extend_from_slice(reason.as_bytes());
    out
}

/// The standard reason phrase of an error code, for servers that send none.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        405 => "Mobility Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        500 => "Server Error",
        508 => "Insufficient Capacity",
        _ => "",
    }
}

/// CRC-32 (ISO-HDLC, as used by FINGERPRINT), bit by bit: messages are small.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail here.
    let mut hmac = match Hmac::<sha1::Sha1>::new_from_slice(key) {
        Ok(hmac) => hmac,
        Err(_) => return [0; 20],
    };
    hmac.update(data);
    hmac.finalize().into_bytes().into()
}

fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn set_length(buf: &mut [u8], len: usize) -> Result<(), CodecError> {
    let len = u16::try_from(len).map_err(|_| CodecError::TooLong)?;
    if buf.len() < HEADER_LEN {
        return Err(CodecError::Truncated);
    }
    buf[2..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    // RFC 5769 test vectors, verbatim (padding bytes included: §2.1 pads with spaces).
    const RFC5769_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
    const RFC5769_TID: TransactionId = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// §2.1 Sample Request (short-term credentials).
    const SAMPLE_REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
        0x7a, 0x3b, 0xcf,
    ];

    /// §2.2 Sample IPv4 Response.
    const SAMPLE_IPV4_RESPONSE: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];

    /// §2.3 Sample IPv6 Response.
    const SAMPLE_IPV6_RESPONSE: [u8; 92] = [
        0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01,
        0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9,
        0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb,
        0x0b, 0x4c,
    ];

    /// §2.4 Sample Request with Long-Term Authentication.
    const SAMPLE_REQUEST_LONG_TERM: [u8; 116] = [
        0x00, 0x01, 0x00, 0x60, 0x21, 0x12, 0xa4, 0x42, 0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72,
        0xc0, 0x29, 0xda, 0x41, 0x2e, 0x00, 0x06, 0x00, 0x12, 0xe3, 0x83, 0x9e, 0xe3, 0x83, 0x88,
        0xe3, 0x83, 0xaa, 0xe3, 0x83, 0x83, 0xe3, 0x82, 0xaf, 0xe3, 0x82, 0xb9, 0x00, 0x00, 0x00,
        0x15, 0x00, 0x1c, 0x66, 0x2f, 0x2f, 0x34, 0x39, 0x39, 0x6b, 0x39, 0x35, 0x34, 0x64, 0x36,
        0x4f, 0x4c, 0x33, 0x34, 0x6f, 0x4c, 0x39, 0x46, 0x53, 0x54, 0x76, 0x79, 0x36, 0x34, 0x73,
        0x41, 0x00, 0x14, 0x00, 0x0b, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x6f, 0x72,
        0x67, 0x00, 0x00, 0x08, 0x00, 0x14, 0xf6, 0x70, 0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e, 0x02,
        0xb8, 0xe0, 0x71, 0x2e, 0x85, 0xc9, 0xa2, 0x8c, 0xa8, 0x96, 0x66,
    ];

    #[test]
    fn rfc5769_sample_request() {
        let decoded = decode(&SAMPLE_REQUEST).expect("decodes");
        let m = &decoded.message;
        assert_eq!((m.method, m.class), (method::BINDING, Class::Request));
        assert_eq!(m.transaction_id, RFC5769_TID);
        assert_eq!(m.text(attr::SOFTWARE).as_deref(), Some("STUN test client"));
        assert_eq!(m.text(attr::USERNAME).as_deref(), Some("evtj:h6vY"));
        assert_eq!(m.u32(0x0024), Some(0x6e00_01ff), "PRIORITY");
        assert_eq!(m.attributes.len(), 4, "MI and FINGERPRINT are not listed");
        assert!(decoded.check_integrity(RFC5769_PASSWORD.as_bytes()));
        assert!(!decoded.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"));
        assert!(decoded.has_fingerprint() && decoded.fingerprint_ok());
    }

    /// Re-encoding a §2.2/§2.3 response gives the vector's bytes except the SOFTWARE
    /// padding byte (a space in the RFC, zero from us), so MESSAGE-INTEGRITY and
    /// FINGERPRINT differ too and must verify on their own.
    fn assert_reencodes(decoded: &Decoded, vector: &[u8]) {
        let encoded = decoded
            .message
            .encode(Some(RFC5769_PASSWORD.as_bytes()), true)
            .expect("encodes");
        let padding_at = HEADER_LEN + 4 + 11;
        let integrity_at = vector.len() - INTEGRITY_ATTR_LEN - FINGERPRINT_ATTR_LEN;
        assert_eq!(encoded.len(), vector.len());
        assert_eq!(encoded[..padding_at], vector[..padding_at]);
        assert_eq!((vector[padding_at], encoded[padding_at]), (b' ', 0));
        assert_eq!(
            encoded[padding_at + 1..integrity_at + 4],
            vector[padding_at + 1..integrity_at + 4]
        );
        let again = decode(&encoded).expect("decodes");
        assert!(again.check_integrity(RFC5769_PASSWORD.as_bytes()));
        assert!(again.fingerprint_ok());
    }

    #[test]
    fn rfc5769_sample_ipv4_response() {
        let decoded = decode(&SAMPLE_IPV4_RESPONSE).expect("decodes");
        let m = &decoded.message;
        assert_eq!((m.method, m.class), (method::BINDING, Class::Success));
        assert_eq!(m.text(attr::SOFTWARE).as_deref(), Some("test vector"));
        assert_eq!(
            m.xor_address(attr::XOR_MAPPED_ADDRESS),
            Some("192.0.2.1:32853".parse().expect("addr"))
        );
        assert!(decoded.check_integrity(RFC5769_PASSWORD.as_bytes()));
        assert!(decoded.fingerprint_ok());
        assert_reencodes(&decoded, &SAMPLE_IPV4_RESPONSE);
    }

    #[test]
    fn rfc5769_sample_ipv6_response() {
        let decoded = decode(&SAMPLE_IPV6_RESPONSE).expect("decodes");
        assert_eq!(
            decoded.message.xor_address(attr::XOR_MAPPED_ADDRESS),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .expect("addr")
            )
        );
        assert!(decoded.check_integrity(RFC5769_PASSWORD.as_bytes()));
        assert!(decoded.fingerprint_ok());
        assert_reencodes(&decoded, &SAMPLE_IPV6_RESPONSE);
    }

    #[test]
    fn rfc5769_long_term_credentials() {
        let decoded = decode(&SAMPLE_REQUEST_LONG_TERM).expect("decodes");
        let m = &decoded.message;
        let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
        assert_eq!(m.text(attr::USERNAME).as_deref(), Some(username));
        assert_eq!(m.text(attr::REALM).as_deref(), Some("example.org"));
        assert_eq!(
            m.text(attr::NONCE).as_deref(),
            Some("f//499k954d6OL34oL9FSTvy64sA")
        );
        // "The<U+00AD>M<U+00AA>tr<U+2168>" after SASLprep.
        let key = long_term_key(username, "example.org", "TheMatrIX");
        assert!(decoded.check_integrity(&key));
        assert!(!decoded.check_integrity(&long_term_key(username, "example.org", "x")));
        assert!(!decoded.has_fingerprint());
        assert_eq!(
            m.encode(Some(&key), false).expect("encodes"),
            SAMPLE_REQUEST_LONG_TERM
        );
    }

    #[test]
    fn long_term_key_known_answers() {
        // Reference values: Python's hashlib.md5 of "user:realm:pass" and of the RFC 5769
        // §2.4 username, realm and SASLprep'd password.
        let hex = |bytes: [u8; 16]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(long_term_key("user", "realm", "pass")),
            "8493fbc53ba582fb4c044c456bdc40eb"
        );
        assert_eq!(
            hex(long_term_key(
                "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}",
                "example.org",
                "TheMatrIX"
            )),
            "e8ca7ad59d5eb0518e312911d2dab2a9"
        );
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn message_type_bits() {
        assert_eq!(message_type(method::BINDING, Class::Request), 0x0001);
        assert_eq!(message_type(method::BINDING, Class::Success), 0x0101);
        assert_eq!(message_type(method::BINDING, Class::Error), 0x0111);
        assert_eq!(message_type(method::ALLOCATE, Class::Request), 0x0003);
        assert_eq!(message_type(method::ALLOCATE, Class::Success), 0x0103);
        assert_eq!(message_type(method::ALLOCATE, Class::Error), 0x0113);
        assert_eq!(message_type(method::REFRESH, Class::Request), 0x0004);
        // TURN Send and Data indications (RFC 8656 §17).
        assert_eq!(message_type(0x006, Class::Indication), 0x0016);
        assert_eq!(message_type(0x007, Class::Indication), 0x0017);
        for m in [0u16, 1, 3, 4, 0x0016, 0x0FFF, 0x0ABC] {
            for c in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                assert_eq!(split_type(message_type(m, c)), (m, c));
            }
        }
    }

    #[test]
    fn round_trip() {
        let tid: TransactionId = [7; 12];
        let message = Message::new(method::ALLOCATE, Class::Success, tid)
            .with(
                attr::XOR_RELAYED_ADDRESS,
                encode_xor_address("127.0.0.1:49160".parse().expect("addr"), &tid),
            )
            .with(
                attr::XOR_MAPPED_ADDRESS,
                encode_xor_address("[::1]:54321".parse().expect("addr"), &tid),
            )
            .with(attr::LIFETIME, 600u32.to_be_bytes())
            .with(attr::SOFTWARE, "odd length")
            .with(attr::ERROR_CODE, encode_error_code(438, "Stale Nonce"));
        for (key, fingerprint) in [
            (None, false),
            (Some(&b"k"[..]), false),
            (None, true),
            (Some(&b"k"[..]), true),
        ] {
            let bytes = message.encode(key, fingerprint).expect("encodes");
            assert_eq!(bytes.len() % 4, 0);
            let decoded = decode(&bytes).expect("decodes");
            assert_eq!(decoded.message, message);
            assert_eq!(decoded.has_integrity(), key.is_some());
            assert_eq!(decoded.has_fingerprint(), fingerprint);
            assert!(decoded.fingerprint_ok());
            if let Some(key) = key {
                assert!(decoded.check_integrity(key));
                assert!(!decoded.check_integrity(b"other"));
            }
            assert_eq!(frame_len(&bytes), Some(Ok(bytes.len())));
        }
        let m = decode(&message.encode(None, false).expect("encodes"))
            .expect("decodes")
            .message;
        assert_eq!(
            m.xor_address(attr::XOR_RELAYED_ADDRESS),
            Some("127.0.0.1:49160".parse().expect("addr"))
        );
        assert_eq!(
            m.xor_address(attr::XOR_MAPPED_ADDRESS),
            Some("[::1]:54321".parse().expect("addr"))
        );
        assert_eq!(m.u32(attr::LIFETIME), Some(600));
        assert_eq!(m.error_code(), Some((438, "Stale Nonce".to_string())));
    }

    #[test]
    fn tampering_is_detected() {
        let message =
            Message::new(method::BINDING, Class::Request, [1; 12]).with(attr::USERNAME, "u");
        let mut bytes = message.encode(Some(b"key"), true).expect("encodes");
        bytes[HEADER_LEN + 4] = b'v';
        let decoded = decode(&bytes).expect("still decodes");
        assert!(!decoded.check_integrity(b"key"));
        assert!(!decoded.fingerprint_ok());
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let message =
            Message::new(method::BINDING, Class::Success, [2; 12]).with(attr::SOFTWARE, "s");
        let mut bytes = message.encode(Some(b"key"), false).expect("encodes");
        // Append a REALM after MESSAGE-INTEGRITY and fix the length.
        bytes.extend_from_slice(&[0x00, 0x14, 0x00, 0x04, b'e', b'v', b'i', b'l']);
        let len = (bytes.len() - HEADER_LEN) as u16;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        let decoded = decode(&bytes).expect("decodes");
        assert_eq!(decoded.message.get(attr::REALM), None);
        assert!(decoded.check_integrity(b"key"));
    }

    #[test]
    fn bad_input_is_rejected_without_panic() {
        assert_eq!(decode(&[]).unwrap_err(), CodecError::Truncated);
        assert_eq!(
            decode(&SAMPLE_REQUEST[..19]).unwrap_err(),
            CodecError::Truncated
        );
        assert_eq!(
            decode(&SAMPLE_REQUEST[..100]).unwrap_err(),
            CodecError::Truncated
        );
        let mut long = SAMPLE_REQUEST.to_vec();
        long.extend_from_slice(&[0; 4]);
        assert_eq!(decode(&long).unwrap_err(), CodecError::BadLength);
        let mut not_stun = SAMPLE_REQUEST.to_vec();
        not_stun[4] = 0;
        assert_eq!(decode(&not_stun).unwrap_err(), CodecError::NotStun);
        let mut channel_data = SAMPLE_REQUEST.to_vec();
        channel_data[0] = 0x40;
        assert_eq!(decode(&channel_data).unwrap_err(), CodecError::NotStun);
        // An attribute whose length runs past the end.
        let mut overrun = SAMPLE_IPV4_RESPONSE.to_vec();
        overrun[HEADER_LEN + 3] = 0xFF;
        assert_eq!(decode(&overrun).unwrap_err(), CodecError::AttributeOverrun);
        // Short address and error values.
        assert_eq!(decode_xor_address(&[0, 1, 0], &[0; 12]), None);
        assert_eq!(
            decode_xor_address(&[0, 2, 0, 0, 1, 2, 3, 4], &[0; 12]),
            None
        );
        assert_eq!(
            decode_xor_address(&[0, 9, 0, 0, 1, 2, 3, 4], &[0; 12]),
            None
        );
        assert_eq!(decode_plain_address(&[0, 1, 0, 1]), None);
        assert_eq!(decode_error_code(&[0, 0, 4]), None);
        assert_eq!(frame_len(&SAMPLE_REQUEST[..10]), None);
        assert_eq!(frame_len(&not_stun), Some(Err(CodecError::NotStun)));

        // Every prefix and many random corruptions of the vectors: errors, never panics.
        let mut rng = rand::rngs::StdRng::seed_from_u64(5769);
        for vector in [
            &SAMPLE_REQUEST[..],
            &SAMPLE_IPV4_RESPONSE[..],
            &SAMPLE_IPV6_RESPONSE[..],
            &SAMPLE_REQUEST_LONG_TERM[..],
        ] {
            for end in 0..vector.len() {
                let _ = decode(&vector[..end]);
            }
            for _ in 0..2000 {
                let mut bytes = vector.to_vec();
                for _ in 0..rng.gen_range(1..6) {
                    let i = rng.gen_range(0..bytes.len());
                    bytes[i] = rng.gen();
                }
                if let Ok(decoded) = decode(&bytes) {
                    let m = &decoded.message;
                    let _ = decoded.check_integrity(b"k");
                    let _ = decoded.fingerprint_ok();
                    let _ = m.xor_address(attr::XOR_MAPPED_ADDRESS);
                    let _ = m.error_code();
                    let _ = m.u32(attr::LIFETIME);
                }
            }
        }
        for _ in 0..2000 {
            let len = rng.gen_range(0..200);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn oversized_attribute_is_an_encode_error() {
        let message = Message::new(method::BINDING, Class::Request, [0; 12])
            .with(attr::SOFTWARE, vec![b'a'; 70000]);
        assert_eq!(
            message.encode(None, false).unwrap_err(),
            CodecError::TooLong
        );
    }
}
