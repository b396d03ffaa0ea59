//! Device twins in the `devices` table (columns `reported`, `reported_version`,
//! `reported_metadata`, `desired`, `desired_version`, `desired_metadata`): read a twin, and
//! apply a reported patch (the device's) or a desired patch (an operator's, through the
//! properties API); [`crate::twin`] has the rules. `reported` is the same column the
//! properties API reads, so what a device reports shows there.
//!
//! [`patch_reported`] and [`patch_desired`] read then write: call them inside one transaction.

use serde_json::{Map, Value as Json};

use super::{Sql, StoreError, Value};
use crate::device::DeviceId;
use crate::time::Timestamp;
use crate::twin::{Twin, TwinDocument, TwinError};

const COLUMNS: &str = "reported, reported_version, reported_metadata, desired, desired_version, \
     desired_metadata";

/// Why a reported patch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error(transparent)]
    Invalid(#[from] TwinError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The twin of device `id`; `None` when there is no such device.
pub fn get<S: Sql>(sql: &mut S, id: &DeviceId) -> Result<Option<Twin>, StoreError> {
    let statement = format!("SELECT {COLUMNS} FROM devices WHERE id = ?1");
    let rows = sql.execute(&statement, &[Value::Text(id.as_str().to_owned())])?;
    let Some(row) = rows.rows.into_iter().next() else {
        return Ok(None);
    };
    let [reported, reported_version, reported_metadata, desired, desired_version, desired_metadata]: [Value; 6] =
        row.try_into().map_err(|row| unexpected(format!("{row:?}")))?;
    Ok(Some(Twin {
        reported: document(reported, reported_version, reported_metadata)?,
        desired: document(desired, desired_version, desired_metadata)?,
    }))
}

/// Applies a patch from device `id` to its reported document; the new version, or `None` when
/// there is no such device.
pub fn patch_reported<S: Sql>(
    sql: &mut S,
    id: &DeviceId,
    patch: &Json,
    now: Timestamp,
) -> Result<Option<u64>, PatchError> {
    patch_side(sql, id, Side::Reported, patch, now)
}

/// Applies an operator's patch to device `id`'s desired document; the new version (the
/// `$version` the device sees with the push), or `None` when there is no such device.
pub fn patch_desired<S: Sql>(
    sql: &mut S,
    id: &DeviceId,
    patch: &Json,
    now: Timestamp,
) -> Result<Option<u64>, PatchError> {
    patch_side(sql, id, Side::Desired, patch, now)
}

#[derive(Clone, Copy)]
enum Side {
    Reported,
    Desired,
}

fn patch_side<S: Sql>(
    sql: &mut S,
    id: &DeviceId,
    side: Side,
    patch: &Json,
    now: Timestamp,
) -> Result<Option<u64>, PatchError> {
    let Some(mut twin) = get(sql, id)? else {
        return Ok(None);
    };
    let (document, statement) = match side {
        Side::Reported => (
            &mut twin.reported,
            "UPDATE devices SET reported = ?2, reported_version = ?3, reported_metadata = ?4 \
             WHERE id = ?1",
        ),
        Side::Desired => (
            &mut twin.desired,
            "UPDATE devices SET desired = ?2, desired_version = ?3, desired_metadata = ?4 \
             WHERE id = ?1",
        ),
    };
    let version = document.apply_patch(patch, now)?;
    sql.execute(
        statement,
        &[
            Value::Text(id.as_str().to_owned()),
            Value::Text(Json::Object(document.properties().clone()).to_string()),
            Value::Integer(i64::try_from(version).unwrap_or(i64::MAX)),
            Value::Text(Json::Object(document.metadata().clone()).to_string()),
        ],
    )?;
    Ok(Some(version))
}

fn document(
    properties: Value,
    version: Value,
    metadata: Value,
) -> Result<TwinDocument, StoreError> {
    let object = |value: Value, what: &str| -> Result<Map<String, Json>, StoreError> {
        match value {
            Value::Text(text) => match serde_json::from_str(&text) {
                Ok(Json::Object(map)) => Ok(map),
                _ => Err(unexpected(format!("{what} is not a JSON object"))),
            },
            other => Err(unexpected(format!("{what} is {other:?}"))),
        }
    };
    let version = version
        .as_integer()
        .and_then(|version| u64::try_from(version).ok())
        .ok_or_else(|| unexpected(format!("version is {version:?}")))?;
    Ok(TwinDocument::from_parts(
        object(properties, "a twin document")?,
        version,
        object(metadata, "twin metadata")?,
    ))
}

fn unexpected(detail: String) -> StoreError {
    StoreError::UnexpectedResult {
        statement: "SELECT reported, ... FROM devices (twin)",
        detail,
    }
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use super::*;
    use crate::store::{migrate, RusqliteSql};
    use serde_json::json;

    /// A migrated in-memory database holding one device, `d1`, and the time it was made.
    fn with_device_d1() -> (RusqliteSql, Timestamp, DeviceId) {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        let now = Timestamp::from_unix_millis(1_764_000_000_000);
        migrate(&mut sql, now).unwrap();
        sql.execute(
            "INSERT INTO devices (id, etag, display_name, enabled, provisioned, simulated, \
             created_at, updated_at) VALUES ('d1', 'e', 'd1', 1, 1, 0, 0, 0)",
            &[],
        )
        .unwrap();
        (sql, now, DeviceId::parse("d1").unwrap())
    }

    #[test]
    fn a_reported_patch_is_stored_with_its_version_and_shows_as_reported() {
        let (mut sql, now, d1) = with_device_d1();
        let fresh = get(&mut sql, &d1).unwrap().unwrap();
        assert_eq!(
            fresh.to_get_response(),
            json!({"desired": {"$version": 1}, "reported": {"$version": 1}})
        );

        let patch = json!({"firmware": "1.2", "thermostat1": {"__t": "c", "maxTemp": 30}});
        assert_eq!(patch_reported(&mut sql, &d1, &patch, now).unwrap(), Some(2));
        let twin = get(&mut sql, &d1).unwrap().unwrap();
        assert_eq!(twin.reported.to_wire()["thermostat1"]["maxTemp"], 30);
        assert_eq!(twin.reported.version(), 2);
        assert_eq!(
            twin.reported.metadata()["firmware"]["$lastUpdated"],
            now.to_rfc3339()
        );
        let reported = crate::store::device_properties::get(&mut sql, &d1)
            .unwrap()
            .unwrap();
        assert_eq!(reported.reported["firmware"], "1.2");

        assert!(matches!(
            patch_reported(&mut sql, &d1, &json!({"a.b": 1}), now),
            Err(PatchError::Invalid(_))
        ));
        assert_eq!(get(&mut sql, &d1).unwrap().unwrap().reported.version(), 2);
        let nobody = DeviceId::parse("nobody").unwrap();
        assert_eq!(
            patch_reported(&mut sql, &nobody, &patch, now).unwrap(),
            None
        );
    }

    #[test]
    fn a_desired_patch_grows_the_desired_version_only_and_the_device_reads_it() {
        let (mut sql, now, d1) = with_device_d1();
        let patch = json!({"targetTemperature": 21.5, "thermostat1": {"__t": "c", "targetTemperature": 19}});
        assert_eq!(patch_desired(&mut sql, &d1, &patch, now).unwrap(), Some(2));
        assert_eq!(
            patch_desired(&mut sql, &d1, &json!({"targetTemperature": 22}), now).unwrap(),
            Some(3)
        );
        let twin = get(&mut sql, &d1).unwrap().unwrap();
        assert_eq!(
            twin.to_get_response(),
            json!({
                "desired": {"targetTemperature": 22, "thermostat1": {"__t": "c", "targetTemperature": 19},
                            "$version": 3},
                "reported": {"$version": 1}
            })
        );
        assert_eq!(
            twin.desired.metadata()["targetTemperature"]["$lastUpdatedVersion"],
            3
        );
        assert_eq!(
            twin.desired.metadata()["thermostat1"]["targetTemperature"]["$lastUpdatedVersion"],
            2
        );
        assert!(matches!(
            patch_desired(&mut sql, &d1, &json!({"a b": 1}), now),
            Err(PatchError::Invalid(_))
        ));
        let nobody = DeviceId::parse("nobody").unwrap();
        assert_eq!(patch_desired(&mut sql, &nobody, &patch, now).unwrap(), None);
    }
}
