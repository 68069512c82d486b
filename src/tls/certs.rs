//! Certificate files: generating self-signed development certificates and
//! loading PEM certificate/key pairs into rustls.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;

/// One certificate/key pair per virtual host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCert {
    pub host: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Self-signed dev certificate, ECDSA P-256 (PKCS_ECDSA_P256_SHA256), SANs =
/// the given hosts (DNS names; IP literals as IP SANs), valid ~1 year, CN =
/// first host. Returns `(cert_pem, key_pem)`.
pub fn generate_self_signed(hosts: &[String]) -> anyhow::Result<(String, String)> {
    let Some(first) = hosts.first() else {
        bail!("cannot generate a certificate without at least one host name");
    };
    // rcgen accepts any ASCII as a DNS SAN; a name no client can match would
    // only surface later as a baffling handshake failure.
    for host in hosts {
        if ServerName::try_from(host.as_str()).is_err() {
            bail!("cannot generate a certificate for {host:?}: not a DNS name or IP address");
        }
    }
    let mut params = rcgen::CertificateParams::new(hosts.to_vec())
        .with_context(|| format!("invalid host name for certificate in {hosts:?}"))?;

    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock is before 1970")?;
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    // Backdated so that clients whose clocks lag a little still accept it.
    params.not_before = now - DAY;
    params.not_after = now + 365 * DAY;

    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, first.as_str());
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    // ClientAuth too: XMPP servers present the same certificate when they
    // dial out to other servers (s2s with SASL EXTERNAL).
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("generating ECDSA P-256 key")?;
    let cert = params
        .self_signed(&key)
        .context("self-signing certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// If `cert_path` or `key_path` is missing, generates a self-signed pair for
/// `hosts` and writes both (key file mode 0600, parent directories created).
/// Returns true when it generated.
pub fn ensure_certificate(
    cert_path: &Path,
    key_path: &Path,
    hosts: &[String],
) -> anyhow::Result<bool> {
    let cert_exists = exists(cert_path)?;
    let key_exists = exists(key_path)?;
    if cert_exists && key_exists {
        return Ok(false);
    }
    // A lone half of a pair is useless without its partner, but replacing it
    // may surprise an operator who mistyped the other path.
    for (present, path) in [(cert_exists, cert_path), (key_exists, key_path)] {
        if present {
            tracing::warn!(
                path = %path.display(),
                "replacing existing file with a newly generated self-signed pair, \
                 because its partner file is missing"
            );
        }
    }

    let (cert_pem, key_pem) = generate_self_signed(hosts)?;
    // Key first: if writing the certificate then fails, the next start still
    // sees a missing file and regenerates both.
    write_atomically(key_path, key_pem.as_bytes(), 0o600)?;
    write_atomically(cert_path, cert_pem.as_bytes(), 0o644)?;
    tracing::info!(
        cert = %cert_path.display(),
        key = %key_path.display(),
        ?hosts,
        "generated self-signed certificate (for development only: clients will not trust it)"
    );
    Ok(true)
}

fn exists(path: &Path) -> anyhow::Result<bool> {
    path.try_exists()
        .with_context(|| format!("cannot check whether {} exists", path.display()))
}

/// Writes via a temporary file and rename, so a crash never leaves a
/// truncated PEM file that would then be "present" on the next start.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("creating directory {}", parent.display()))?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);

    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        // `mode` only applies to newly created files and is masked by the
        // umask; a stale temp file could carry looser permissions.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting permissions on {}", tmp.display()))?;
        }
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    #[cfg(not(unix))]
    let _ = mode;
    result
}

