//! Storage: the [`Sql`] seam, the values that cross it, and the schema.
//!
//! Every SQL statement Gyre runs lives under this module and is written against [`Sql`], a
//! deliberately small trait: run one statement with positional (`?`) parameters, get columns
//! and rows back. Wasm components implement it over Spin's `sqlite` interface
//! (gyre-component); native code and tests use [`RusqliteSql`] (feature `rusqlite`).
//! Both backends run one statement per call, so a multi-statement script is a list of calls.
//!
//! This module owns the schema ([`migrations`]); it does not own connections, pooling, or the
//! choice of database label, which belong to the caller.

pub mod api_tokens;
pub mod audit;
pub mod c2d;
pub mod commands;
pub mod device_events;
pub mod device_groups;
pub mod device_properties;
pub mod device_templates;
pub mod devices;
pub mod enrollment_groups;
pub mod journal;
mod migrations;
pub mod provisioning;
pub mod rollups;
#[cfg(feature = "rusqlite")]
mod rusqlite;
pub mod settings;
pub mod telemetry;
pub mod telemetry_query;
#[cfg(all(test, feature = "rusqlite"))]
mod tests;
pub mod twins;

#[cfg(feature = "rusqlite")]
pub use self::rusqlite::RusqliteSql;
pub use migrations::{migrate, Migrated, SchemaVersion, LATEST_SCHEMA_VERSION};

/// A value bound to a `?` parameter or read from a result column: SQLite's storage classes.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(integer) => Some(*integer),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// The result of one statement: column names and the rows, each with one value per column.
/// Statements that return nothing (DDL, most writes) give empty `rows`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// The first column of the first row, for `SELECT count(*)`-style queries.
    pub fn scalar(&self) -> Option<&Value> {
        self.rows.first().and_then(|row| row.first())
    }
}

/// What an `INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id` did: every store inserts new
/// entities this way, so an existing id is reported, never overwritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    Created,
    /// An entity with this id exists; nothing was written.
    AlreadyExists,
}

impl Inserted {
    /// Reads the answer of such an insert: a returned row means it was created.
    pub fn from_returning(rows: &Rows) -> Inserted {
        if rows.rows.is_empty() {
            Inserted::AlreadyExists
        } else {
            Inserted::Created
        }
    }
}

/// A SQLite connection as the domain sees it.
pub trait Sql {
    /// Runs exactly one statement with positional parameters and returns its rows.
    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<Rows, StoreError>;

    /// [`Sql::execute`] with parameters the caller gives up, so a backend that must convert
    /// them (Spin's) moves their strings and blobs instead of copying them. For the hot paths
    /// (ingest writes each message's body through here).
    fn execute_owned(&mut self, statement: &str, params: Vec<Value>) -> Result<Rows, StoreError> {
        self.execute(statement, &params)
    }

    /// Runs `work` inside `BEGIN IMMEDIATE … COMMIT`, rolling back if `work` or the commit
    /// fails. `IMMEDIATE` takes SQLite's write lock up front, so a read-then-write inside
    /// `work` cannot be invalidated by another connection. Transactions do not nest: calling
    /// this from inside `work` fails on the inner `BEGIN`.
    fn transaction<T, E>(&mut self, work: impl FnOnce(&mut Self) -> Result<T, E>) -> Result<T, E>
    where
        Self: Sized,
        E: From<StoreError>,
    {
        self.execute("BEGIN IMMEDIATE", &[])?;
        let result = work(self).and_then(|value| {
            self.execute("COMMIT", &[])?;
            Ok(value)
        });
        if result.is_err() {
            // The error from `work` or COMMIT is the one worth reporting. ROLLBACK can only fail
            // here when SQLite already rolled back on its own (it does for some errors, e.g. a
            // full disk), which leaves the database in the state we want anyway.
            let _ = self.execute("ROLLBACK", &[]);
        }
        result
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend rejected a statement or could not reach the database.
    #[error("database error: {message}")]
    Database { message: String },
    /// A statement returned something other than what its caller's SQL guarantees.
    #[error("unexpected result from `{statement}`: {detail}")]
    UnexpectedResult {
        statement: &'static str,
        detail: String,
    },
    /// A migration failed; its transaction was rolled back and the schema version is unchanged.
    #[error("migration {version} ({name}) failed")]
    Migration {
        version: u32,
        name: &'static str,
        #[source]
        source: Box<StoreError>,
    },
    /// The database was migrated by a newer Gyre than this one; running older code against it
    /// could corrupt data, so this build refuses to use it.
    #[error("database schema version {found} is newer than the {supported} this build supports")]
    SchemaTooNew { found: u32, supported: u32 },
}

impl StoreError {
    pub fn database(message: impl Into<String>) -> StoreError {
        StoreError::Database {
            message: message.into(),
        }
    }
}
