//! A SCRAM-SHA-1 client (RFC 5802, no channel binding) whose expensive part, PBKDF2, runs
//! once per (password, salt, iterations): the derived keys are cached, so thousands of
//! logins cost the generator a few HMACs each instead of 4096 iterations of HMAC-SHA-1.
//! The cache can be kept in a file (`--key-cache`), so that a run with thousands of
//! accounts, each logging in once, does not derive during the measured window: salts are
//! per account and stable, so one warm-up login per account fills it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha1::{Digest, Sha1};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What SCRAM derives from the salted password: all a client needs per login.
#[derive(Clone)]
struct DerivedKeys {
    client_key: [u8; 20],
    stored_key: [u8; 20],
    server_key: [u8; 20],
}

/// (SHA-1 of the password, salt, iterations): the file never holds the password.
type CacheKey = ([u8; 20], Vec<u8>, u32);

/// Derived keys keyed by (password, salt, iterations). Every user has its own salt, so
/// PBKDF2 runs once per user.
#[derive(Default)]
pub struct KeyCache {
    /// One cell per key: concurrent first logins of an account wait for one derivation.
    keys: Mutex<HashMap<CacheKey, Arc<OnceLock<DerivedKeys>>>>,
    /// PBKDF2 derivations done (cache misses).
    pub derivations: AtomicU64,
    /// Logins that found their keys in the cache.
    pub hits: AtomicU64,
}

impl KeyCache {
    pub fn new() -> Arc<KeyCache> {
        Arc::new(KeyCache::default())
    }

