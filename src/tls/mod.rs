//! TLS for client connections: per-host certificates chosen by SNI, the
//! STARTTLS and direct-TLS (XEP-0368) acceptors, and channel-binding data for
//! SCRAM-*-PLUS.
//!
//! Every rustls config is built with an explicit ring provider so nothing
//! depends on a process-wide default provider being installed.

mod certs;
mod end_point;
mod record_layer;
mod secrets;
mod suite_choice;
mod transport;

pub use certs::{ensure_certificate, generate_self_signed, HostCert};
#[doc(hidden)]
pub use transport::fuzzing::client_records as fuzz_client_records;
pub use transport::TlsTransport;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls::{ProtocolVersion, ServerConnection};
use suite_choice::SuiteConfigs;

/// ALPN protocol identifier for client-to-server XMPP over direct TLS (XEP-0368).
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

/// RFC 9266 label for `tls-exporter` channel binding.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
const EXPORTER_LEN: usize = 32;

/// Everything the server needs for TLS. Built once at start (and again on
/// reload); cheap to clone.
#[derive(Clone)]
pub struct TlsSetup {
    resolver: Arc<SniResolver>,
    starttls: SuiteConfigs,
    direct: SuiteConfigs,
}

#[derive(Debug)]
struct HostEntry {
    host: String,
    key: Arc<CertifiedKey>,
    /// Precomputed so that channel binding costs nothing per login.
    end_point: Vec<u8>,
}

/// Picks the certificate by SNI. No SNI or an unknown name gets the first
/// host's certificate rather than a failed handshake, because many XMPP
/// clients connect by IP or omit SNI and still verify against the domain.
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<HostEntry>>,
    fallback: Arc<HostEntry>,
}

impl SniResolver {
    fn select(&self, sni: Option<&str>) -> &HostEntry {
        sni.and_then(|name| self.by_name.get(&normalize_host(name)))
            .unwrap_or(&self.fallback)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(client_hello.server_name()).key.clone())
    }
}

/// DNS names compare case-insensitively and an absolute name's trailing dot
/// is not part of SNI, so config and ClientHello names meet in this form.
fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl TlsSetup {
    /// Loads every host's certificate chain and key. Errors name the file and
    /// what was wrong with it; a key file readable by group or others only
    /// produces a warning.
    pub fn load(certs: &[HostCert]) -> anyhow::Result<TlsSetup> {
        let provider = rustls::crypto::ring::default_provider();

        let mut by_name = HashMap::new();
        let mut fallback = None;
        for hc in certs {
            let key = certs::load_host_cert(hc, &provider)
                .with_context(|| format!("loading TLS certificate for host {}", hc.host))?;
            let leaf = key.end_entity_cert().map_err(|e| {
                anyhow::anyhow!("{}: empty certificate chain: {e}", hc.cert_path.display())
            })?;
            let entry = Arc::new(HostEntry {
                host: hc.host.clone(),
                end_point: end_point::end_point_hash(leaf),
                key: Arc::new(key),
            });
            let name = normalize_host(&hc.host);
            if by_name.insert(name, entry.clone()).is_some() {
                bail!("TLS certificate for host {} configured twice", hc.host);
            }
            fallback.get_or_insert(entry);
        }
        let Some(fallback) = fallback else {
            bail!("no TLS certificates configured");
        };
        let resolver = Arc::new(SniResolver { by_name, fallback });

        // One ticket key for every listener and suite order: a ticket resumes whichever
        // config serves the returning client.
        let ticketer = rustls::crypto::ring::Ticketer::new()
            .context("cannot create the TLS session ticket key")?;
        // STARTTLS: the XMPP stream already identified the protocol, so no ALPN.
        let starttls = SuiteConfigs::new(&provider, |provider| {
            server_config(provider, &resolver, &ticketer, Vec::new())
        })?;
        // Direct TLS (XEP-0368) offers ALPN "xmpp-client"; rustls refuses a client whose
        // ALPN list does not include it, which stops cross-protocol attacks from e.g.
        // HTTPS clients. Clients sending no ALPN at all are accepted, as XEP-0368 allows.
        let direct = SuiteConfigs::new(&provider, |provider| {
            server_config(
                provider,
                &resolver,
                &ticketer,
                vec![ALPN_XMPP_CLIENT.to_vec()],
            )
        })?;
        Ok(TlsSetup {
            resolver,
            starttls,
            direct,
        })
    }

    /// Acceptor for STARTTLS upgrades with the config most clients get (tests hold
    /// rustls's own stream with it).
    #[cfg(test)]
    fn starttls_acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.starttls.aes_first().clone())
    }

    /// [`Self::starttls_acceptor`] for direct TLS.
    #[cfg(test)]
    fn direct_tls_acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.direct.aes_first().clone())
    }

    /// Runs a STARTTLS handshake over `io`.
    pub async fn accept_starttls<IO>(&self, io: IO) -> std::io::Result<TlsTransport<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        transport::accept(&self.starttls, io).await
    }

    /// Runs a direct TLS (XEP-0368) handshake over `io`.
    pub async fn accept_direct<IO>(&self, io: IO) -> std::io::Result<TlsTransport<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        transport::accept(&self.direct, io).await
    }

    /// RFC 5929 `tls-server-end-point` data for the certificate served to a
    /// connection that sent `sni`. Always `Some` once loaded; the `Option`
    /// leaves room for certificate-less setups.
    pub fn server_end_point(&self, sni: Option<&str>) -> Option<Vec<u8>> {
        Some(self.resolver.select(sni).end_point.clone())
    }
}

