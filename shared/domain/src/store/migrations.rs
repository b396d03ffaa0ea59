//! The schema, as an append-only list of migrations, and the runner that applies them.
//!
//! The schema version is SQLite's `PRAGMA user_version`: migration `n` (1-based position in
//! [`MIGRATIONS`]) is applied when the version is below `n`, and sets it to `n` in the same
//! `BEGIN IMMEDIATE` transaction as its statements. Every component calls [`migrate`] on first
//! use, so many instances may race to migrate one database: each re-reads the version after
//! taking the write lock and skips what another instance already applied. A failed migration
//! rolls back whole, version included.
//!
//! To change the schema, append one `Migration` line to [`MIGRATIONS`]. Never edit or reorder
//! a migration that has shipped: databases in the field already record it as applied.

use super::{Sql, StoreError, Value};
use crate::time::Timestamp;

/// Every schema change, oldest first. Position `i` holds schema version `i + 1`.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "meta",
        statements: &[META_TABLE],
    },
    Migration {
        name: "api_tokens",
        statements: &[API_TOKENS_TABLE],
    },
    Migration {
        name: "registry",
        statements: &[
            DEVICE_TEMPLATES_TABLE,
            DEVICES_TABLE,
            DEVICES_BY_TEMPLATE,
            DEVICE_GROUPS_TABLE,
            ENROLLMENT_GROUPS_TABLE,
            AUDIT_LOG_TABLE,
        ],
    },
    Migration {
        name: "device_approval",
        statements: &[DEVICES_APPROVED_COLUMN, DEVICES_BY_DISPLAY_NAME],
    },
    Migration {
        name: "telemetry",
        statements: &[
            TELEMETRY_INBOX_TABLE,
            TELEMETRY_TABLE,
            LAST_VALUES_TABLE,
            CONNECTIVITY_TABLE,
            CONNECTIVITY_BY_DEVICE,
            INGEST_BATCHES_TABLE,
        ],
    },
    Migration {
        name: "ingest_batches_by_age",
        statements: &[INGEST_BATCHES_BY_AGE],
    },
    Migration {
        name: "device_twins",
        statements: &[
            DEVICES_REPORTED_VERSION,
            DEVICES_REPORTED_METADATA,
            DEVICES_DESIRED,
            DEVICES_DESIRED_VERSION,
            DEVICES_DESIRED_METADATA,
        ],
    },
    Migration {
        name: "device_events",
        statements: &[DEVICE_EVENTS_TABLE],
    },
    Migration {
        name: "commands_and_c2d",
        statements: &[
            COMMAND_HISTORY_TABLE,
            COMMAND_HISTORY_BY_COMMAND,
            C2D_MESSAGES_TABLE,
            C2D_MESSAGES_BY_DEVICE,
            C2D_MESSAGES_BY_EXPIRY,
        ],
    },
    Migration {
        name: "telemetry_rollups",
        statements: &[TELEMETRY_ROLLUPS_TABLE, TELEMETRY_ROLLUP_STATE_TABLE],
    },
    Migration {
        name: "last_values_per_component",
        statements: &[
            LAST_VALUES_PER_COMPONENT_TABLE,
            LAST_VALUES_PER_COMPONENT_COPY,
            LAST_VALUES_PER_FIELD_DROP,
            LAST_VALUES_PER_COMPONENT_RENAME,
        ],
    },
    Migration {
        name: "last_values_names",
        statements: &[LAST_VALUES_NAMES],
    },
];

/// Key-value facts about the database itself (when it was created, when each migration ran).
pub(crate) const META_TABLE: &str = "CREATE TABLE gyre_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// API tokens as verifiers (see `auth` and `api_tokens`): times in Unix milliseconds, `roles` as
/// IoT Central's `[{"role", "organization"}]` JSON.
const API_TOKENS_TABLE: &str = "CREATE TABLE api_tokens (\
     id TEXT PRIMARY KEY, \
     verifier BLOB NOT NULL CHECK (typeof(verifier) = 'blob' AND length(verifier) = 32), \
     expiry INTEGER NOT NULL, \
     roles TEXT NOT NULL, \
     created_at INTEGER NOT NULL)";

