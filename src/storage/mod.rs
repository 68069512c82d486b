//! Storage: accounts and per-module key-value stores behind one trait.
//!
//! Every write method returns only once the write is durable (sled: flushed), so a
//! caller may tell the client it succeeded as soon as the future resolves.

mod group_flush;
pub mod memory;
pub mod sled_store;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::sasl::StoredCredentials;

pub type StorageResult<T> = Result<T, StorageError>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("corrupt record {key}: {detail}")]
    Corrupt { key: String, detail: String },
}

pub trait Storage: Send + Sync + 'static {
    fn get_account(&self, host: &str, user: &str) -> StorageResult<Option<StoredCredentials>>;
    /// Creates the account; `Ok(false)` when it already exists (nothing written).
    fn create_account<'a>(
        &'a self,
        host: &'a str,
        user: &'a str,
        credentials: &'a StoredCredentials,
    ) -> BoxFuture<'a, StorageResult<bool>>;
    /// Replaces the credentials of an existing account; `Ok(false)` when there is none.
    fn set_credentials<'a>(
        &'a self,
        host: &'a str,
        user: &'a str,
        credentials: &'a StoredCredentials,
    ) -> BoxFuture<'a, StorageResult<bool>>;
    /// Deletes the account and everything modules stored under it (keys `user` or
    /// `user/...` in every store of the host). `Ok(false)` when there was no account.
    fn delete_account<'a>(
        &'a self,
        host: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, StorageResult<bool>>;
    fn list_accounts(&self, host: &str) -> StorageResult<Vec<String>>;

    fn get(&self, host: &str, store: &str, key: &str) -> StorageResult<Option<Vec<u8>>>;
    fn put<'a>(
        &'a self,
        host: &'a str,
        store: &'a str,
        key: &'a str,
        value: &'a [u8],
    ) -> BoxFuture<'a, StorageResult<()>>;
    /// Like `put`, for a record nobody is told was saved (a logout time): the backend may
    /// make it durable later, on its own schedule (sled: within 10 s, or with the next
    /// write that is flushed), so the write does not pay for a sync of its own. Backends
    /// without such a schedule just `put`.
    fn put_unsynced<'a>(
        &'a self,
        host: &'a str,
        store: &'a str,
        key: &'a str,
        value: &'a [u8],
    ) -> BoxFuture<'a, StorageResult<()>> {
        self.put(host, store, key, value)
    }
    fn delete<'a>(
        &'a self,
        host: &'a str,
        store: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, StorageResult<bool>>;
    /// All entries whose key starts with `prefix`, in key order.
    fn scan(&self, host: &str, store: &str, prefix: &str) -> StorageResult<Vec<(String, Vec<u8>)>>;

    fn account_exists(&self, host: &str, user: &str) -> StorageResult<bool> {
        Ok(self.get_account(host, user)?.is_some())
    }
}

pub type SharedStorage = Arc<dyn Storage>;

/// Opens the configured backend.
pub fn open(config: &crate::config::Config) -> anyhow::Result<SharedStorage> {
    use anyhow::Context;
    match config.storage {
        crate::config::StorageKind::Memory => Ok(Arc::new(memory::MemoryStorage::default())),
        crate::config::StorageKind::Sled => {
            let path = config.data_dir.join("tern.sled");
            let store = sled_store::SledStorage::open(&path)
                .with_context(|| format!("cannot open the database at {}", path.display()))?;
            Ok(Arc::new(store))
        }
    }
}

/// Key of one module record: host, store and key joined by NUL, which no JID part or
/// store name contains.
pub(crate) fn record_key(host: &str, store: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(host.len() + store.len() + key.len() + 2);
    out.extend_from_slice(host.as_bytes());
    out.push(0);
    out.extend_from_slice(store.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

pub(crate) fn account_key(host: &str, user: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(host.len() + user.len() + 1);
    out.extend_from_slice(host.as_bytes());
    out.push(0);
    out.extend_from_slice(user.as_bytes());
    out
}

pub(crate) fn encode_credentials(credentials: &StoredCredentials) -> StorageResult<Vec<u8>> {
    serde_json::to_vec(credentials).map_err(|e| StorageError::Backend(e.to_string()))
}

pub(crate) fn decode_credentials(key: &str, bytes: &[u8]) -> StorageResult<StoredCredentials> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt {
        key: key.to_string(),
        detail: e.to_string(),
    })
}

