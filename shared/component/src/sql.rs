//! gyre-domain's [`Sql`] over Spin's SQLite interface (`fermyon:spin/sqlite@2.0.0`).
//!
//! Only translation lives here: values in both directions, and Spin's error variants into
//! `StoreError`. Transactions come from the trait's default `BEGIN IMMEDIATE … COMMIT`, which
//! works because one Spin `Connection` is one SQLite connection for its whole life.

use gyre_domain::store::{Rows, Sql, StoreError, Value};
use spin_sdk::sqlite;

/// An open Spin SQLite database. Drop it to release the connection.
pub struct SpinSql {
    connection: sqlite::Connection,
    /// For error messages.
    label: String,
}

impl SpinSql {
    /// Opens a database by its label in `spin.toml`'s `sqlite_databases`.
    pub fn open(label: &str) -> Result<SpinSql, StoreError> {
        let connection =
            sqlite::Connection::open(label).map_err(|error| store_error(label, error))?;
        Ok(SpinSql {
            connection,
            label: label.to_owned(),
        })
    }

    /// Opens the `default` database, Gyre's system of record.
    pub fn open_default() -> Result<SpinSql, StoreError> {
        SpinSql::open("default")
    }
}

impl Sql for SpinSql {
    fn execute(&mut self, statement: &str, params: &[Value]) -> Result<Rows, StoreError> {
        self.run(statement, params.iter().cloned().map(into_spin).collect())
    }

    fn execute_owned(&mut self, statement: &str, params: Vec<Value>) -> Result<Rows, StoreError> {
        self.run(statement, params.into_iter().map(into_spin).collect())
    }
}

impl SpinSql {
    fn run(&mut self, statement: &str, params: Vec<sqlite::Value>) -> Result<Rows, StoreError> {
        let result = self
            .connection
            .execute(statement, &params)
            .map_err(|error| store_error(&self.label, error))?;
        let rows = result
            .rows
            .into_iter()
            .map(|row| row.values.into_iter().map(from_spin).collect())
            .collect();
        Ok(Rows {
            columns: result.columns,
            rows,
        })
    }
}

fn into_spin(value: Value) -> sqlite::Value {
    match value {
        Value::Null => sqlite::Value::Null,
        Value::Integer(integer) => sqlite::Value::Integer(integer),
        Value::Real(real) => sqlite::Value::Real(real),
        Value::Text(text) => sqlite::Value::Text(text),
        Value::Blob(blob) => sqlite::Value::Blob(blob),
    }
}

fn from_spin(value: sqlite::Value) -> Value {
    match value {
        sqlite::Value::Null => Value::Null,
        sqlite::Value::Integer(integer) => Value::Integer(integer),
        sqlite::Value::Real(real) => Value::Real(real),
        sqlite::Value::Text(text) => Value::Text(text),
        sqlite::Value::Blob(blob) => Value::Blob(blob),
    }
}

fn store_error(label: &str, error: sqlite::Error) -> StoreError {
    StoreError::database(match error {
        sqlite::Error::NoSuchDatabase => format!("no sqlite database `{label}` is configured"),
        sqlite::Error::AccessDenied => {
            format!("access to sqlite database `{label}` denied: list it in `sqlite_databases`")
        }
        sqlite::Error::InvalidConnection => "invalid sqlite connection".to_owned(),
        sqlite::Error::DatabaseFull => format!("sqlite database `{label}` is full"),
        sqlite::Error::Io(message) => message,
    })
}