/// Loads one host's certificate chain and private key, checking that they
/// belong together.
pub(super) fn load_host_cert(
    hc: &HostCert,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = load_chain(&hc.cert_path)?;
    let leaf = &chain[0];
    let parsed = rustls::server::ParsedCertificate::try_from(leaf).map_err(|e| {
        anyhow::anyhow!(
            "first certificate in {} is not a valid X.509 certificate: {e}",
            hc.cert_path.display()
        )
    })?;
    // Only a warning: mismatched names are a client-side failure we can't
    // fix, and some deployments deliberately serve a shared certificate.
    match ServerName::try_from(hc.host.as_str()) {
        Ok(name) => {
            if let Err(e) = rustls::client::verify_server_name(&parsed, &name) {
                tracing::warn!(
                    host = %hc.host,
                    cert = %hc.cert_path.display(),
                    "certificate does not cover this host, clients will reject it: {e}"
                );
            }
        }
        Err(_) => tracing::warn!(host = %hc.host, "host is not a valid DNS name or IP address"),
    }

    warn_if_key_exposed(&hc.key_path);
    let key = load_key(&hc.key_path)?;

    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => anyhow::anyhow!(
            "private key {} does not match certificate {}",
            hc.key_path.display(),
            hc.cert_path.display()
        ),
        e => anyhow::anyhow!(
            "cannot use private key {} with certificate {}: {e}",
            hc.key_path.display(),
            hc.cert_path.display()
        ),
    })
}

/// The returned chain is never empty.
fn load_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let context = || format!("reading certificate file {}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)
        .with_context(context)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)
        .with_context(context)?;
    if chain.is_empty() {
        bail!(
            "certificate file {} contains no PEM \"CERTIFICATE\" block",
            path.display()
        );
    }
    Ok(chain)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => anyhow::anyhow!(
            "key file {} contains no PEM private key \
             (\"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")",
            path.display()
        ),
        e => pem_error(e).context(format!("reading key file {}", path.display())),
    })
}

/// Unwraps I/O errors so that "No such file or directory" reads naturally
/// and the io::Error stays downcastable.
fn pem_error(e: pem::Error) -> anyhow::Error {
    match e {
        pem::Error::Io(io) => io.into(),
        e => e.into(),
    }
}

/// Returns whether it warned, for tests.
#[cfg(unix)]
fn warn_if_key_exposed(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    // Reading errors are reported by the load itself.
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    let mode = meta.permissions().mode() & 0o777;
    let exposed = mode & 0o044 != 0;
    if exposed {
        tracing::warn!(
            key = %path.display(),
            "private key file is readable by group or others (mode {mode:03o}); \
             consider chmod 600"
        );
    }
    exposed
}

