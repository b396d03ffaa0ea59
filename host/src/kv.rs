//! `fermyon:spin/key-value@2.0.0`: Spin's key-value interface over SQLite files.
//!
//! Like Spin's built-in store, each file holds a table `spin_key_value(store, key, value)` and a
//! label is a `store` name in it; labels sharing a file share one connection. Every write is a
//! durable commit (WAL, `synchronous=FULL`). A component may open only the labels it declares
//! (`key_value_stores`); anything else is `access-denied`, as on Spin.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension};
use wasmtime::component::Resource;

use crate::bindings::fermyon::spin::key_value::{self, Error};
use crate::state::InstanceState;

/// How many stores one instance may hold open at once (Spin's table capacity).
const MAX_OPEN_STORES: usize = 256;

/// Every key-value store of the application, by label.
pub struct KeyValueStores {
    by_label: HashMap<String, Arc<KvStore>>,
}

struct KvStore {
    label: String,
    file: Arc<KvFile>,
}

struct KvFile {
    path: PathBuf,
    /// One connection per file: the statements are short autocommit writes, and a single
    /// writer per file is what SQLite serialises to anyway. `std` mutex: it is only taken on
    /// blocking threads, never across an `.await`.
    conn: Mutex<Connection>,
}

/// The `store` resource handed to a guest.
pub struct KvStoreHandle {
    store: Arc<KvStore>,
}

/// Per-instance key-value state: what this component may open.
pub struct KvInstance {
    pub stores: Arc<KeyValueStores>,
    pub allowed: Arc<HashSet<String>>,
    pub n_open: usize,
}

impl KeyValueStores {
    /// Opens (creating) the file behind every label; labels naming the same path share it.
    pub fn open(paths: &BTreeMap<String, PathBuf>) -> Result<KeyValueStores, Vec<String>> {
        let files = crate::sqlite::open_each_path("key-value store", paths, |path| {
            Ok(KvFile {
                path: path.to_path_buf(),
                conn: Mutex::new(open_kv_file(path)?),
            })
        })?;
        let by_label = files
            .into_iter()
            .map(|(label, file)| (label.clone(), Arc::new(KvStore { label, file })))
            .collect();
        Ok(KeyValueStores { by_label })
    }
}

fn open_kv_file(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = crate::sqlite::open_durable(path)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS spin_key_value (
             store TEXT NOT NULL,
             key   TEXT NOT NULL,
             value BLOB NOT NULL,
             PRIMARY KEY (store, key)
         )",
    )?;
    Ok(conn)
}

impl KvStore {
    /// Runs `op` on a blocking thread: SQLite calls block, the executor must not.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        op: impl FnOnce(&Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let store = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let conn = store
                .file
                .conn
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            op(&conn, &store.label)
        })
        .await;
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                tracing::warn!(label = %self.label, path = %self.file.path.display(), error = %err, "key-value error");
                Err(Error::Other(err.to_string()))
            }
            Err(join) => Err(Error::Other(format!("key-value operation failed: {join}"))),
        }
    }
}

impl key_value::Host for InstanceState {}

impl key_value::HostStore for InstanceState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvStoreHandle>, Error>> {
        if !self.kv.allowed.contains(&label) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(store) = self.kv.stores.by_label.get(&label).cloned() else {
            return Ok(Err(Error::NoSuchStore));
        };
        if self.kv.n_open >= MAX_OPEN_STORES {
            return Ok(Err(Error::StoreTableFull));
        }
        self.kv.n_open += 1;
        Ok(Ok(self.table.push(KvStoreHandle { store })?))
    }

    async fn get(
        &mut self,
        this: Resource<KvStoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let store = self.table.get(&this)?.store.clone();
        Ok(store
            .run(move |conn, label| {
                conn.prepare_cached(
                    "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                )?
                .query_row((label, &key), |row| row.get(0))
                .optional()
            })
            .await)
    }

    async fn set(
        &mut self,
        this: Resource<KvStoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let store = self.table.get(&this)?.store.clone();
        Ok(store
            .run(move |conn, label| {
                conn.prepare_cached(
                    "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                )?
                .execute((label, &key, &value))
                .map(|_| ())
            })
            .await)
    }

    async fn delete(
        &mut self,
        this: Resource<KvStoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let store = self.table.get(&this)?.store.clone();
        Ok(store
            .run(move |conn, label| {
                conn.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                    .execute((label, &key))
                    .map(|_| ())
            })
            .await)
    }

    async fn exists(
        &mut self,
        this: Resource<KvStoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let store = self.table.get(&this)?.store.clone();
        Ok(store
            .run(move |conn, label| {
                conn.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                    .exists((label, &key))
            })
            .await)
    }

    async fn get_keys(
        &mut self,
        this: Resource<KvStoreHandle>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let store = self.table.get(&this)?.store.clone();
        Ok(store
            .run(move |conn, label| {
                let mut stmt = conn.prepare_cached(
                    "SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key",
                )?;
                let keys = stmt.query_map([label], |row| row.get(0))?.collect();
                keys
            })
            .await)
    }

    async fn drop(&mut self, this: Resource<KvStoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        self.kv.n_open = self.kv.n_open.saturating_sub(1);
        Ok(())
    }
}
