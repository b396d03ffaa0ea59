//! The `devices` table: insert, get, update, delete and list devices, and the template
//! existence check a device's `template` needs.
//!
//! This module writes the registry's columns only (`display_name`, `template`, the flags,
//! `organization`, the individual keys, times); `cloud_properties` and `reported` belong to the
//! property and ingest code and are never touched here. Booleans are stored as 0/1, times as
//! Unix milliseconds, a device without individual enrollment has NULL keys.
//!
//! Listing with `$filter`/`$orderby` builds its statement from fixed fragments only: field
//! names map to column names here, and every value is a bound parameter.

use super::{Rows, Sql, StoreError, Value};
use crate::auth::OrganizationId;
use crate::device::{
    Condition, Device, DeviceCursor, DeviceId, DeviceQuery, FilterField, FilterValue, OrderBy,
};
use crate::dtdl::Dtmi;
use crate::enrollment::{SymmetricKey, SymmetricKeys};
use crate::time::Timestamp;

pub use super::Inserted;

/// The columns [`devices_from_rows`] maps, for every query that reads whole devices.
pub(crate) const COLUMNS: &str =
    "id, etag, display_name, template, enabled, provisioned, simulated, \
     organization, primary_key, secondary_key, approved";

/// Whether a device template with this id is published. (Checked here rather than through
/// `store::device_templates` so the device rules depend on nothing but the table.)
pub fn template_exists<S: Sql>(sql: &mut S, template: &Dtmi) -> Result<bool, StoreError> {
    let rows = sql.execute(
        "SELECT 1 FROM device_templates WHERE id = ?1",
        &[Value::Text(template.as_str().to_owned())],
    )?;
    Ok(!rows.rows.is_empty())
}

/// Stores a new device unless its id is taken.
pub fn insert<S: Sql>(
    sql: &mut S,
    device: &Device,
    now: Timestamp,
) -> Result<Inserted, StoreError> {
    const INSERT: &str = "INSERT INTO devices (id, etag, display_name, template, enabled, \
         provisioned, simulated, organization, primary_key, secondary_key, approved, \
         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12) \
         ON CONFLICT (id) DO NOTHING RETURNING id";
    let mut params = device_params(device);
    params.push(Value::Integer(now.unix_millis()));
    let rows = sql.execute(INSERT, &params)?;
    Ok(Inserted::from_returning(&rows))
}

/// The device stored under `id`, if any.
pub fn get<S: Sql>(sql: &mut S, id: &DeviceId) -> Result<Option<Device>, StoreError> {
    const GET: &str = "SELECT id, etag, display_name, template, enabled, provisioned, \
         simulated, organization, primary_key, secondary_key, approved FROM devices WHERE id = ?1";
    let rows = sql.execute(GET, &[Value::Text(id.as_str().to_owned())])?;
    Ok(devices_from_rows(GET, rows)?.pop())
}

/// The keys `device` connects with ([`Device::connection_keys`]): its own, or those derived
/// from the enrollment group it would provision through (the first enabled one), read only
/// when it has no keys: what `/credentials` shows.
pub fn connection_keys<S: Sql>(
    sql: &mut S,
    device: &Device,
) -> Result<Option<SymmetricKeys>, StoreError> {
    let group = match device.keys {
        Some(_) => None,
        None => super::enrollment_groups::default_group(sql)?,
    };
    Ok(device.connection_keys(group.as_ref()))
}

/// Replaces the registry columns of the device `device.id` (etag included). `false` when
/// there is no such device.
pub fn update<S: Sql>(sql: &mut S, device: &Device, now: Timestamp) -> Result<bool, StoreError> {
    const UPDATE: &str = "UPDATE devices SET etag = ?2, display_name = ?3, template = ?4, \
         enabled = ?5, provisioned = ?6, simulated = ?7, organization = ?8, primary_key = ?9, \
         secondary_key = ?10, approved = ?11, updated_at = ?12 WHERE id = ?1 RETURNING id";
    let mut params = device_params(device);
    params.push(Value::Integer(now.unix_millis()));
    let rows = sql.execute(UPDATE, &params)?;
    Ok(!rows.rows.is_empty())
}

/// Deletes the device `id`. `false` when there was no such device.
pub fn delete<S: Sql>(sql: &mut S, id: &DeviceId) -> Result<bool, StoreError> {
    const DELETE: &str = "DELETE FROM devices WHERE id = ?1 RETURNING id";
    let rows = sql.execute(DELETE, &[Value::Text(id.as_str().to_owned())])?;
    Ok(!rows.rows.is_empty())
}

