//! Which cipher suite a client gets.
//!
//! AES-128-GCM with SHA-256 when the client can run AES fast: it is TLS 1.3's mandatory
//! suite (RFC 8446 §9.1), as strong as the 128-bit-security key exchanges it is used
//! with, and its handshake hashes are SHA-256, which CPUs compute in hardware. Most
//! clients list AES-256-GCM-SHA384 first (OpenSSL's, GnuTLS's and rustls's defaults), and
//! ring computes SHA-384 in software on every CPU that is not Intel's: on this project's
//! benchmark machine (AMD EPYC) the SHA-384 of the handshake and its key schedule was 4 %
//! of a login's CPU.
//!
//! A client that lists ChaCha20-Poly1305 first says it has no AES hardware (BoringSSL
//! and Go clients order by that); software AES is slow and, in many implementations,
//! leaks timing. Such a client gets its own order. This is what Go's TLS server does.

use std::sync::Arc;

use rustls::server::{ClientHello, ServerConfig};
use rustls::{CipherSuite, SupportedCipherSuite};

/// One listener's server configs, the same but for the cipher suite order.
#[derive(Clone)]
pub(super) struct SuiteConfigs {
    /// The server's order ([`server_rank`]), whatever the client's.
    aes_first: Arc<ServerConfig>,
    /// The client's order.
    client_order: Arc<ServerConfig>,
}

impl SuiteConfigs {
    /// `build` makes a listener's config from a crypto provider.
    pub(super) fn new(
        provider: &rustls::crypto::CryptoProvider,
        build: impl Fn(Arc<rustls::crypto::CryptoProvider>) -> anyhow::Result<ServerConfig>,
    ) -> anyhow::Result<SuiteConfigs> {
        let mut aes_first_provider = provider.clone();
        aes_first_provider.cipher_suites.sort_by_key(server_rank);
        let mut aes_first = build(Arc::new(aes_first_provider))?;
        aes_first.ignore_client_order = true;
        let client_order = build(Arc::new(provider.clone()))?;
        Ok(SuiteConfigs {
            aes_first: Arc::new(aes_first),
            client_order: Arc::new(client_order),
        })
    }

    pub(super) fn for_client(&self, hello: &ClientHello<'_>) -> Arc<ServerConfig> {
        let supported = &self.client_order.crypto_provider().cipher_suites;
        if client_prefers_chacha(hello.cipher_suites(), supported) {
            self.client_order.clone()
        } else {
            self.aes_first.clone()
        }
    }

    /// The config most clients get.
    #[cfg(test)]
    pub(super) fn aes_first(&self) -> &Arc<ServerConfig> {
        &self.aes_first
    }
}

/// Position of a suite in the server's order: AES-128-GCM, then AES-256-GCM, then
/// ChaCha20-Poly1305, within each protocol version.
fn server_rank(suite: &SupportedCipherSuite) -> u8 {
    let version = match suite {
        SupportedCipherSuite::Tls13(_) => 0,
        SupportedCipherSuite::Tls12(_) => 10,
    };
    let cipher = match suite.suite() {
        CipherSuite::TLS13_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        CipherSuite::TLS13_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    };
    version + cipher
}

/// Whether the first suite the client offers that `supported` also has is a
/// ChaCha20-Poly1305 one (GREASE values and signalling suites are skipped that way).
fn client_prefers_chacha(offered: &[CipherSuite], supported: &[SupportedCipherSuite]) -> bool {
    offered
        .iter()
        .find(|offer| supported.iter().any(|s| s.suite() == **offer))
        .is_some_and(|first| {
            matches!(
                first,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                    | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_suites() -> Vec<SupportedCipherSuite> {
        rustls::crypto::ring::default_provider().cipher_suites
    }

    #[test]
    fn the_server_order_puts_aes_128_first_in_each_version() {
        let mut suites = ring_suites();
        suites.sort_by_key(server_rank);
        let names: Vec<CipherSuite> = suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            &names[..3],
            &[
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            ]
        );
        assert_eq!(
            names[3],
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            "{names:?}"
        );
    }

    #[test]
    fn chacha_first_means_chacha_once_unknown_suites_are_skipped() {
        let supported = ring_suites();
        let grease = CipherSuite::Unknown(0x0a0a);
        assert!(client_prefers_chacha(
            &[
                grease,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS13_AES_128_GCM_SHA256,
            ],
            &supported
        ));
        assert!(!client_prefers_chacha(
            &[
                grease,
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            ],
            &supported
        ));
        assert!(!client_prefers_chacha(&[], &supported));
    }
}
