//! sled backend (the durable default). Every write is flushed before its future resolves:
//! sled syncs on its own only every few seconds (`SLED_TIMER_MS`). Flushes are shared
//! between concurrent writes (`group_flush`), never sled's `flush_async`, which deadlocks
//! when called concurrently.

use std::path::Path;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::group_flush::GroupFlush;
use super::{
    account_key, decode_credentials, encode_credentials, record_key, Storage, StorageError,
    StorageResult,
};
use crate::sasl::StoredCredentials;

/// How often sled's own timer thread runs. Tern flushes every acknowledged write itself,
/// so the timer is left with sled's segment cleaning (its only caller in sled 0.34.7) and
/// the unsynced writes (`put_unsynced`). At sled's default of 500 ms, an idle server woke
/// twice a second for an fsync with nothing to write.
const SLED_TIMER_MS: u64 = 10_000;

pub struct SledStorage {
    accounts: sled::Tree,
    records: sled::Tree,
    flusher: GroupFlush,
}

/// sled 0.34 reports a held file lock as `ErrorKind::Other` with the OS error (EWOULDBLOCK)
/// only in its message.
fn is_lock_conflict(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::WouldBlock
        || err.to_string().starts_with("could not acquire lock")
}

fn backend(err: sled::Error) -> StorageError {
    StorageError::Backend(err.to_string())
}

impl SledStorage {
    pub fn open(path: &Path) -> Result<SledStorage, StorageError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::Backend(e.to_string()))?;
        }
        // sled releases its file lock from a background thread after the previous
        // handle is dropped (a server that just stopped, a test that reopens; the group
        // flusher's thread may hold the handle a moment after its last waiter resumed):
        // wait a little for it rather than fail.
        let mut attempts = 0;
        let db = loop {
            match sled::Config::new()
                .path(path)
                .flush_every_ms(Some(SLED_TIMER_MS))
                .open()
            {
                Ok(db) => break db,
                Err(sled::Error::Io(err)) if is_lock_conflict(&err) && attempts < 200 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(err) => return Err(backend(err)),
            }
        };
        let accounts = db.open_tree("accounts").map_err(backend)?;
        let records = db.open_tree("records").map_err(backend)?;
        let flusher = GroupFlush::new(move || {
            db.flush()
                .map(|_| ())
                .map_err(|e| format!("flushing the database: {e}"))
        });
        Ok(SledStorage {
            accounts,
            records,
            flusher,
        })
    }

    async fn flush(&self) -> StorageResult<()> {
        self.flusher.flush().await.map_err(StorageError::Backend)
    }

    /// The keys of `user`'s module records on `host` (`user` or `user/...` in any
    /// store), found with one seek per store rather than a sweep of the host's records.
    fn records_of(&self, host: &str, user: &str) -> StorageResult<Vec<sled::IVec>> {
        let mut host_prefix = host.as_bytes().to_vec();
        host_prefix.push(0);
        let mut found = Vec::new();
        let mut from = host_prefix.clone();
        while let Some(entry) = self.records.range(from.clone()..).next() {
            let (key, _) = entry.map_err(backend)?;
            if !key.starts_with(&host_prefix) {
                break;
            }
            let Some(split) = key[host_prefix.len()..].iter().position(|b| *b == 0) else {
                // Not a record key (no store separator): step over it.
                from = key.to_vec();
                from.push(0);
                continue;
            };
            let store_prefix = &key[..host_prefix.len() + split + 1];
            let mut user_prefix = store_prefix.to_vec();
            user_prefix.extend_from_slice(user.as_bytes());
            for entry in self.records.scan_prefix(&user_prefix) {
                let (record, _) = entry.map_err(backend)?;
                let name = String::from_utf8_lossy(&record[store_prefix.len()..]);
                if super::key_belongs_to(&name, user) {
                    found.push(record.clone());
                }
            }
            // `host\0store\x01` sorts after every key of this store, before the next store.
            from = store_prefix.to_vec();
            if let Some(last) = from.last_mut() {
                *last = 1;
            }
        }
        Ok(found)
    }

    /// Sets (or, with `None`, removes) the account record and removes the records in
    /// `leftovers`, in one transaction: a crash keeps all of it or none. `only_if_new`
    /// leaves an existing account alone. Returns whether the account existed before.
    fn replace_account(
        &self,
        account: &[u8],
        credentials: Option<&[u8]>,
        only_if_new: bool,
        leftovers: &[sled::IVec],
    ) -> StorageResult<bool> {
        use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
        let outcome = (&self.accounts, &self.records).transaction(|(accounts, records)| {
            let existed = accounts.get(account)?.is_some();
            if existed && only_if_new {
                return Ok(true);
            }
            match credentials {
                Some(value) => accounts.insert(account, value)?,
                None => accounts.remove(account)?,
            };
            for key in leftovers {
                records.remove(key.clone())?;
            }
            Ok::<bool, ConflictableTransactionError<()>>(existed)
        });
        match outcome {
            Ok(existed) => Ok(existed),
            Err(TransactionError::Storage(err)) => Err(backend(err)),
            Err(TransactionError::Abort(())) => Err(StorageError::Backend(
                "account transaction aborted".to_string(),
            )),
        }
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
            // Records a deleted namesake left behind (a write racing its deletion) go in
            // the same transaction: a new account starts empty.
            let leftovers = self.records_of(host, user)?;
            let existed =
                self.replace_account(&account_key(host, user), Some(&value), true, &leftovers)?;
            if !existed {
                self.flush().await?;
            }
            Ok(!existed)
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
            let records = self.records_of(host, user)?;
            let existed = self.replace_account(&account_key(host, user), None, false, &records)?;
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
        assert_eq!(
            store.list_accounts("h").expect("list"),
            vec!["juliet", "romeo"]
        );
        assert_eq!(
            store.get("h", "vcard", "romeo").expect("get"),
            Some(b"v2".to_vec())
        );
        assert_eq!(store.get("h", "offline", "romeo/1").expect("get"), None);
    }

    #[test]
    fn a_database_still_locked_by_its_previous_handle_is_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let first = SledStorage::open(&path).expect("open");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(first);
        });
        // Fails at once unless the lock conflict is recognised and waited out.
        let second = SledStorage::open(&path).expect("reopen while the first handle lives");
        releaser.join().expect("releaser");
        drop(second);
    }

    /// sled's own `flush_async` stalls forever here (every run, first round), blocking
    /// the runtime's threads, so the writes run on a runtime of their own and the test
    /// waits from outside it.
    #[test]
    fn concurrent_acknowledged_writes_all_complete_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let store = std::sync::Arc::new(SledStorage::open(&path).expect("open"));
        let (done, finished) = std::sync::mpsc::channel();
        let writer = store.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let writes = (0..200).map(|i| {
                    let store = writer.clone();
                    tokio::spawn(async move {
                        let key = format!("u{i}");
                        store.put("h", "roster", &key, b"r").await.expect("put");
                    })
                });
                for result in futures::future::join_all(writes).await {
                    result.expect("task");
                }
            });
            let _ = done.send(());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("200 concurrent writes stalled");
        drop(store);
        let store = SledStorage::open(&path).expect("reopen");
        assert_eq!(store.scan("h", "roster", "").expect("scan").len(), 200);
    }
}
