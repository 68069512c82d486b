//! sled backend (the durable default). Every write is flushed before its future resolves:
//! sled only syncs every 500 ms on its own.

use std::path::Path;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{
    account_key, decode_credentials, encode_credentials, record_key, Storage, StorageError,
    StorageResult,
};
use crate::sasl::StoredCredentials;

pub struct SledStorage {
    db: sled::Db,
    accounts: sled::Tree,
    records: sled::Tree,
}

fn backend(err: sled::Error) -> StorageError {
    StorageError::Backend(err.to_string())
}

impl SledStorage {
    pub fn open(path: &Path) -> Result<SledStorage, StorageError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::Backend(e.to_string()))?;
        }
        // sled releases its file lock from a background thread (it wakes every 500 ms) after the previous
        // handle is dropped (a server that just stopped, a test that reopens): wait a
        // little for it rather than fail.
        let mut attempts = 0;
        let db = loop {
            match sled::open(path) {
                Ok(db) => break db,
                Err(sled::Error::Io(err))
                    if err.kind() == std::io::ErrorKind::WouldBlock && attempts < 200 =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(err) => return Err(backend(err)),
            }
        };
        let accounts = db.open_tree("accounts").map_err(backend)?;
        let records = db.open_tree("records").map_err(backend)?;
        Ok(SledStorage {
            db,
            accounts,
            records,
        })
    }

    async fn flush(&self) -> StorageResult<()> {
        self.db.flush_async().await.map_err(backend)?;
        Ok(())
    }
}

impl Storage for SledStorage {
    fn get_account(&self, host: &str, user: &str) -> StorageResult<Option<StoredCredentials>> {
        match self
            .accounts
            .get(account_key(host, user))
            .map_err(backend)?
        {
            Some(bytes) => Ok(Some(decode_credentials(&format!("{user}@{host}"), &bytes)?)),
            None => Ok(None),
        }
    }

    fn create_account<'a>(
        &'a self,
        host: &'a str,
        user: &'a str,
        credentials: &'a StoredCredentials,
    ) -> BoxFuture<'a, StorageResult<bool>> {
        async move {
            let value = encode_credentials(credentials)?;
            let swapped = self
                .accounts
                .compare_and_swap(account_key(host, user), None as Option<&[u8]>, Some(value))
                .map_err(backend)?;
            let created = swapped.is_ok();
            if created {
                self.flush().await?;
            }
            Ok(created)
        }
        .boxed()
    }

    fn set_credentials<'a>(
        &'a self,
        host: &'a str,
        user: &'a str,
        credentials: &'a StoredCredentials,
    ) -> BoxFuture<'a, StorageResult<bool>> {
        async move {
            let value = encode_credentials(credentials)?;
            let key = account_key(host, user);
            let updated = self
                .accounts
                .fetch_and_update(&key, |old| old.map(|_| value.clone()))
                .map_err(backend)?
                .is_some();
            if updated {
                self.flush().await?;
            }
            Ok(updated)
        }
        .boxed()
    }

    fn delete_account<'a>(
        &'a self,
        host: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, StorageResult<bool>> {
        async move {
            let existed = self
                .accounts
                .remove(account_key(host, user))
                .map_err(backend)?
                .is_some();
            // Module data: every store of the host, keys `user` or `user/...`.
            let mut host_prefix = host.as_bytes().to_vec();
            host_prefix.push(0);
            let mut doomed = Vec::new();
            for entry in self.records.scan_prefix(&host_prefix) {
                let (key, _) = entry.map_err(backend)?;
                let rest = &key[host_prefix.len()..];
                if let Some(split) = rest.iter().position(|b| *b == 0) {
                    let record = String::from_utf8_lossy(&rest[split + 1..]);
                    if super::key_belongs_to(&record, user) {
                        doomed.push(key.clone());
                    }
                }
            }
            let mut batch = sled::Batch::default();
            for key in doomed {
                batch.remove(key);
            }
            self.records.apply_batch(batch).map_err(backend)?;
            self.flush().await?;
            Ok(existed)
        }
        .boxed()
    }

    fn account_exists(&self, host: &str, user: &str) -> StorageResult<bool> {
        // Without decoding the credentials (JSON) only to drop them.
        self.accounts
            .contains_key(account_key(host, user))
            .map_err(backend)
    }

    fn list_accounts(&self, host: &str) -> StorageResult<Vec<String>> {
        let mut prefix = host.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for entry in self.accounts.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(backend)?;
            out.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    fn get(&self, host: &str, store: &str, key: &str) -> StorageResult<Option<Vec<u8>>> {
        Ok(self
            .records
            .get(record_key(host, store, key))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn put<'a>(
        &'a self,
        host: &'a str,
        store: &'a str,
        key: &'a str,
        value: &'a [u8],
    ) -> BoxFuture<'a, StorageResult<()>> {
        async move {
            self.records
                .insert(record_key(host, store, key), value)
                .map_err(backend)?;
            self.flush().await
        }
        .boxed()
    }

    fn put_unsynced<'a>(
        &'a self,
        host: &'a str,
        store: &'a str,
        key: &'a str,
        value: &'a [u8],
    ) -> BoxFuture<'a, StorageResult<()>> {
        // A flush of its own wakes sled's whole I/O pool: at one write per logout, that was
        // a third of the server's CPU per login.
        let result = self
            .records
            .insert(record_key(host, store, key), value)
            .map(|_| ())
            .map_err(backend);
        async move { result }.boxed()
    }

    fn delete<'a>(
        &'a self,
        host: &'a str,
        store: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, StorageResult<bool>> {
        async move {
            let existed = self
                .records
                .remove(record_key(host, store, key))
                .map_err(backend)?
                .is_some();
            if existed {
                self.flush().await?;
            }
            Ok(existed)
        }
        .boxed()
    }

    fn scan(&self, host: &str, store: &str, prefix: &str) -> StorageResult<Vec<(String, Vec<u8>)>> {
        let full_prefix = record_key(host, store, prefix);
        let key_start = host.len() + store.len() + 2;
        let mut out = Vec::new();
        for entry in self.records.scan_prefix(&full_prefix) {
            let (key, value) = entry.map_err(backend)?;
            out.push((
                String::from_utf8_lossy(&key[key_start..]).into_owned(),
                value.to_vec(),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        {
            let store = SledStorage::open(&path).expect("open");
            super::super::conformance::run(&store).await;
        }
        let store = SledStorage::open(&path).expect("reopen");
        assert_eq!(store.list_accounts("h").expect("list"), vec!["juliet"]);
    }
}