// The registry (issue 3). Times are Unix milliseconds; JSON columns hold JSON text, never
// invalid JSON (device-group filters run `json_extract` over `cloud_properties` and `reported`).
// Foreign keys are not declared: SQLite leaves them off by default, and the rules they would
// express (a template in use cannot be deleted) are checked by the domain, with a clear error.

/// Published device templates, keyed by their DTMI; `capability_model` is the DTDL as sent.
const DEVICE_TEMPLATES_TABLE: &str = "CREATE TABLE device_templates (\
     id TEXT PRIMARY KEY, \
     etag TEXT NOT NULL, \
     display_name TEXT, \
     description TEXT, \
     types TEXT NOT NULL, \
     capability_model TEXT NOT NULL, \
     created_at INTEGER NOT NULL, \
     updated_at INTEGER NOT NULL)";

/// Devices. `template` is NULL for an unassigned device; `primary_key`/`secondary_key` hold
/// the individual symmetric-key attestation (NULL when the device has none).
const DEVICES_TABLE: &str = "CREATE TABLE devices (\
     id TEXT PRIMARY KEY, \
     etag TEXT NOT NULL, \
     display_name TEXT NOT NULL, \
     template TEXT, \
     enabled INTEGER NOT NULL, \
     provisioned INTEGER NOT NULL, \
     simulated INTEGER NOT NULL, \
     organization TEXT, \
     cloud_properties TEXT NOT NULL DEFAULT '{}', \
     reported TEXT NOT NULL DEFAULT '{}', \
     primary_key TEXT, \
     secondary_key TEXT, \
     created_at INTEGER NOT NULL, \
     updated_at INTEGER NOT NULL)";

/// "Is this template in use?" and "devices of a template" read only that template's devices.
const DEVICES_BY_TEMPLATE: &str = "CREATE INDEX devices_by_template ON devices (template, id)";

/// Device groups: `filter` is the IoT Central query (`SELECT * FROM devices WHERE ...`).
const DEVICE_GROUPS_TABLE: &str = "CREATE TABLE device_groups (\
     id TEXT PRIMARY KEY, \
     etag TEXT NOT NULL, \
     display_name TEXT NOT NULL, \
     description TEXT, \
     filter TEXT NOT NULL, \
     organization TEXT, \
     created_at INTEGER NOT NULL, \
     updated_at INTEGER NOT NULL)";

/// Enrollment groups with symmetric-key attestation (IoT Central's `iot` type).
const ENROLLMENT_GROUPS_TABLE: &str = "CREATE TABLE enrollment_groups (\
     id TEXT PRIMARY KEY, \
     etag TEXT NOT NULL, \
     display_name TEXT NOT NULL, \
     enabled INTEGER NOT NULL, \
     type TEXT NOT NULL, \
     primary_key TEXT NOT NULL, \
     secondary_key TEXT NOT NULL, \
     auto_approve INTEGER NOT NULL DEFAULT 1, \
     created_at INTEGER NOT NULL, \
     updated_at INTEGER NOT NULL)";

/// Who changed what, when: one row per create, update and delete, in order (`seq`), for the
/// export issue to publish.
const AUDIT_LOG_TABLE: &str = "CREATE TABLE audit_log (\
     seq INTEGER PRIMARY KEY AUTOINCREMENT, \
     at INTEGER NOT NULL, \
     actor TEXT NOT NULL, \
     action TEXT NOT NULL, \
     resource_type TEXT NOT NULL, \
     resource_id TEXT NOT NULL, \
     detail TEXT)";

/// Whether an operator approved the device: a device that registered itself through an
/// enrollment group without auto-approve waits with `approved = 0` (IoT Central's "waiting for
/// approval"); `enabled = 0` alone is "blocked".
const DEVICES_APPROVED_COLUMN: &str =
    "ALTER TABLE devices ADD COLUMN approved INTEGER NOT NULL DEFAULT 1";