/// Up to `limit` devices in id order, starting after `after` (keyset paging).
pub fn list<S: Sql>(
    sql: &mut S,
    after: Option<&DeviceId>,
    limit: u32,
) -> Result<Vec<Device>, StoreError> {
    let query = DeviceQuery {
        after: after.cloned().map(DeviceCursor::Id),
        ..DeviceQuery::default()
    };
    query_devices(sql, &query, limit)
}

/// Up to `limit` devices matching `query`'s conditions, in its order, after its cursor.
pub fn query_devices<S: Sql>(
    sql: &mut S,
    query: &DeviceQuery,
    limit: u32,
) -> Result<Vec<Device>, StoreError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    for condition in &query.conditions {
        clauses.push(condition_sql(condition, params.len() + 1));
        params.push(filter_value(&condition.value));
    }
    let comparison = if query.descending { "<" } else { ">" };
    match &query.after {
        None => {}
        Some(DeviceCursor::Id(id)) => {
            clauses.push(format!("id {comparison} ?{}", params.len() + 1));
            params.push(Value::Text(id.as_str().to_owned()));
        }
        Some(DeviceCursor::DisplayName { display_name, id }) => {
            let n = params.len();
            clauses.push(format!(
                "(display_name, id) {comparison} (?{}, ?{})",
                n + 1,
                n + 2
            ));
            params.push(Value::Text(display_name.clone()));
            params.push(Value::Text(id.as_str().to_owned()));
        }
    }
    let direction = if query.descending { "DESC" } else { "ASC" };
    let order = match query.order_by {
        OrderBy::Id => format!("id {direction}"),
        OrderBy::DisplayName => format!("display_name {direction}, id {direction}"),
    };
    let where_clause = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    let statement = format!(
        "SELECT {COLUMNS} FROM devices{where_clause} ORDER BY {order} LIMIT ?{}",
        params.len() + 1
    );
    params.push(Value::Integer(i64::from(limit)));
    let rows = sql.execute(&statement, &params)?;
    devices_from_rows("SELECT ... FROM devices (listing)", rows)
}

/// `column IS ?n` or `column IS NOT ?n`: SQLite's null-safe comparison, so `template ne 'x'`
/// keeps unassigned devices and `template eq null` finds them.
fn condition_sql(condition: &Condition, param_idx: usize) -> String {
    let column = match condition.field {
        FilterField::Id => "id",
        FilterField::DisplayName => "display_name",
        FilterField::Template => "template",
        FilterField::Enabled => "enabled",
        FilterField::Provisioned => "provisioned",
        FilterField::Simulated => "simulated",
    };
    let operator = if condition.equal { "IS" } else { "IS NOT" };
    format!("{column} {operator} ?{param_idx}")
}

fn filter_value(value: &FilterValue) -> Value {
    match value {
        FilterValue::Text(text) => Value::Text(text.clone()),
        FilterValue::Bool(flag) => Value::Integer(i64::from(*flag)),
        FilterValue::Null => Value::Null,
    }
}

/// `?1..?11` in [`COLUMNS`] order.
fn device_params(device: &Device) -> Vec<Value> {
    let text_or_null =
        |text: Option<&str>| text.map_or(Value::Null, |text| Value::Text(text.to_owned()));
    vec![
        Value::Text(device.id.as_str().to_owned()),
        Value::Text(device.etag.clone()),
        Value::Text(device.display_name.clone()),
        text_or_null(device.template.as_ref().map(Dtmi::as_str)),
        Value::Integer(i64::from(device.enabled)),
        Value::Integer(i64::from(device.provisioned)),
        Value::Integer(i64::from(device.simulated)),
        text_or_null(device.organization.as_ref().map(OrganizationId::as_str)),
        text_or_null(device.keys.as_ref().map(|keys| keys.primary.as_str())),
        text_or_null(device.keys.as_ref().map(|keys| keys.secondary.as_str())),
        Value::Integer(i64::from(device.approved)),
    ]
}

pub(crate) fn devices_from_rows(
    statement: &'static str,
    rows: Rows,
) -> Result<Vec<Device>, StoreError> {
    rows.rows
        .into_iter()
        .map(|row| {
            device_from_row(row)
                .map_err(|detail| StoreError::UnexpectedResult { statement, detail })
        })
        .collect()
}