    /// Adds the entries of a file written by [`KeyCache::save`]; returns how many.
    pub fn load(&self, path: &std::path::Path) -> anyhow::Result<usize> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a key cache", path.display()))?;
        let bytes = |v: &serde_json::Value, name: &str| -> anyhow::Result<Vec<u8>> {
            let text = v[name]
                .as_str()
                .with_context(|| format!("entry without {name}"))?;
            Ok(B64.decode(text)?)
        };
        let fixed = |v: &serde_json::Value, name: &str| -> anyhow::Result<[u8; 20]> {
            bytes(v, name)?
                .try_into()
                .map_err(|_| anyhow!("{name} is not 20 bytes"))
        };
        let mut keys = self.keys.lock().expect("key cache");
        for entry in &entries {
            let iterations = entry["iterations"]
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .context("entry without iterations")?;
            let key = (
                fixed(entry, "password_sha1")?,
                bytes(entry, "salt")?,
                iterations,
            );
            let derived = DerivedKeys {
                client_key: fixed(entry, "client_key")?,
                stored_key: fixed(entry, "stored_key")?,
                server_key: fixed(entry, "server_key")?,
            };
            keys.insert(key, Arc::new(OnceLock::from(derived)));
        }
        Ok(entries.len())
    }

    /// Writes every derived key to `path` (JSON).
    pub fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let keys = self.keys.lock().expect("key cache");
        let entries: Vec<serde_json::Value> = keys
            .iter()
            .filter_map(|((password, salt, iterations), cell)| {
                let derived = cell.get()?;
                Some(serde_json::json!({
                    "password_sha1": B64.encode(password),
                    "salt": B64.encode(salt),
                    "iterations": iterations,
                    "client_key": B64.encode(derived.client_key),
                    "stored_key": B64.encode(derived.stored_key),
                    "server_key": B64.encode(derived.server_key),
                }))
            })
            .collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&entries)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    fn get(&self, password: &str, salt: &[u8], iterations: u32) -> DerivedKeys {
        let key = (
            Sha1::digest(password.as_bytes()).into(),
            salt.to_vec(),
            iterations,
        );
        let cell = self
            .keys
            .lock()
            .expect("key cache")
            .entry(key)
            .or_default()
            .clone();
        let mut derived_here = false;
        let keys = cell
            .get_or_init(|| {
                derived_here = true;
                let mut salted = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut salted);
                let client_key = hmac(&salted, b"Client Key");
                let server_key = hmac(&salted, b"Server Key");
                DerivedKeys {
                    client_key,
                    stored_key: Sha1::digest(client_key).into(),
                    server_key,
                }
            })
            .clone();
        if derived_here {
            self.derivations.fetch_add(1, Ordering::Relaxed);
        } else {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        keys
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `=` and `,` escaped as RFC 5802 requires (the generator's user names need no SASLprep).
fn escape_username(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// One SCRAM-SHA-1 exchange.
pub struct ScramClient<'a> {
    cache: &'a KeyCache,
    password: &'a str,
    client_first_bare: String,
    client_nonce: String,
    /// Expected server signature, known after [`ScramClient::respond`].
    server_signature: Option<[u8; 20]>,
}

impl<'a> ScramClient<'a> {
    pub fn new(cache: &'a KeyCache, username: &str, password: &'a str) -> ScramClient<'a> {
        let nonce_bytes: [u8; 18] = rand::thread_rng().gen();
        let client_nonce = B64.encode(nonce_bytes);
        let client_first_bare = format!("n={},r={}", escape_username(username), client_nonce);
        ScramClient {
            cache,
            password,
            client_first_bare,
            client_nonce,
            server_signature: None,
        }
    }

    /// The initial response (`n,,n=user,r=nonce`).
    pub fn initial(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Answers the server-first-message with the client-final-message.
    pub fn respond(&mut self, server_first: &[u8]) -> anyhow::Result<String> {
        let server_first =
            std::str::from_utf8(server_first).context("server-first-message is not UTF-8")?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = part.strip_prefix("s=") {
                salt = Some(B64.decode(v).context("salt is not base64")?);
            } else if let Some(v) = part.strip_prefix("i=") {
                iterations = Some(v.parse::<u32>().context("bad iteration count")?);
            } else if part.starts_with("m=") {
                bail!("server requires an unsupported SCRAM extension");
            }
        }
        let nonce = nonce.context("server-first-message without nonce")?;
        let salt = salt.context("server-first-message without salt")?;
        let iterations = iterations.context("server-first-message without iterations")?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            bail!("server nonce does not extend the client nonce");
        }
        if iterations == 0 {
            bail!("iteration count 0");
        }
        let keys = self.cache.get(self.password, &salt, iterations);
        // c=biws is base64("n,,"): no channel binding.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, server_first, without_proof
        );
        let signature = hmac(&keys.stored_key, auth_message.as_bytes());
        let mut proof = keys.client_key;
        for (p, s) in proof.iter_mut().zip(signature.iter()) {
            *p ^= s;
        }
        self.server_signature = Some(hmac(&keys.server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final-message (`v=...`).
    pub fn verify(&self, server_final: &[u8]) -> anyhow::Result<()> {
        let text = std::str::from_utf8(server_final).context("server-final is not UTF-8")?;
        if let Some(err) = text.strip_prefix("e=") {
            bail!("server-final error {err}");
        }
        let v = text
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .context("server-final without verifier")?;
        let expected = self
            .server_signature
            .ok_or_else(|| anyhow!("success before the challenge"))?;
        if B64.decode(v).context("verifier is not base64")? != expected {
            bail!("server signature does not verify");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802 section 5 example (user "user", password "pencil").
    #[test]
    fn rfc5802_example() {
        let cache = KeyCache::default();
        let mut client = ScramClient::new(&cache, "user", "pencil");
        client.client_nonce = "fyko+d2lbbFgONRv9qkxdawL".into();
        client.client_first_bare = "n=user,r=fyko+d2lbbFgONRv9qkxdawL".into();
        let server_first =
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
        let final_message = client.respond(server_first).unwrap();
        assert_eq!(
            final_message,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        client.verify(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=").unwrap();
        assert!(client.verify(b"v=AAAApqV8S7suAoZWja4dJRkFsKQ=").is_err());
        // A second exchange with the same salt reuses the keys.
        let mut again = ScramClient::new(&cache, "user", "pencil");
        again.client_nonce = "fyko+d2lbbFgONRv9qkxdawL".into();
        again.client_first_bare = "n=user,r=fyko+d2lbbFgONRv9qkxdawL".into();
        again.respond(server_first).unwrap();
        assert_eq!(cache.derivations.load(Ordering::Relaxed), 1);
        assert_eq!(cache.hits.load(Ordering::Relaxed), 1);

        // Through a file: a new cache derives nothing.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        cache.save(&path).unwrap();
        let loaded = KeyCache::default();
        assert_eq!(loaded.load(&path).unwrap(), 1);
        let mut third = ScramClient::new(&loaded, "user", "pencil");
        third.client_nonce = "fyko+d2lbbFgONRv9qkxdawL".into();
        third.client_first_bare = "n=user,r=fyko+d2lbbFgONRv9qkxdawL".into();
        assert_eq!(
            third.respond(server_first).unwrap(),
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        assert_eq!(loaded.derivations.load(Ordering::Relaxed), 0);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("pencil"));
    }
}