/// `$orderby=displayName` pages read the index in order instead of sorting every device.
const DEVICES_BY_DISPLAY_NAME: &str =
    "CREATE INDEX devices_by_display_name ON devices (display_name, id)";

// Telemetry (issue 4), written by the ingest component (`store::telemetry`). Ingest appends to
// `telemetry_inbox`, whose only key is its rowid: no secondary index to maintain per message,
// so a batch costs one b-tree append. `compact` moves inbox rows, oldest first and in bounded
// steps, into `telemetry`, clustered by (device, enqueued time): a one-device time-range read is
// one range scan there (plus a scan of the small inbox). Times are Unix milliseconds; `fields`
// is the JSON object of a JSON body's top-level fields (NULL for other bodies), `unmodeled` a
// JSON array of those the device's template does not declare as telemetry (NULL: none),
// `properties` `{"system": {..}, "application": [[name, value], ..]}` (NULL: none; rows
// written since the compact form hold the message's property bag instead, the SDKs' usual
// content type and encoding as one mark character, see `telemetry::properties_json`), `body`
// the payload's bytes exactly as sent, except that a body whose text is exactly `fields` is
// stored once, as an empty `body` beside `fields` (an empty payload has no `fields`).

/// Messages as they arrive. AUTOINCREMENT: `seq` must never be reused once rows have moved to
/// `telemetry` (whose key includes it), even when the inbox becomes empty.
const TELEMETRY_INBOX_TABLE: &str = "CREATE TABLE telemetry_inbox (\
     seq INTEGER PRIMARY KEY AUTOINCREMENT, \
     device_id TEXT NOT NULL, \
     module_id TEXT, \
     component TEXT, \
     enqueued_at INTEGER NOT NULL, \
     device_time INTEGER, \
     properties TEXT, \
     body BLOB NOT NULL, \
     fields TEXT, \
     unmodeled TEXT)";

/// Compacted messages, clustered by device and time.
const TELEMETRY_TABLE: &str = "CREATE TABLE telemetry (\
     device_id TEXT NOT NULL, \
     enqueued_at INTEGER NOT NULL, \
     seq INTEGER NOT NULL, \
     module_id TEXT, \
     component TEXT, \
     device_time INTEGER, \
     properties TEXT, \
     body BLOB NOT NULL, \
     fields TEXT, \
     unmodeled TEXT, \
     PRIMARY KEY (device_id, enqueued_at, seq)) WITHOUT ROWID";

/// The last known value of each telemetry field per device and component (`''`: the root
/// Interface), with the enqueued time of the message that carried it. Replaced by one row per
/// device and component in migration `last_values_per_component`.
const LAST_VALUES_TABLE: &str = "CREATE TABLE last_values (\
     device_id TEXT NOT NULL, \
     component TEXT NOT NULL, \
     name TEXT NOT NULL, \
     value TEXT NOT NULL, \
     enqueued_at INTEGER NOT NULL, \
     PRIMARY KEY (device_id, component, name)) WITHOUT ROWID";

/// Connects and disconnects as the bridge saw them (`kind`: `connected` | `disconnected`).
const CONNECTIVITY_TABLE: &str = "CREATE TABLE connectivity (\
     seq INTEGER PRIMARY KEY AUTOINCREMENT, \
     device_id TEXT NOT NULL, \
     kind TEXT NOT NULL, \
     at INTEGER NOT NULL)";

/// A device's connectivity history reads only that device's rows (events are few per device).
const CONNECTIVITY_BY_DEVICE: &str =
    "CREATE INDEX connectivity_by_device ON connectivity (device_id, at)";