impl fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hosts: Vec<&str> = self
            .resolver
            .by_name
            .values()
            .map(|e| e.host.as_str())
            .collect();
        hosts.sort_unstable();
        f.debug_struct("TlsSetup")
            .field("hosts", &hosts)
            .field("default", &self.resolver.fallback.host)
            .finish()
    }
}

fn server_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    resolver: &Arc<SniResolver>,
    ticketer: &Arc<dyn rustls::server::ProducesTickets>,
    alpn: Vec<Vec<u8>>,
) -> anyhow::Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("crypto provider does not support TLS 1.2/1.3")?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = alpn;
    // One stateless ticket per handshake, so a client that reconnects (a phone changing
    // networks) can resume. The default, two tickets kept in a 256-entry cache, cost a
    // cache insertion and a record each and was useless past 256 clients.
    config.ticketer = ticketer.clone();
    config.send_tls13_tickets = 1;
    // After the handshake the connection's keys move to Tern's record layer
    // (transport.rs), which needs them and, for KeyUpdates, the secrets they come from.
    config.enable_secret_extraction = true;
    config.key_log = Arc::new(secrets::CaptureTrafficSecrets);
    Ok(config)
}

/// Channel-binding data for a completed server handshake:
/// `(tls-exporter, tls-server-end-point)`.
///
/// `tls-exporter` (RFC 9266) is only offered for TLS 1.3: under TLS 1.2 it is
/// unsafe without extended master secret, and SCRAM clients then fall back
/// to `tls-server-end-point`.
pub fn channel_binding<IO>(
    setup: &TlsSetup,
    conn: &tokio_rustls::server::TlsStream<IO>,
) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    channel_binding_for_connection(setup, conn.get_ref().1)
}

/// [`channel_binding`] for a connection just accepted (before its first read or write,
/// while rustls still holds it).
pub fn transport_channel_binding<IO>(
    setup: &TlsSetup,
    transport: &TlsTransport<IO>,
) -> (Option<Vec<u8>>, Option<Vec<u8>>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match transport.rustls_connection() {
        Some(conn) => channel_binding_for_connection(setup, conn),
        None => (None, None),
    }
}