#[cfg(not(unix))]
fn warn_if_key_exposed(_path: &Path) -> bool {
    false
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory removed on drop; avoids a tempfile dependency.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tern-tls-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    fn leaf_of(cert_pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert pem")
    }

    #[test]
    fn generated_cert_covers_all_hosts() {
        let (cert_pem, key_pem) =
            generate_self_signed(&hosts(&["localhost", "example.org", "127.0.0.1"]))
                .expect("generate");
        assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));

        let leaf = leaf_of(&cert_pem);
        let parsed = rustls::server::ParsedCertificate::try_from(&leaf).expect("parse");
        for name in ["localhost", "example.org", "127.0.0.1"] {
            let name = ServerName::try_from(name).expect("name");
            rustls::client::verify_server_name(&parsed, &name).expect("name covered");
        }
        let other = ServerName::try_from("example.com").expect("name");
        assert!(rustls::client::verify_server_name(&parsed, &other).is_err());

        // The key really is ECDSA P-256 and matches the certificate.
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key pem");
        let ck = CertifiedKey::from_der(vec![leaf], key, &provider()).expect("pair");
        assert_eq!(ck.key.algorithm(), rustls::SignatureAlgorithm::ECDSA);
        ck.keys_match().expect("keys match");
    }

    #[test]
    fn generate_requires_a_valid_host() {
        assert!(generate_self_signed(&[]).is_err());
        assert!(generate_self_signed(&hosts(&["bad host name"])).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn ensure_writes_private_key_and_keeps_existing() {
        use std::os::unix::fs::PermissionsExt;

        let dir = TempDir::new();
        let cert = dir.0.join("nested/dir/cert.pem");
        let key = dir.0.join("nested/keys/key.pem");
        let names = hosts(&["localhost", "example.org"]);

        assert!(ensure_certificate(&cert, &key, &names).expect("first ensure"));
        let key_mode = fs::metadata(&key).expect("key meta").permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
        let cert_before = fs::read(&cert).expect("read cert");
        let key_before = fs::read(&key).expect("read key");

        assert!(!ensure_certificate(&cert, &key, &names).expect("second ensure"));
        assert_eq!(fs::read(&cert).expect("read cert"), cert_before);
        assert_eq!(fs::read(&key).expect("read key"), key_before);

        // The written pair loads and belongs together.
        let hc = HostCert {
            host: "example.org".into(),
            cert_path: cert.clone(),
            key_path: key.clone(),
        };
        load_host_cert(&hc, &provider()).expect("load generated pair");

        // With the key gone both are regenerated, and the key is private
        // even when a loosely-permissioned file was in its way before.
        fs::remove_file(&key).expect("remove key");
        assert!(ensure_certificate(&cert, &key, &names).expect("third ensure"));
        assert_ne!(fs::read(&cert).expect("read cert"), cert_before);
        let key_mode = fs::metadata(&key).expect("key meta").permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
        load_host_cert(&hc, &provider()).expect("load regenerated pair");
    }

    #[cfg(unix)]
    #[test]
    fn readable_key_is_flagged_but_loads() {
        use std::os::unix::fs::PermissionsExt;

        let dir = TempDir::new();
        let cert = dir.0.join("cert.pem");
        let key = dir.0.join("key.pem");
        ensure_certificate(&cert, &key, &hosts(&["localhost"])).expect("ensure");
        assert!(!warn_if_key_exposed(&key));
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(warn_if_key_exposed(&key));
        let hc = HostCert {
            host: "localhost".into(),
            cert_path: cert,
            key_path: key,
        };
        load_host_cert(&hc, &provider()).expect("readable key still loads");
    }

    fn load_err(hc: &HostCert) -> String {
        format!(
            "{:#}",
            load_host_cert(hc, &provider()).expect_err("load should fail")
        )
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = TempDir::new();
        let cert = dir.0.join("cert.pem");
        let key = dir.0.join("key.pem");
        let names = hosts(&["localhost"]);
        ensure_certificate(&cert, &key, &names).expect("ensure");

        let missing = dir.0.join("missing.pem");
        let garbage = dir.0.join("garbage.pem");
        fs::write(&garbage, b"this is not PEM\n\x00\xff binary junk\n").expect("write");
        let truncated = dir.0.join("truncated.pem");
        fs::write(
            &truncated,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");

        let hc = |cert_path: &Path, key_path: &Path| HostCert {
            host: "localhost".into(),
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
        };

        let e = load_err(&hc(&missing, &key));
        assert!(e.contains(&missing.display().to_string()), "{e}");
        assert!(e.contains("No such file"), "{e}");

        let e = load_err(&hc(&cert, &missing));
        assert!(e.contains(&missing.display().to_string()), "{e}");
        assert!(e.contains("No such file"), "{e}");

        let e = load_err(&hc(&garbage, &key));
        assert!(e.contains(&garbage.display().to_string()), "{e}");
        assert!(e.contains("no PEM \"CERTIFICATE\""), "{e}");

        let e = load_err(&hc(&cert, &garbage));
        assert!(e.contains(&garbage.display().to_string()), "{e}");
        assert!(e.contains("no PEM private key"), "{e}");

        let e = load_err(&hc(&truncated, &key));
        assert!(e.contains(&truncated.display().to_string()), "{e}");

        // A key from a different pair.
        let other_cert = dir.0.join("other-cert.pem");
        let other_key = dir.0.join("other-key.pem");
        ensure_certificate(&other_cert, &other_key, &names).expect("ensure other");
        let e = load_err(&hc(&cert, &other_key));
        assert!(e.contains("does not match"), "{e}");
        assert!(e.contains(&other_key.display().to_string()), "{e}");
    }
}
