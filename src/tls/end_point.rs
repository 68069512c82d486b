//! RFC 5929 `tls-server-end-point` channel binding.
//!
//! The binding is a hash of the server's leaf certificate, where the hash is
//! the one the certificate's own signature uses (MD5 and SHA-1 upgraded to
//! SHA-256). Only the outer `signatureAlgorithm` of the certificate is
//! needed, so a tiny DER walker is enough and we avoid an X.509 dependency.

use sha2::{Digest, Sha256, Sha384, Sha512};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EndPointHash {
    Sha256,
    Sha384,
    Sha512,
}

// DER-encoded OID contents (without tag/length).
const ECDSA_WITH_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const ECDSA_WITH_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
const SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;
// RSASSA-PSS-params: hashAlgorithm [0] EXPLICIT AlgorithmIdentifier
const TAG_CONTEXT_0: u8 = 0xa0;

/// Hash of `cert_der` as defined by RFC 5929 section 4.1.
pub(super) fn end_point_hash(cert_der: &[u8]) -> Vec<u8> {
    match signature_hash(cert_der) {
        EndPointHash::Sha256 => Sha256::digest(cert_der).to_vec(),
        EndPointHash::Sha384 => Sha384::digest(cert_der).to_vec(),
        EndPointHash::Sha512 => Sha512::digest(cert_der).to_vec(),
    }
}

/// Everything not recognised as SHA-384/512 maps to SHA-256: that covers the
/// SHA-256 algorithms, the MD5/SHA-1 upgrade rule, and algorithms RFC 5929
/// never defined (e.g. Ed25519), where SHA-256 is what other servers use.
pub(super) fn signature_hash(cert_der: &[u8]) -> EndPointHash {
    let Some((oid, params)) = signature_algorithm(cert_der) else {
        return EndPointHash::Sha256;
    };
    match oid {
        ECDSA_WITH_SHA384 | SHA384_WITH_RSA => EndPointHash::Sha384,
        ECDSA_WITH_SHA512 | SHA512_WITH_RSA => EndPointHash::Sha512,
        RSASSA_PSS => pss_hash(params),
        _ => EndPointHash::Sha256,
    }
}

/// Returns the OID and the remaining parameter bytes of the certificate's
/// outer `signatureAlgorithm`.
fn signature_algorithm(cert_der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (certificate, _) = read_tlv(cert_der, TAG_SEQUENCE)?;
    let (_tbs, rest) = read_any_tlv(certificate)?;
    let (alg_id, _) = read_tlv(rest, TAG_SEQUENCE)?;
    read_tlv(alg_id, TAG_OID)
}

fn pss_hash(params: &[u8]) -> EndPointHash {
    let hash_oid = read_tlv(params, TAG_SEQUENCE)
        .and_then(|(pss_params, _)| read_tlv(pss_params, TAG_CONTEXT_0))
        .and_then(|(explicit, _)| read_tlv(explicit, TAG_SEQUENCE))
        .and_then(|(alg_id, _)| read_tlv(alg_id, TAG_OID))
        .map(|(oid, _)| oid);
    match hash_oid {
        Some(SHA384) => EndPointHash::Sha384,
        Some(SHA512) => EndPointHash::Sha512,
        // Absent hashAlgorithm means SHA-1, which is upgraded to SHA-256.
        _ => EndPointHash::Sha256,
    }
}

fn read_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    read_any_tlv(input)
}

/// Splits one DER element off `input`: (contents, rest).
fn read_any_tlv(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&_tag, input) = input.split_first()?;
    let (&first, input) = input.split_first()?;
    let (len, input) = if first < 0x80 {
        (usize::from(first), input)
    } else {
        let n = usize::from(first & 0x7f);
        // Certificates never need more than 4 length bytes; refusing more
        // also keeps the shift below from overflowing.
        if n == 0 || n > 4 || input.len() < n {
            return None;
        }
        let (len_bytes, input) = input.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, input)
    };
    if input.len() < len {
        return None;
    }
    Some(input.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if contents.len() < 0x80 {
            out.push(contents.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(contents.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(contents);
        out
    }

    /// A structurally valid (but unsigned) certificate shell with the given
    /// signatureAlgorithm contents.
    fn fake_cert(alg_contents: &[u8]) -> Vec<u8> {
        let tbs = tlv(TAG_SEQUENCE, &[0u8; 200]);
        let alg = tlv(TAG_SEQUENCE, alg_contents);
        let sig = tlv(0x03, &[0, 1, 2, 3]);
        tlv(TAG_SEQUENCE, &[tbs, alg, sig].concat())
    }

    fn oid(bytes: &[u8]) -> Vec<u8> {
        tlv(TAG_OID, bytes)
    }

    #[test]
    fn picks_hash_from_signature_algorithm() {
        let ecdsa_sha256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let sha1_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
        let null = [0x05, 0x00];
        let cases: &[(Vec<u8>, EndPointHash)] = &[
            (oid(&ecdsa_sha256), EndPointHash::Sha256),
            (oid(ECDSA_WITH_SHA384), EndPointHash::Sha384),
            (oid(ECDSA_WITH_SHA512), EndPointHash::Sha512),
            (
                [oid(SHA384_WITH_RSA), null.to_vec()].concat(),
                EndPointHash::Sha384,
            ),
            (
                [oid(SHA512_WITH_RSA), null.to_vec()].concat(),
                EndPointHash::Sha512,
            ),
            (
                [oid(&sha1_rsa), null.to_vec()].concat(),
                EndPointHash::Sha256,
            ),
        ];
        for (alg, want) in cases {
            assert_eq!(signature_hash(&fake_cert(alg)), *want, "alg {alg:02x?}");
        }
    }

    #[test]
    fn pss_uses_hash_from_parameters() {
        let pss_with = |hash: &[u8]| {
            let hash_alg = tlv(TAG_SEQUENCE, &oid(hash));
            let params = tlv(TAG_SEQUENCE, &tlv(TAG_CONTEXT_0, &hash_alg));
            fake_cert(&[oid(RSASSA_PSS), params].concat())
        };
        assert_eq!(signature_hash(&pss_with(SHA384)), EndPointHash::Sha384);
        assert_eq!(signature_hash(&pss_with(SHA512)), EndPointHash::Sha512);
        let default_params = fake_cert(&[oid(RSASSA_PSS), tlv(TAG_SEQUENCE, &[])].concat());
        assert_eq!(signature_hash(&default_params), EndPointHash::Sha256);
    }

    #[test]
    fn garbage_falls_back_to_sha256() {
        for der in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            b"hello",
        ] {
            assert_eq!(signature_hash(der), EndPointHash::Sha256);
        }
        let der = fake_cert(&oid(ECDSA_WITH_SHA384));
        assert_eq!(end_point_hash(&der), Sha384::digest(&der).to_vec());
    }
}