/// Batch ids already applied, for idempotent retries by the bridge.
const INGEST_BATCHES_TABLE: &str = "CREATE TABLE ingest_batches (\
     batch_id TEXT PRIMARY KEY, \
     at INTEGER NOT NULL, \
     n_messages INTEGER NOT NULL, \
     n_events INTEGER NOT NULL) WITHOUT ROWID";

/// Lets the tick prune old batch ids in bounded steps without scanning the table (one index
/// entry per batch, not per message, so ingest does not notice it).
const INGEST_BATCHES_BY_AGE: &str = "CREATE INDEX ingest_batches_by_age ON ingest_batches (at)";

/// The device twin lives in the device's row (`store::twins`): `reported` (already read by
/// the properties API) with its version and `$metadata`, and the desired document likewise. A
/// device's twin goes with its row.
const DEVICES_REPORTED_VERSION: &str =
    "ALTER TABLE devices ADD COLUMN reported_version INTEGER NOT NULL DEFAULT 1";
const DEVICES_REPORTED_METADATA: &str =
    "ALTER TABLE devices ADD COLUMN reported_metadata TEXT NOT NULL DEFAULT '{}'";
const DEVICES_DESIRED: &str = "ALTER TABLE devices ADD COLUMN desired TEXT NOT NULL DEFAULT '{}'";
const DEVICES_DESIRED_VERSION: &str =
    "ALTER TABLE devices ADD COLUMN desired_version INTEGER NOT NULL DEFAULT 1";
const DEVICES_DESIRED_METADATA: &str =
    "ALTER TABLE devices ADD COLUMN desired_metadata TEXT NOT NULL DEFAULT '{}'";

/// What happened to devices besides telemetry, for the export issue (`store::device_events`):
/// property changes (reported, desired, cloud) and command executions, appended in the same
/// transaction as the change. `seq` only grows and is never reused (AUTOINCREMENT), so an
/// exporter pages by the last `seq` it saw. `at` is Unix milliseconds; `body` a JSON object.
const DEVICE_EVENTS_TABLE: &str = "CREATE TABLE device_events (\
     seq INTEGER PRIMARY KEY AUTOINCREMENT, \
     at INTEGER NOT NULL, \
     device_id TEXT NOT NULL, \
     kind TEXT NOT NULL, \
     body TEXT NOT NULL)";

/// Every command execution, answered or failed (`store::commands`): `component` is `''` for
/// the root Interface; `request`, `response` JSON text or NULL; `response_code` the device's
/// status or the HTTP status of the failure; `outcome` what came of it
/// (`command::Outcome::as_str`). `seq` orders the history (newest first) and pages it.
const COMMAND_HISTORY_TABLE: &str = "CREATE TABLE command_history (\
     seq INTEGER PRIMARY KEY AUTOINCREMENT, \
     id TEXT NOT NULL UNIQUE, \
     device_id TEXT NOT NULL, \
     component TEXT NOT NULL, \
     name TEXT NOT NULL, \
     executed_at INTEGER NOT NULL, \
     connection_timeout INTEGER NOT NULL, \
     response_timeout INTEGER NOT NULL, \
     request TEXT, \
     response TEXT, \
     response_code INTEGER NOT NULL, \
     outcome TEXT NOT NULL)";

/// One command's history is one range of this index, newest first.
const COMMAND_HISTORY_BY_COMMAND: &str =
    "CREATE INDEX command_history_by_command ON command_history (device_id, component, name, seq)";

/// Cloud-to-device messages (`store::c2d`): `payload` the JSON the operator sent (for the
/// REST view), `body` the text the device receives, `properties` a JSON array of
/// `[name, value]` pairs; times Unix milliseconds; `delivered_at` set when the device
/// acknowledged it. Rows go when they expire, delivered or not (the tick prunes them).
const C2D_MESSAGES_TABLE: &str = "CREATE TABLE c2d_messages (\
     seq INTEGER PRIMARY KEY AUTOINCREMENT, \
     id TEXT NOT NULL UNIQUE, \
     device_id TEXT NOT NULL, \
     enqueued_at INTEGER NOT NULL, \
     expires_at INTEGER NOT NULL, \
     payload TEXT NOT NULL, \
     body TEXT NOT NULL, \
     content_type TEXT NOT NULL, \
     content_encoding TEXT NOT NULL, \
     properties TEXT NOT NULL, \
     delivered_at INTEGER)";

