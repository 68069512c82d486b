//! Salts and keys of [`super::ScramCredentials`] as stored: base64 text.
//!
//! They were stored as JSON arrays of numbers, and reading the 136 numbers of an
//! account's credentials was about 30 k instructions of every login (1.7 % of one, under
//! callgrind). Base64 is read in a few hundred. Records written before are still read:
//! an array of numbers is taken as well.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&BASE64.encode(bytes))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_any(StoredBytes)
}

struct StoredBytes;

impl<'de> Visitor<'de> for StoredBytes {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("base64 text, or an array of bytes (as stored before)")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
        BASE64
            .decode(text)
            .map_err(|err| E::custom(format_args!("invalid base64: {err}")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // (The hint comes from the data: bounded, as a salt or key is short.)
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Secret {
        #[serde(with = "super")]
        key: Vec<u8>,
    }

    #[test]
    fn bytes_are_written_as_base64_and_read_in_either_form() {
        let secret = Secret {
            key: vec![0, 1, 254, 255, 42],
        };
        let written = serde_json::to_string(&secret).unwrap_or_default();
        assert_eq!(written, r#"{"key":"AAH+/yo="}"#);
        let read: Result<Secret, _> = serde_json::from_str(&written);
        assert_eq!(
            read.ok(),
            Some(Secret {
                key: vec![0, 1, 254, 255, 42]
            })
        );
        // As records were written before.
        let old: Result<Secret, _> = serde_json::from_str(r#"{"key":[0,1,254,255,42]}"#);
        assert_eq!(
            old.ok(),
            Some(Secret {
                key: vec![0, 1, 254, 255, 42]
            })
        );
        let empty: Result<Secret, _> = serde_json::from_str(r#"{"key":""}"#);
        assert_eq!(empty.ok(), Some(Secret { key: Vec::new() }));
    }

    #[test]
    fn damaged_values_are_errors_that_say_so() {
        for (json, says) in [
            (r#"{"key":"not base64!"}"#, "invalid base64"),
            (r#"{"key":[0,256]}"#, "256"),
            (r#"{"key":7}"#, "base64 text, or an array of bytes"),
        ] {
            let read: Result<Secret, _> = serde_json::from_str(json);
            let err = read.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(says), "{json}: {err}");
        }
    }
}
