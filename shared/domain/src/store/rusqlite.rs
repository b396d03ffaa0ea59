//! [`Sql`] over rusqlite, for native code and tests (feature `rusqlite`).
//!
//! [`RusqliteSql`] behaves like Spin's SQLite interface: one statement per call, `?`
//! parameters, values as SQLite storage classes. It is a newtype rather than an impl on
//! `rusqlite::Connection` because the connection's inherent `execute`/`transaction` would
//! shadow the trait's methods at every call site.

use std::path::Path;

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::{Rows, Sql, StoreError, Value};

/// A native SQLite connection the store can use.
pub struct RusqliteSql {
    connection: rusqlite::Connection,
}

impl RusqliteSql {
    /// A private in-memory database: the usual choice for a test.
    pub fn open_in_memory() -> Result<RusqliteSql, StoreError> {
        rusqlite::Connection::open_in_memory()
            .map(RusqliteSql::new)
            .map_err(database_error)
    }

    /// A database file, created if absent. Several connections may share it; a writer waits
    /// for the lock up to rusqlite's default busy timeout (5 s).
    pub fn open(path: &Path) -> Result<RusqliteSql, StoreError> {
        rusqlite::Connection::open(path)
            .map(RusqliteSql::new)
            .map_err(database_error)
    }

    pub fn new(connection: rusqlite::Connection) -> RusqliteSql {
        RusqliteSql { connection }
    }

    /// The underlying connection, for settings the `Sql` trait does not cover.
    pub fn connection(&self) -> &rusqlite::Connection {
        &self.connection
    }
}

impl Sql for RusqliteSql {
    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<Rows, StoreError> {
        // Cached: the store runs the same few statements over and over on one connection.
        let mut prepared = self
            .connection
            .prepare_cached(statement)
            .map_err(database_error)?;
        let columns: Vec<String> = prepared
            .column_names()
            .into_iter()
            .map(String::from)
            .collect();
        let n_columns = columns.len();
        let mut cursor = prepared
            .query(rusqlite::params_from_iter(params))
            .map_err(database_error)?;
        let mut rows = Vec::new();
        while let Some(row) = cursor.next().map_err(database_error)? {
            let mut values = Vec::with_capacity(n_columns);
            for column_idx in 0..n_columns {
                values.push(from_value_ref(
                    row.get_ref(column_idx).map_err(database_error)?,
                ));
            }
            rows.push(values);
        }
        Ok(Rows { columns, rows })
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(integer) => ValueRef::Integer(*integer),
            Value::Real(real) => ValueRef::Real(*real),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Blob(blob) => ValueRef::Blob(blob),
        }))
    }
}

fn from_value_ref(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(integer) => Value::Integer(integer),
        ValueRef::Real(real) => Value::Real(real),
        // SQLite does not check that TEXT is UTF-8; a lossy read beats failing the whole query.
        ValueRef::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(blob) => Value::Blob(blob.to_vec()),
    }
}

fn database_error(error: rusqlite::Error) -> StoreError {
    StoreError::database(error.to_string())
}