/// A device's queue, oldest first, is one range of this index.
const C2D_MESSAGES_BY_DEVICE: &str =
    "CREATE INDEX c2d_messages_by_device ON c2d_messages (device_id, seq)";

/// The tick finds expired rows without a scan.
const C2D_MESSAGES_BY_EXPIRY: &str =
    "CREATE INDEX c2d_messages_by_expiry ON c2d_messages (expires_at)";

/// Hourly summaries of numeric telemetry (`store::rollups`), so aggregates over long ranges
/// read one row per device, hour and field instead of every message. `hour` is the hour's
/// start (Unix ms), `component` `''` for the root; `n` counts messages carrying the field
/// (non-null), `n_num` those where it is a number, `sum`/`lo`/`hi` over the numbers. `sum`,
/// `lo` and `hi` have no declared type so integers stay integers, as in the raw rows.
const TELEMETRY_ROLLUPS_TABLE: &str = "CREATE TABLE telemetry_rollups (\
     device_id TEXT NOT NULL, \
     hour INTEGER NOT NULL, \
     component TEXT NOT NULL, \
     field TEXT NOT NULL, \
     n INTEGER NOT NULL, \
     n_num INTEGER NOT NULL, \
     sum, \
     lo, \
     hi, \
     PRIMARY KEY (device_id, hour, component, field)) WITHOUT ROWID";

/// Per device, the hours `[from_hour, through)` whose rollups equal its compacted rows.
const TELEMETRY_ROLLUP_STATE_TABLE: &str = "CREATE TABLE telemetry_rollup_state (\
     device_id TEXT PRIMARY KEY, \
     from_hour INTEGER NOT NULL, \
     through INTEGER NOT NULL) WITHOUT ROWID";

/// The schema version this build migrates databases to.
pub const LATEST_SCHEMA_VERSION: SchemaVersion = SchemaVersion(MIGRATIONS.len() as u32);

/// A value of `PRAGMA user_version`: how many migrations a database has had applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaVersion(pub u32);

/// What one call to [`migrate`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// The version the database is at now; always [`LATEST_SCHEMA_VERSION`] on success.
    pub schema_version: SchemaVersion,
    /// How many migrations this call applied; 0 when the database was already up to date,
    /// including when a concurrent caller applied them first.
    pub n_applied: u32,
}

/// One schema change: statements run in order, in one transaction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    /// Short and stable; it appears in errors and in `gyre_meta`.
    pub(crate) name: &'static str,
    pub(crate) statements: &'static [&'static str],
}

/// Brings the database up to [`LATEST_SCHEMA_VERSION`]. `now` is recorded in `gyre_meta` as the
/// schema's creation time (once) and as each applied migration's time.
pub fn migrate<S: Sql>(sql: &mut S, now: Timestamp) -> Result<Migrated, StoreError> {
    migrate_with(sql, MIGRATIONS, now)
}

/// [`migrate`] over any list, so tests can append migrations that fail or race. The first
/// entry must create `gyre_meta`, as the real list's does.
pub(crate) fn migrate_with<S: Sql>(
    sql: &mut S,
    migrations: &[Migration],
    now: Timestamp,
) -> Result<Migrated, StoreError> {
    let latest = migrations.len() as u32;
    let found = read_schema_version(sql)?.0;
    check_not_newer(found, latest)?;

    let mut n_applied = 0;
    for (migration, version) in migrations.iter().zip(1u32..).skip(found as usize) {
        let applied = sql.transaction(|tx| {
            // Another instance may have applied this migration between our first read and
            // acquiring the write lock; only this read, under the lock, decides.
            let current = read_schema_version(tx)?.0;
            check_not_newer(current, latest)?;
            if current >= version {
                return Ok(false);
            }
            apply(tx, migration, version, now).map_err(|source| StoreError::Migration {
                version,
                name: migration.name,
                source: Box::new(source),
            })?;
            Ok::<bool, StoreError>(true)
        })?;
        n_applied += u32::from(applied);
    }
    Ok(Migrated {
        schema_version: SchemaVersion(latest),
        n_applied,
    })
}

