//! The `device_groups` table: insert, update, get, list, delete; and [`members`], which runs a
//! group's filter against the `devices` table at that moment.
//!
//! A row holds the group id, etag, display name, description, the filter as the client wrote
//! it, the one organization (or NULL), and creation and update times in Unix milliseconds.
//! Reading a row parses the filter again (see `GroupContent::from_stored`).
//!
//! The rules (what a valid group is) are in `group`; the filter's SQL is compiled by
//! `query::DeviceFilter::to_sql`, whose fragment uses anonymous `?` parameters only, so
//! [`members`] uses anonymous `?` throughout and binds in textual order.

use super::{devices, Rows, Sql, StoreError, Value};
use crate::auth::OrganizationId;
use crate::device::Device;
use crate::group::{DeviceGroup, DeviceGroupId, GroupContent};
use crate::query::DeviceFilter;
use crate::time::Timestamp;

pub use super::Inserted;

/// Stores a new group unless its id is taken.
pub fn insert<S: Sql>(sql: &mut S, group: &DeviceGroup) -> Result<Inserted, StoreError> {
    const INSERT: &str = "INSERT INTO device_groups (id, etag, display_name, description, \
         filter, organization, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING RETURNING id";
    let content = group.content();
    let rows = sql.execute(
        INSERT,
        &[
            text(group.id().as_str()),
            text(group.etag()),
            text(content.display_name()),
            optional_text(content.description()),
            text(content.filter_text()),
            optional_text(content.organization().map(OrganizationId::as_str)),
            Value::Integer(group.created_at().unix_millis()),
            Value::Integer(group.updated_at().unix_millis()),
        ],
    )?;
    Ok(Inserted::from_returning(&rows))
}

/// Overwrites the stored group with the same id (its creation time is kept). `false` when
/// there is no such group.
pub fn update<S: Sql>(sql: &mut S, group: &DeviceGroup) -> Result<bool, StoreError> {
    const UPDATE: &str = "UPDATE device_groups SET etag = ?2, display_name = ?3, \
         description = ?4, filter = ?5, organization = ?6, updated_at = ?7 \
         WHERE id = ?1 RETURNING id";
    let content = group.content();
    let rows = sql.execute(
        UPDATE,
        &[
            text(group.id().as_str()),
            text(group.etag()),
            text(content.display_name()),
            optional_text(content.description()),
            text(content.filter_text()),
            optional_text(content.organization().map(OrganizationId::as_str)),
            Value::Integer(group.updated_at().unix_millis()),
        ],
    )?;
    Ok(!rows.rows.is_empty())
}

/// The group `id`, if any.
pub fn get<S: Sql>(sql: &mut S, id: &DeviceGroupId) -> Result<Option<DeviceGroup>, StoreError> {
    const GET: &str = "SELECT id, etag, display_name, description, filter, organization, \
         created_at, updated_at FROM device_groups WHERE id = ?1";
    let rows = sql.execute(GET, &[text(id.as_str())])?;
    Ok(groups_from_rows(GET, rows)?.pop())
}

/// Up to `limit` groups in id order, starting after `after` (keyset paging).
pub fn list<S: Sql>(
    sql: &mut S,
    after: Option<&DeviceGroupId>,
    limit: u32,
) -> Result<Vec<DeviceGroup>, StoreError> {
    const FIRST_PAGE: &str = "SELECT id, etag, display_name, description, filter, \
         organization, created_at, updated_at FROM device_groups ORDER BY id LIMIT ?1";
    const NEXT_PAGE: &str = "SELECT id, etag, display_name, description, filter, \
         organization, created_at, updated_at FROM device_groups WHERE id > ?1 \
         ORDER BY id LIMIT ?2";
    let limit = Value::Integer(i64::from(limit));
    match after {
        None => {
            let rows = sql.execute(FIRST_PAGE, &[limit])?;
            groups_from_rows(FIRST_PAGE, rows)
        }
        Some(after) => {
            let rows = sql.execute(NEXT_PAGE, &[text(after.as_str()), limit])?;
            groups_from_rows(NEXT_PAGE, rows)
        }
    }
}

/// Deletes the group `id`. `false` when there was none. Devices are not touched: membership
/// is never stored.
pub fn delete<S: Sql>(sql: &mut S, id: &DeviceGroupId) -> Result<bool, StoreError> {
    const DELETE: &str = "DELETE FROM device_groups WHERE id = ?1 RETURNING id";
    let rows = sql.execute(DELETE, &[text(id.as_str())])?;
    Ok(!rows.rows.is_empty())
}

/// Up to `limit` devices that match `filter` now, in id order, starting after the device id
/// `after` (keyset paging; any text works as a bound, so a stale cursor is harmless).
pub fn members<S: Sql>(
    sql: &mut S,
    filter: &DeviceFilter,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Device>, StoreError> {
    const STATEMENT: &str = "SELECT ... FROM devices WHERE <group filter> (members)";
    let compiled = filter.to_sql();
    let mut statement = format!(
        "SELECT {} FROM devices WHERE ({})",
        devices::COLUMNS,
        compiled.where_sql
    );
    let mut params = compiled.params;
    if let Some(after) = after {
        statement.push_str(" AND id > ?");
        params.push(text(after));
    }
    statement.push_str(" ORDER BY id LIMIT ?");
    params.push(Value::Integer(i64::from(limit)));
    let rows = sql.execute(&statement, &params)?;
    devices::devices_from_rows(STATEMENT, rows)
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn optional_text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, text)
}