/// Maps [`COLUMNS`]; a row this code did not write is an error naming what is wrong.
fn device_from_row(row: Vec<Value>) -> Result<Device, String> {
    let [id, etag, display_name, template, enabled, provisioned, simulated, organization, primary_key, secondary_key, approved]: [Value; 11] =
        row.try_into()
            .map_err(|row: Vec<Value>| format!("expected 11 columns, got {}", row.len()))?;
    let id = match &id {
        Value::Text(text) => {
            DeviceId::parse(text).map_err(|error| format!("id `{text}`: {error}"))?
        }
        other => return Err(format!("id: not text: {other:?}")),
    };
    let text = |value: Value, column: &str| match value {
        Value::Text(text) => Ok(Some(text)),
        Value::Null => Ok(None),
        other => Err(format!("{column} of device `{id}`: not text: {other:?}")),
    };
    let required = |value: Value, column: &str| {
        text(value, column)?.ok_or_else(|| format!("{column} of device `{id}`: null"))
    };
    let flag = |value: Value, column: &str| match value.as_integer() {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        _ => Err(format!("{column} of device `{id}`: not 0 or 1: {value:?}")),
    };
    let template = text(template, "template")?
        .map(|raw| Dtmi::parse(&raw).map_err(|error| format!("template of device `{id}`: {error}")))
        .transpose()?;
    let organization = text(organization, "organization")?
        .map(|raw| {
            OrganizationId::parse(&raw)
                .map_err(|error| format!("organization of device `{id}`: {error}"))
        })
        .transpose()?;
    let key = |raw: String, column: &str| {
        SymmetricKey::parse(&raw).map_err(|error| format!("{column} of device `{id}`: {error}"))
    };
    let keys = match (
        text(primary_key, "primary_key")?,
        text(secondary_key, "secondary_key")?,
    ) {
        (None, None) => None,
        (Some(primary), Some(secondary)) => Some(SymmetricKeys {
            primary: key(primary, "primary_key")?,
            secondary: key(secondary, "secondary_key")?,
        }),
        _ => return Err(format!("keys of device `{id}`: only one of the two is set")),
    };
    Ok(Device {
        etag: required(etag, "etag")?,
        display_name: required(display_name, "display_name")?,
        template,
        enabled: flag(enabled, "enabled")?,
        provisioned: flag(provisioned, "provisioned")?,
        simulated: flag(simulated, "simulated")?,
        approved: flag(approved, "approved")?,
        organization,
        keys,
        id,
    })
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use super::*;
    use crate::store::{migrate, RusqliteSql};

    const NOW: i64 = 1_764_161_225_120;

    fn migrated() -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, Timestamp::from_unix_millis(NOW)).unwrap();
        sql
    }

    fn device(id: &str, display_name: &str) -> Device {
        Device {
            id: DeviceId::parse(id).unwrap(),
            etag: format!("\"{id}\""),
            display_name: display_name.to_owned(),
            template: None,
            enabled: true,
            provisioned: false,
            simulated: false,
            approved: true,
            organization: None,
            keys: Some(SymmetricKeys::from_random([id.len() as u8; 64])),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_unix_millis(NOW)
    }

    #[test]
    fn devices_round_trip_and_ids_are_never_overwritten() {
        let mut sql = migrated();
        let mut full = device("d'1", "Thermostat");
        full.template = Some(Dtmi::parse("dtmi:com:example:Thermostat;1").unwrap());
        full.simulated = true;
        full.organization = Some(OrganizationId::parse("seattle").unwrap());
        assert_eq!(insert(&mut sql, &full, now()).unwrap(), Inserted::Created);
        assert_eq!(get(&mut sql, &full.id).unwrap(), Some(full.clone()));

        let mut bare = device("d2", "d2");
        bare.keys = None;
        insert(&mut sql, &bare, now()).unwrap();
        assert_eq!(get(&mut sql, &bare.id).unwrap(), Some(bare));

        let other = device("d'1", "Other");
        assert_eq!(
            insert(&mut sql, &other, now()).unwrap(),
            Inserted::AlreadyExists
        );
        assert_eq!(get(&mut sql, &full.id).unwrap(), Some(full));
        assert_eq!(
            get(&mut sql, &DeviceId::parse("nope").unwrap()).unwrap(),
            None
        );
    }

    #[test]
    fn update_and_delete_report_whether_the_device_existed() {
        let mut sql = migrated();
        let mut d1 = device("d1", "One");
        assert!(!update(&mut sql, &d1, now()).unwrap());
        insert(&mut sql, &d1, now()).unwrap();
        sql.execute("UPDATE devices SET reported = '{\"a\":1}'", &[])
            .unwrap();
        d1.etag = "\"e2\"".into();
        d1.enabled = false;
        d1.keys = None;
        assert!(update(&mut sql, &d1, now()).unwrap());
        assert_eq!(get(&mut sql, &d1.id).unwrap(), Some(d1.clone()));
        // Properties are not this module's to touch.
        let reported = sql.execute("SELECT reported FROM devices", &[]).unwrap();
        assert_eq!(reported.scalar(), Some(&Value::Text("{\"a\":1}".into())));
        assert!(delete(&mut sql, &d1.id).unwrap());
        assert!(!delete(&mut sql, &d1.id).unwrap());
        assert_eq!(get(&mut sql, &d1.id).unwrap(), None);
    }

    #[test]
    fn template_existence_is_read_from_the_templates_table() {
        let mut sql = migrated();
        let dtmi = Dtmi::parse("dtmi:com:example:Thermostat;1").unwrap();
        assert!(!template_exists(&mut sql, &dtmi).unwrap());
        sql.execute(
            "INSERT INTO device_templates (id, etag, types, capability_model, created_at, \
             updated_at) VALUES (?1, 'e', '[]', '{}', 0, 0)",
            &[Value::Text(dtmi.as_str().to_owned())],
        )
        .unwrap();
        assert!(template_exists(&mut sql, &dtmi).unwrap());
    }

    fn loaded() -> RusqliteSql {
        let mut sql = migrated();
        let thermostat = Dtmi::parse("dtmi:com:example:Thermostat;1").unwrap();
        for (id, name, template, enabled, simulated) in [
            ("a", "Kitchen", true, true, false),
            ("b", "attic", false, true, true),
            ("c", "Kitchen", true, false, false),
            ("d", "Bedroom", true, true, true),
            ("e", "O'Brien", false, false, false),
        ] {
            let mut device = device(id, name);
            device.template = template.then(|| thermostat.clone());
            device.enabled = enabled;
            device.simulated = simulated;
            insert(&mut sql, &device, now()).unwrap();
        }
        sql
    }

    fn ids(devices: &[Device]) -> Vec<&str> {
        devices.iter().map(|device| device.id.as_str()).collect()
    }

    fn check(filter: Option<&str>, order_by: Option<&str>, expected: &[&str]) {
        let mut sql = loaded();
        let query = DeviceQuery::parse(filter, order_by, None).unwrap();
        let all = query_devices(&mut sql, &query, 100).unwrap();
        assert_eq!(ids(&all), expected, "{filter:?} {order_by:?}");
        // Paging by two with the cursor finds the same rows in the same order.
        let mut paged = Vec::new();
        let mut query = query;
        loop {
            let page = query_devices(&mut sql, &query, 2).unwrap();
            let Some(last) = page.last() else { break };
            query.after = Some(DeviceCursor::after_row(
                query.order_by,
                &last.id,
                &last.display_name,
            ));
            let done = page.len() < 2;
            paged.extend(page);
            if done {
                break;
            }
        }
        assert_eq!(ids(&paged), expected, "paged {filter:?} {order_by:?}");
    }

    #[test]
    fn listings_filter_order_and_page() {
        check(None, None, &["a", "b", "c", "d", "e"]);
        check(None, Some("id desc"), &["e", "d", "c", "b", "a"]);
        check(None, Some("displayName"), &["d", "a", "c", "e", "b"]);
        check(None, Some("displayName desc"), &["b", "e", "c", "a", "d"]);
        check(Some("displayName eq 'Kitchen'"), None, &["a", "c"]);
        check(Some("displayName eq 'O''Brien'"), None, &["e"]);
        check(Some("template eq null"), None, &["b", "e"]);
        check(
            Some("template ne 'dtmi:com:example:Thermostat;1'"),
            None,
            &["b", "e"],
        );
        check(
            Some("template eq 'dtmi:com:example:Thermostat;1' and enabled eq true"),
            None,
            &["a", "d"],
        );
        check(
            Some("simulated eq true and id ne 'b'"),
            Some("displayName desc"),
            &["d"],
        );
        check(Some("provisioned eq true"), None, &[]);
        check(Some("id eq ''' OR 1=1 --'"), None, &[]);
    }

    #[test]
    fn list_pages_in_id_order() {
        let mut sql = loaded();
        assert_eq!(ids(&list(&mut sql, None, 2).unwrap()), ["a", "b"]);
        let after = DeviceId::parse("b").unwrap();
        assert_eq!(
            ids(&list(&mut sql, Some(&after), 10).unwrap()),
            ["c", "d", "e"]
        );
        assert_eq!(ids(&list(&mut sql, None, 0).unwrap()), Vec::<&str>::new());
    }

    #[test]
    fn rows_this_code_did_not_write_are_errors_not_panics() {
        let check = |set: &str, expected: &str| {
            let mut sql = migrated();
            insert(&mut sql, &device("d1", "x"), now()).unwrap();
            sql.execute(&format!("UPDATE devices SET {set}"), &[])
                .unwrap();
            let error = get(&mut sql, &DeviceId::parse("d1").unwrap()).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        };
        check("enabled = 2", "enabled of device `d1`: not 0 or 1");
        check("template = 'nope'", "template of device `d1`");
        check("primary_key = NULL", "only one of the two is set");
        check("secondary_key = 'short'", "secondary_key of device `d1`");
        check("organization = '-x'", "organization of device `d1`");
    }
}