/// Reads `PRAGMA user_version`.
pub(crate) fn read_schema_version<S: Sql>(sql: &mut S) -> Result<SchemaVersion, StoreError> {
    const STATEMENT: &str = "PRAGMA user_version";
    let rows = sql.execute(STATEMENT, &[])?;
    let value =
        rows.scalar()
            .and_then(Value::as_integer)
            .ok_or_else(|| StoreError::UnexpectedResult {
                statement: STATEMENT,
                detail: format!("{rows:?}"),
            })?;
    u32::try_from(value)
        .map(SchemaVersion)
        .map_err(|_| StoreError::UnexpectedResult {
            statement: STATEMENT,
            detail: format!("version {value} is out of range"),
        })
}

fn check_not_newer(found: u32, supported: u32) -> Result<(), StoreError> {
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    Ok(())
}

/// Runs one migration's statements and bookkeeping; the caller holds the transaction.
fn apply<S: Sql>(
    tx: &mut S,
    migration: &Migration,
    version: u32,
    now: Timestamp,
) -> Result<(), StoreError> {
    for statement in migration.statements {
        tx.execute(statement, &[])?;
    }
    let now = Value::Text(now.to_rfc3339());
    tx.execute(
        "INSERT INTO gyre_meta (key, value) VALUES ('schema.created_at', ?1) \
         ON CONFLICT (key) DO NOTHING",
        std::slice::from_ref(&now),
    )?;
    tx.execute(
        "INSERT INTO gyre_meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[Value::Text(format!("migration.{version}.applied_at")), now],
    )?;
    // PRAGMA arguments cannot be bound parameters; `version` is an integer, so formatting it
    // into the statement is safe.
    tx.execute(&format!("PRAGMA user_version = {version}"), &[])?;
    Ok(())
}

// Last known values, one row per (device, component) instead of one per field (migration
// `last_values_per_component`): a batch from 100 devices sending six fields writes 100 rows, not
// 600, and ingest holds SQLite's one write lock that much shorter. `fields` is a JSON object
// `{"<name>": [<value>, <enqueued_at>]}`; `at` is the newest of those times. Written by
// `store::telemetry` (a newer batch's fields override, an older one's only fill in names not
// seen yet), read with `json_each`.
const LAST_VALUES_PER_COMPONENT_TABLE: &str = "CREATE TABLE last_values_per_component (\
     device_id TEXT NOT NULL, \
     component TEXT NOT NULL, \
     fields TEXT NOT NULL, \
     at INTEGER NOT NULL, \
     PRIMARY KEY (device_id, component)) WITHOUT ROWID";
const LAST_VALUES_PER_COMPONENT_COPY: &str = "INSERT INTO last_values_per_component \
     (device_id, component, fields, at) \
     SELECT device_id, component, \
     json_group_object(name, json_array(json(value), enqueued_at)), max(enqueued_at) \
     FROM last_values GROUP BY device_id, component";
const LAST_VALUES_PER_FIELD_DROP: &str = "DROP TABLE last_values";
const LAST_VALUES_PER_COMPONENT_RENAME: &str =
    "ALTER TABLE last_values_per_component RENAME TO last_values";

/// The names of a last-values row's fields, so that ingest replaces the object whole when a
/// batch brings the same names instead of merging JSON (`store::telemetry`). NULL: not known
/// yet (rows from before, or after a merge that added names the batch did not send).
const LAST_VALUES_NAMES: &str = "ALTER TABLE last_values ADD COLUMN names TEXT";