fn groups_from_rows(statement: &'static str, rows: Rows) -> Result<Vec<DeviceGroup>, StoreError> {
    rows.rows
        .into_iter()
        .map(|row| {
            group_from_row(row).map_err(|detail| StoreError::UnexpectedResult { statement, detail })
        })
        .collect()
}

/// Maps `id, etag, display_name, description, filter, organization, created_at, updated_at`;
/// a row this code did not write is an error naming what is wrong, never a panic.
fn group_from_row(row: Vec<Value>) -> Result<DeviceGroup, String> {
    let [id, etag, display_name, description, filter, organization, created_at, updated_at]: [Value;
        8] = row
        .try_into()
        .map_err(|row: Vec<Value>| format!("expected 8 columns, got {}", row.len()))?;
    let id = match &id {
        Value::Text(raw) => {
            DeviceGroupId::parse(raw).map_err(|error| format!("id `{raw}`: {error}"))?
        }
        other => return Err(format!("id: not text: {other:?}")),
    };
    let required_text = |value: Value, column: &str| match value {
        Value::Text(text) => Ok(text),
        other => Err(format!("{column} of group `{id}`: not text: {other:?}")),
    };
    let optional_text = |value: Value, column: &str| match value {
        Value::Null => Ok(None),
        Value::Text(text) => Ok(Some(text)),
        other => Err(format!("{column} of group `{id}`: not text: {other:?}")),
    };
    let millis = |value: &Value, column: &str| {
        value
            .as_integer()
            .map(Timestamp::from_unix_millis)
            .ok_or_else(|| format!("{column} of group `{id}`: not an integer"))
    };
    let organization = optional_text(organization, "organization")?
        .map(|raw| {
            OrganizationId::parse(&raw)
                .map_err(|error| format!("organization of group `{id}`: {error}"))
        })
        .transpose()?;
    let content = GroupContent::from_stored(
        required_text(display_name, "display_name")?,
        optional_text(description, "description")?,
        required_text(filter, "filter")?,
        organization,
    )
    .map_err(|error| format!("filter of group `{id}`: {error}"))?;
    Ok(DeviceGroup::from_stored(
        id.clone(),
        required_text(etag, "etag")?,
        content,
        millis(&created_at, "created_at")?,
        millis(&updated_at, "updated_at")?,
    ))
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::device::DeviceBody;
    use crate::query::parse_device_filter;
    use crate::store::{migrate, RusqliteSql};

    const NOW: i64 = 1_764_161_225_120;
    const THERMOSTAT: &str = "dtmi:com:example:Thermostat;1";

    fn migrated() -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, Timestamp::from_unix_millis(NOW)).unwrap();
        sql
    }

    fn group(id: &str, filter: &str) -> DeviceGroup {
        let id = DeviceGroupId::parse(id).unwrap();
        let body = json!({"displayName": format!("Group {id}"), "filter": filter, "organizations": ["seattle"]});
        let content = GroupContent::parse(&id, &body).unwrap();
        DeviceGroup::create(id, content, "e1".into(), Timestamp::from_unix_millis(NOW))
    }

    /// (id, display name, template, simulated, cloud properties)
    fn add_device(sql: &mut RusqliteSql, device: (&str, &str, Option<&str>, bool, &str)) {
        let (id, display_name, template, simulated, cloud_properties) = device;
        sql.execute(
            "INSERT INTO devices (id, etag, display_name, template, enabled, provisioned, \
             simulated, organization, cloud_properties, created_at, updated_at) \
             VALUES (?1, 'etag', ?2, ?3, 1, 0, ?4, NULL, ?5, 0, 0)",
            &[
                Value::Text(id.into()),
                Value::Text(display_name.into()),
                template.map_or(Value::Null, |t| Value::Text(t.into())),
                Value::Integer(i64::from(simulated)),
                Value::Text(cloud_properties.into()),
            ],
        )
        .unwrap();
    }

    #[test]
    fn groups_round_trip_list_and_delete() {
        let mut sql = migrated();
        let g2 = group("g2", "SELECT * FROM devices");
        let g1 = group("g1", "SELECT * FROM devices WHERE $simulated = true");
        assert_eq!(insert(&mut sql, &g2).unwrap(), Inserted::Created);
        assert_eq!(insert(&mut sql, &g1).unwrap(), Inserted::Created);
        assert_eq!(insert(&mut sql, &g1).unwrap(), Inserted::AlreadyExists);
        assert_eq!(get(&mut sql, g1.id()).unwrap(), Some(g1.clone()));

        let ids = |groups: Vec<DeviceGroup>| -> Vec<String> {
            groups.iter().map(|g| g.id().to_string()).collect()
        };
        assert_eq!(ids(list(&mut sql, None, 10).unwrap()), ["g1", "g2"]);
        assert_eq!(ids(list(&mut sql, None, 1).unwrap()), ["g1"]);
        assert_eq!(ids(list(&mut sql, Some(g1.id()), 1).unwrap()), ["g2"]);
        assert_eq!(
            ids(list(&mut sql, Some(g2.id()), 1).unwrap()),
            Vec::<String>::new()
        );

        let changed = g1.replaced(
            GroupContent::parse(
                g1.id(),
                &json!({"displayName": "Renamed", "filter": "SELECT * FROM devices"}),
            )
            .unwrap(),
            "e2".into(),
            Timestamp::from_unix_millis(NOW + 5),
        );
        assert!(update(&mut sql, &changed).unwrap());
        assert_eq!(get(&mut sql, g1.id()).unwrap(), Some(changed));

        assert!(delete(&mut sql, g1.id()).unwrap());
        assert!(!delete(&mut sql, g1.id()).unwrap());
        assert_eq!(get(&mut sql, g1.id()).unwrap(), None);
    }

    #[test]
    fn members_are_evaluated_now_and_paged_in_id_order() {
        let mut sql = migrated();
        add_device(
            &mut sql,
            (
                "th-2",
                "Thermostat 2",
                Some(THERMOSTAT),
                true,
                r#"{"City": "Seattle"}"#,
            ),
        );
        add_device(
            &mut sql,
            ("th-1", "Thermostat 1", Some(THERMOSTAT), true, "{}"),
        );
        add_device(
            &mut sql,
            ("th-3", "Thermostat 3", Some(THERMOSTAT), false, "{}"),
        );
        add_device(
            &mut sql,
            ("s-1", "Sensor", None, true, r#"{"City": "Seattle"}"#),
        );
        let members_of = |sql: &mut RusqliteSql, filter: &str, after: Option<&str>, limit: u32| {
            let filter = parse_device_filter(filter).unwrap();
            members(sql, &filter, after, limit)
                .unwrap()
                .into_iter()
                .map(|device| device.id.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        let simulated_thermostats = "SELECT * FROM devices WHERE $template = 'dtmi:com:example:Thermostat;1' AND $simulated = true";
        assert_eq!(
            members_of(&mut sql, simulated_thermostats, None, 10),
            ["th-1", "th-2"]
        );
        assert_eq!(
            members_of(&mut sql, simulated_thermostats, None, 1),
            ["th-1"]
        );
        assert_eq!(
            members_of(&mut sql, simulated_thermostats, Some("th-1"), 1),
            ["th-2"]
        );
        assert_eq!(
            members_of(&mut sql, simulated_thermostats, Some("th-2"), 1),
            Vec::<String>::new()
        );
        assert_eq!(
            members_of(&mut sql, "SELECT * FROM devices", Some("s-1"), 10),
            ["th-1", "th-2", "th-3"]
        );
        assert_eq!(
            members_of(
                &mut sql,
                "SELECT * FROM devices WHERE City = 'Seattle'",
                None,
                10
            ),
            ["s-1", "th-2"]
        );
        assert_eq!(
            members_of(
                &mut sql,
                "SELECT * FROM devices WHERE $displayName = 'x'' OR 1=1 --'",
                None,
                10
            ),
            Vec::<String>::new()
        );
        // A cursor is only a bound: odd text cannot break out of the parameter.
        assert_eq!(
            members_of(&mut sql, "SELECT * FROM devices", Some("' OR 1=1 --"), 10).len(),
            4
        );

        // Membership follows the devices table at once.
        sql.execute("UPDATE devices SET simulated = 1 WHERE id = 'th-3'", &[])
            .unwrap();
        assert_eq!(
            members_of(&mut sql, simulated_thermostats, None, 10),
            ["th-1", "th-2", "th-3"]
        );

        let filter = parse_device_filter("SELECT * FROM devices WHERE $id = 's-1'").unwrap();
        let members: Vec<serde_json::Value> = members(&mut sql, &filter, None, 10)
            .unwrap()
            .iter()
            .map(|device| serde_json::to_value(DeviceBody::from_device(device)).unwrap())
            .collect();
        assert_eq!(
            members,
            [serde_json::json!({
                "id": "s-1",
                "etag": "etag",
                "displayName": "Sensor",
                "enabled": true,
                "provisioned": false,
                "simulated": true,
            })]
        );
    }

    #[test]
    fn rows_this_code_did_not_write_are_errors_not_panics() {
        let mut sql = migrated();
        sql.execute(
            "INSERT INTO device_groups (id, etag, display_name, filter, created_at, updated_at) \
             VALUES ('g1', 'e', 'G', 'SELECT nonsense', 0, 0)",
            &[],
        )
        .unwrap();
        let error = get(&mut sql, &DeviceGroupId::parse("g1").unwrap()).unwrap_err();
        assert!(
            format!("{error:?}").contains("filter of group `g1`"),
            "{error:?}"
        );
    }
}