/// Whether a module key belongs to `user` (deleted with the account).
pub(crate) fn key_belongs_to(key: &str, user: &str) -> bool {
    key == user
        || key
            .strip_prefix(user)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
pub(crate) mod conformance {
    //! The same checks for every backend.
    use super::*;

    pub async fn run(storage: &dyn Storage) {
        let creds = StoredCredentials::derive("pw", 4096).expect("derive");
        assert!(storage
            .create_account("h", "romeo", &creds)
            .await
            .expect("create"));
        assert!(!storage
            .create_account("h", "romeo", &creds)
            .await
            .expect("create again"));
        assert_eq!(
            storage.get_account("h", "romeo").expect("get"),
            Some(creds.clone())
        );
        assert_eq!(storage.get_account("other", "romeo").expect("get"), None);
        assert!(storage
            .create_account("h", "juliet", &creds)
            .await
            .expect("create"));
        assert_eq!(
            storage.list_accounts("h").expect("list"),
            vec!["juliet", "romeo"]
        );
        let creds2 = StoredCredentials::derive("pw2", 4096).expect("derive");
        assert!(storage
            .set_credentials("h", "romeo", &creds2)
            .await
            .expect("set"));
        assert!(!storage
            .set_credentials("h", "nobody", &creds2)
            .await
            .expect("set"));
        assert_eq!(
            storage.get_account("h", "romeo").expect("get"),
            Some(creds2)
        );

        storage
            .put("h", "roster", "romeo", b"r1")
            .await
            .expect("put");
        storage
            .put("h", "roster", "romeo/x", b"r2")
            .await
            .expect("put");
        storage
            .put("h", "roster", "romeoo", b"other")
            .await
            .expect("put");
        storage.put("h", "vcard", "romeo", b"v").await.expect("put");
        assert_eq!(
            storage.get("h", "roster", "romeo").expect("get"),
            Some(b"r1".to_vec())
        );
        let scanned = storage.scan("h", "roster", "romeo").expect("scan");
        assert_eq!(scanned.len(), 3);
        assert_eq!(scanned[0].0, "romeo");

        assert!(storage.delete_account("h", "romeo").await.expect("delete"));
        assert!(!storage.delete_account("h", "romeo").await.expect("delete"));
        assert_eq!(storage.get("h", "roster", "romeo").expect("get"), None);
        assert_eq!(storage.get("h", "roster", "romeo/x").expect("get"), None);
        assert_eq!(storage.get("h", "vcard", "romeo").expect("get"), None);
        assert_eq!(
            storage.get("h", "roster", "romeoo").expect("get"),
            Some(b"other".to_vec())
        );
        assert_eq!(storage.list_accounts("h").expect("list"), vec!["juliet"]);
        // A write that raced the deletion left a record behind: a new account of the
        // same name does not inherit it, and creating an existing account touches
        // none of its records.
        storage
            .put("h", "offline", "romeo/1", b"late")
            .await
            .expect("put");
        storage
            .put("h", "zz-last-store", "romeo", b"late")
            .await
            .expect("put");
        assert!(storage
            .create_account("h", "romeo", &creds)
            .await
            .expect("create"));
        assert_eq!(storage.get("h", "offline", "romeo/1").expect("get"), None);
        assert_eq!(
            storage.get("h", "zz-last-store", "romeo").expect("get"),
            None
        );
        storage
            .put("h", "vcard", "romeo", b"v2")
            .await
            .expect("put");
        assert!(!storage
            .create_account("h", "romeo", &creds)
            .await
            .expect("create again"));
        assert_eq!(
            storage.get("h", "vcard", "romeo").expect("get"),
            Some(b"v2".to_vec())
        );
        assert_eq!(
            storage.get("h", "roster", "romeoo").expect("get"),
            Some(b"other".to_vec())
        );
        assert!(storage
            .delete("h", "roster", "romeoo")
            .await
            .expect("delete"));
        assert!(!storage
            .delete("h", "roster", "romeoo")
            .await
            .expect("delete"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stored_as_base64_and_older_records_still_read() {
        let creds = StoredCredentials::derive("pw", 4096).expect("derive");
        let stored = encode_credentials(&creds).expect("encode");
        let text = String::from_utf8_lossy(&stored).into_owned();
        assert!(text.contains(r#""salt":""#), "{text}");
        assert!(!text.contains(r#""salt":["#), "{text}");
        assert_eq!(
            decode_credentials("romeo@h", &stored).ok(),
            Some(creds.clone())
        );

        // A record as written before: every salt and key an array of numbers.
        let numbers = |bytes: &[u8]| {
            let list: Vec<String> = bytes.iter().map(u8::to_string).collect();
            format!("[{}]", list.join(","))
        };
        let hash = |c: &crate::sasl::ScramCredentials| {
            format!(
                r#"{{"salt":{},"iterations":{},"stored_key":{},"server_key":{}}}"#,
                numbers(&c.salt),
                c.iterations,
                numbers(&c.stored_key),
                numbers(&c.server_key)
            )
        };
        let old = format!(
            r#"{{"sha1":{},"sha256":{}}}"#,
            hash(&creds.sha1),
            hash(&creds.sha256)
        );
        assert_eq!(
            decode_credentials("romeo@h", old.as_bytes()).ok(),
            Some(creds)
        );

        let damaged = text.replacen(r#""salt":""#, r#""salt":"!"#, 1);
        match decode_credentials("romeo@h", damaged.as_bytes()) {
            Err(StorageError::Corrupt { key, detail }) => {
                assert_eq!(key, "romeo@h");
                assert!(detail.contains("invalid base64"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
}