/// Same as [`channel_binding`] for a bare rustls connection.
pub fn channel_binding_for_connection(
    setup: &TlsSetup,
    conn: &ServerConnection,
) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    if conn.is_handshaking() {
        return (None, None);
    }
    let exporter = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => {
            match conn.export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, Some(&[])) {
                Ok(value) => Some(value.to_vec()),
                Err(e) => {
                    tracing::warn!("tls-exporter unavailable: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    (exporter, setup.server_end_point(conn.server_name()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::certs::tests::{hosts, TempDir};
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
    use sha2::{Digest, Sha256};
    use std::io;
    use std::path::Path;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

    const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    const TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

    pub(crate) struct Fixture {
        _dir: TempDir,
        pub(crate) setup: TlsSetup,
        /// Leaf DER per host, in load order.
        leaves: Vec<(String, CertificateDer<'static>)>,
    }

    impl Fixture {
        /// One separately generated certificate per host.
        pub(crate) fn new(names: &[&str]) -> Self {
            let dir = TempDir::new();
            let mut host_certs = Vec::new();
            let mut leaves = Vec::new();
            for name in names {
                let cert_path = dir.0.join(format!("{name}.crt"));
                let key_path = dir.0.join(format!("{name}.key"));
                assert!(ensure_certificate(&cert_path, &key_path, &hosts(&[name])).unwrap());
                leaves.push((name.to_string(), read_leaf(&cert_path)));
                host_certs.push(HostCert {
                    host: name.to_string(),
                    cert_path,
                    key_path,
                });
            }
            let setup = TlsSetup::load(&host_certs).expect("load");
            Fixture {
                _dir: dir,
                setup,
                leaves,
            }
        }

        pub(crate) fn leaf(&self, host: &str) -> &CertificateDer<'static> {
            &self.leaves.iter().find(|(h, _)| h == host).unwrap().1
        }

        pub(crate) fn client(
            &self,
            versions: &[&'static SupportedProtocolVersion],
            alpn: &[&[u8]],
        ) -> ClientConfig {
            let mut roots = RootCertStore::empty();
            for (_, leaf) in &self.leaves {
                roots.add(leaf.clone()).unwrap();
            }
            let mut config = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            config
        }
    }

    fn read_leaf(path: &Path) -> CertificateDer<'static> {
        CertificateDer::pem_file_iter(path)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
    }

    type Pair = (
        io::Result<server::TlsStream<DuplexStream>>,
        io::Result<client::TlsStream<DuplexStream>>,
    );

    async fn handshake(acceptor: TlsAcceptor, config: ClientConfig, name: &str) -> Pair {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let connector = TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from(name.to_string()).unwrap();
        let both = async {
            tokio::join!(
                acceptor.accept(server_io),
                connector.connect(name, client_io)
            )
        };
        tokio::time::timeout(Duration::from_secs(10), both)
            .await
            .expect("handshake timed out")
    }

    /// Proves the connection carries data, not just that the handshake ended.
    async fn ping(
        server: &mut server::TlsStream<DuplexStream>,
        client: &mut client::TlsStream<DuplexStream>,
    ) {
        client.write_all(b"<stream>").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 8];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"<stream>");
    }

    fn client_exporter(client: &client::TlsStream<DuplexStream>) -> Vec<u8> {
        client
            .get_ref()
            .1
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", Some(&[]))
            .unwrap()
            .to_vec()
    }

    fn served_leaf(client: &client::TlsStream<DuplexStream>) -> CertificateDer<'static> {
        client.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    #[tokio::test]
    async fn sni_selects_host_certificate() {
        let fx = Fixture::new(&["localhost", "example.org"]);
        assert_ne!(fx.leaf("localhost"), fx.leaf("example.org"));

        for host in ["localhost", "example.org"] {
            let (server, client) = handshake(
                fx.setup.starttls_acceptor(),
                fx.client(TLS13_ONLY, &[]),
                host,
            )
            .await;
            let (mut server, mut client) = (server.unwrap(), client.unwrap());
            assert_eq!(served_leaf(&client), *fx.leaf(host), "cert for {host}");
            assert_eq!(server.get_ref().1.server_name(), Some(host));
            assert_eq!(
                client.get_ref().1.protocol_version(),
                Some(ProtocolVersion::TLSv1_3)
            );
            ping(&mut server, &mut client).await;

            let (_, end_point) = channel_binding(&fx.setup, &server);
            assert_eq!(
                end_point.unwrap(),
                Sha256::digest(fx.leaf(host).as_ref()).to_vec()
            );
        }
    }

    #[tokio::test]
    async fn no_sni_falls_back_to_first_host() {
        let fx = Fixture::new(&["localhost", "example.org"]);
        let mut config = fx.client(TLS13_ONLY, &[]);
        config.enable_sni = false;
        let (server, client) = handshake(fx.setup.starttls_acceptor(), config, "localhost").await;
        let (server, client) = (server.unwrap(), client.unwrap());
        assert_eq!(server.get_ref().1.server_name(), None);
        assert_eq!(served_leaf(&client), *fx.leaf("localhost"));
        let (_, end_point) = channel_binding(&fx.setup, &server);
        assert_eq!(
            end_point.unwrap(),
            Sha256::digest(fx.leaf("localhost").as_ref()).to_vec()
        );
    }

    #[test]
    fn end_point_lookup_by_sni() {
        let fx = Fixture::new(&["localhost", "Example.ORG"]);
        let first = Sha256::digest(fx.leaf("localhost").as_ref()).to_vec();
        let second = Sha256::digest(fx.leaf("Example.ORG").as_ref()).to_vec();
        assert_eq!(
            fx.setup.server_end_point(Some("localhost")),
            Some(first.clone())
        );
        assert_eq!(
            fx.setup.server_end_point(Some("example.org")),
            Some(second.clone())
        );
        assert_eq!(
            fx.setup.server_end_point(Some("EXAMPLE.org.")),
            Some(second)
        );
        assert_eq!(
            fx.setup.server_end_point(Some("unknown.test")),
            Some(first.clone())
        );
        assert_eq!(fx.setup.server_end_point(None), Some(first));
    }

    #[tokio::test]
    async fn direct_tls_negotiates_xmpp_client_alpn() {
        let fx = Fixture::new(&["localhost"]);
        let (server, client) = handshake(
            fx.setup.direct_tls_acceptor(),
            fx.client(TLS13_ONLY, &[b"h2", b"xmpp-client"]),
            "localhost",
        )
        .await;
        let (mut server, mut client) = (server.unwrap(), client.unwrap());
        assert_eq!(server.get_ref().1.alpn_protocol(), Some(ALPN_XMPP_CLIENT));
        assert_eq!(client.get_ref().1.alpn_protocol(), Some(ALPN_XMPP_CLIENT));
        ping(&mut server, &mut client).await;
    }

    #[tokio::test]
    async fn direct_tls_accepts_client_without_alpn() {
        let fx = Fixture::new(&["localhost"]);
        let (server, client) = handshake(
            fx.setup.direct_tls_acceptor(),
            fx.client(TLS13_ONLY, &[]),
            "localhost",
        )
        .await;
        let server = server.unwrap();
        client.unwrap();
        assert_eq!(server.get_ref().1.alpn_protocol(), None);
    }

    #[tokio::test]
    async fn direct_tls_refuses_other_alpn() {
        let fx = Fixture::new(&["localhost"]);
        let (server, client) = handshake(
            fx.setup.direct_tls_acceptor(),
            fx.client(TLS13_ONLY, &[b"h2"]),
            "localhost",
        )
        .await;
        let server_err = server.expect_err("server must refuse h2-only client");
        assert!(
            server_err.to_string().contains("NoApplicationProtocol")
                || format!("{server_err:?}").contains("NoApplicationProtocol"),
            "{server_err:?}"
        );
        client.expect_err("client must see the refusal");
    }

    #[tokio::test]
    async fn starttls_ignores_client_alpn() {
        let fx = Fixture::new(&["localhost"]);
        let (server, client) = handshake(
            fx.setup.starttls_acceptor(),
            fx.client(TLS13_ONLY, &[b"h2"]),
            "localhost",
        )
        .await;
        assert_eq!(server.unwrap().get_ref().1.alpn_protocol(), None);
        client.unwrap();
    }

    #[tokio::test]
    async fn a_returning_client_resumes_with_its_ticket_and_channel_binding_still_matches() {
        let fx = Fixture::new(&["localhost"]);
        // One client config: it keeps the ticket it received in its session cache.
        let config = fx.client(TLS13_ONLY, &[]);
        let (server, client) =
            handshake(fx.setup.starttls_acceptor(), config.clone(), "localhost").await;
        let (mut server, mut client) = (server.unwrap(), client.unwrap());
        // The ticket arrives after the handshake, with the first application data.
        ping(&mut server, &mut client).await;
        server.write_all(b"<features/>").await.unwrap();
        server.flush().await.unwrap();
        let mut buf = [0u8; 11];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(
            client.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
        let (server, client) = handshake(fx.setup.starttls_acceptor(), config, "localhost").await;
        let (server, client) = (server.unwrap(), client.unwrap());
        assert_eq!(
            client.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );
        let (exporter, _) = channel_binding(&fx.setup, &server);
        assert_eq!(
            exporter.expect("exporter under TLS 1.3"),
            client_exporter(&client)
        );
    }

    #[tokio::test]
    async fn tls13_exporter_matches_client() {
        let fx = Fixture::new(&["localhost", "example.org"]);
        let (server, client) = handshake(
            fx.setup.starttls_acceptor(),
            fx.client(TLS13_ONLY, &[]),
            "example.org",
        )
        .await;
        let (server, client) = (server.unwrap(), client.unwrap());
        let (exporter, end_point) = channel_binding(&fx.setup, &server);
        let exporter = exporter.expect("exporter under TLS 1.3");
        assert_eq!(exporter.len(), 32);
        assert_eq!(exporter, client_exporter(&client));
        assert_eq!(
            end_point.unwrap(),
            Sha256::digest(served_leaf(&client).as_ref()).to_vec()
        );
    }

    #[tokio::test]
    async fn tls12_has_no_exporter() {
        let fx = Fixture::new(&["localhost"]);
        let (server, client) = handshake(
            fx.setup.starttls_acceptor(),
            fx.client(TLS12_ONLY, &[]),
            "localhost",
        )
        .await;
        let (mut server, mut client) = (server.unwrap(), client.unwrap());
        assert_eq!(
            server.get_ref().1.protocol_version(),
            Some(ProtocolVersion::TLSv1_2)
        );
        ping(&mut server, &mut client).await;
        let (exporter, end_point) = channel_binding(&fx.setup, &server);
        assert_eq!(exporter, None);
        assert_eq!(
            end_point.unwrap(),
            Sha256::digest(fx.leaf("localhost").as_ref()).to_vec()
        );
    }

    #[tokio::test]
    async fn works_over_tcp() {
        let fx = Fixture::new(&["localhost"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = fx.setup.direct_tls_acceptor();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let connector = TlsConnector::from(Arc::new(fx.client(TLS13_ONLY, &[b"xmpp-client"])));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, b"ping");
        server.await.unwrap();
    }

    #[test]
    fn load_rejects_bad_configs() {
        let e = TlsSetup::load(&[]).unwrap_err();
        assert!(e.to_string().contains("no TLS certificates"), "{e}");

        let dir = TempDir::new();
        let cert_path = dir.0.join("c.pem");
        let key_path = dir.0.join("k.pem");
        ensure_certificate(&cert_path, &key_path, &hosts(&["localhost"])).unwrap();
        let hc = HostCert {
            host: "localhost".into(),
            cert_path,
            key_path,
        };
        let e = TlsSetup::load(&[hc.clone(), hc.clone()]).unwrap_err();
        assert!(e.to_string().contains("configured twice"), "{e}");

        let missing = HostCert {
            host: "example.org".into(),
            cert_path: dir.0.join("nope.pem"),
            key_path: hc.key_path.clone(),
        };
        let e = format!("{:#}", TlsSetup::load(&[hc, missing.clone()]).unwrap_err());
        assert!(e.contains("example.org"), "{e}");
        assert!(e.contains(&missing.cert_path.display().to_string()), "{e}");
    }
}
