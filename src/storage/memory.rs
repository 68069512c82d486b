//! In-memory storage: for tests and the embedding fixture. Lost on exit.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{Storage, StorageResult};
use crate::sasl::StoredCredentials;

#[derive(Default)]
pub struct MemoryStorage {
    accounts: Mutex<BTreeMap<(String, String), StoredCredentials>>,
    records: Mutex<BTreeMap<(String, String, String), Vec<u8>>>,
}

impl MemoryStorage {
    fn accounts(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), StoredCredentials>> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String, String), Vec<u8>>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn get_account(&self, host: &str, user: &str) -> StorageResult<Option<StoredCredentials>> {
        Ok(self
            .accounts()
            .get(&(host.to_string(), user.to_string()))
            .cloned())
    }

    fn create_account<'a>(
        &'a self,
        host: &'a str,
        user: &'a str,
        credentials: &'a StoredCredentials,
    ) -> BoxFuture<'a, StorageResult<bool>> {
        let mut accounts = self.accounts();
        let key = (host.to_string(), user.to_string());
        let created = match accounts.entry(key) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(credentials.clone());
                // What a deleted namesake left behind (a write racing its deletion): a
                // new account starts empty.
                self.records()
                    .retain(|(h, _, key), _| !(h == host && super::key_belongs_to(key, user)));
                true
            }
        };
        async move { Ok(created) }.boxed()
    }

    fn set_credentials<'a>(
        &'a self,
        host: &'a str,
        user: &'a str,
        credentials: &'a StoredCredentials,
    ) -> BoxFuture<'a, StorageResult<bool>> {
        let updated = match self
            .accounts()
            .get_mut(&(host.to_string(), user.to_string()))
        {
            Some(existing) => {
                *existing = credentials.clone();
                true
            }
            None => false,
        };
        async move { Ok(updated) }.boxed()
    }

    fn delete_account<'a>(
        &'a self,
        host: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, StorageResult<bool>> {
        let existed = self
            .accounts()
            .remove(&(host.to_string(), user.to_string()))
            .is_some();
        self.records()
            .retain(|(h, _, key), _| !(h == host && super::key_belongs_to(key, user)));
        async move { Ok(existed) }.boxed()
    }

    fn list_accounts(&self, host: &str) -> StorageResult<Vec<String>> {
        Ok(self
            .accounts()
            .keys()
            .filter(|(h, _)| h == host)
            .map(|(_, u)| u.clone())
            .collect())
    }

    fn get(&self, host: &str, store: &str, key: &str) -> StorageResult<Option<Vec<u8>>> {
        Ok(self
            .records()
            .get(&(host.to_string(), store.to_string(), key.to_string()))
            .cloned())
    }

    fn put<'a>(
        &'a self,
        host: &'a str,
        store: &'a str,
        key: &'a str,
        value: &'a [u8],
    ) -> BoxFuture<'a, StorageResult<()>> {
        self.records().insert(
            (host.to_string(), store.to_string(), key.to_string()),
            value.to_vec(),
        );
        async move { Ok(()) }.boxed()
    }

    fn delete<'a>(
        &'a self,
        host: &'a str,
        store: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, StorageResult<bool>> {
        let existed = self
            .records()
            .remove(&(host.to_string(), store.to_string(), key.to_string()))
            .is_some();
        async move { Ok(existed) }.boxed()
    }

    fn scan(&self, host: &str, store: &str, prefix: &str) -> StorageResult<Vec<(String, Vec<u8>)>> {
        Ok(self
            .records()
            .iter()
            .filter(|((h, s, k), _)| h == host && s == store && k.starts_with(prefix))
            .map(|((_, _, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run(&super::MemoryStorage::default()).await;
    }
}
