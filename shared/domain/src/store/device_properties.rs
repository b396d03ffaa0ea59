//! A device's properties in the `devices` table: read what a properties request needs (the
//! device's etag, its template's capability model, `cloud_properties` and `reported`) in one
//! statement, and write `cloud_properties` with a new etag.
//!
//! Owns only the `cloud_properties` column's writes (and the etag and `updated_at` that go with
//! them); `reported` is read here and written by the ingest code. The rules (what may be
//! written) are `device::properties`'.

use serde_json::Value as Json;

use super::{Sql, StoreError, Value};
use crate::device::properties::CloudProperties;
use crate::device::DeviceId;
use crate::time::Timestamp;

/// What a properties request reads about one device.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredProperties {
    pub etag: String,
    /// The template's DTMI, if the device has one.
    pub template: Option<String>,
    /// The template's `capabilityModel` JSON; `None` when the device has no template (or, which
    /// the registry never allows, its template row is gone).
    pub capability_model: Option<Json>,
    pub cloud: CloudProperties,
    /// The device's reported properties (a JSON object).
    pub reported: Json,
}

/// The properties of device `id`, with its template's model; `None` when there is no device.
pub fn get<S: Sql>(sql: &mut S, id: &DeviceId) -> Result<Option<StoredProperties>, StoreError> {
    const GET: &str = "SELECT d.etag, d.template, t.capability_model, d.cloud_properties, \
         d.reported FROM devices d LEFT JOIN device_templates t ON t.id = d.template \
         WHERE d.id = ?1";
    let rows = sql.execute(GET, &[Value::Text(id.as_str().to_owned())])?;
    let Some(row) = rows.rows.into_iter().next() else {
        return Ok(None);
    };
    let unexpected = |detail: String| StoreError::UnexpectedResult {
        statement: GET,
        detail,
    };
    let mut values = row.into_iter();
    let mut next = || values.next().unwrap_or(Value::Null);
    let etag = match next() {
        Value::Text(etag) => etag,
        other => return Err(unexpected(format!("etag is {other:?}"))),
    };
    let template = match next() {
        Value::Text(template) => Some(template),
        Value::Null => None,
        other => return Err(unexpected(format!("template is {other:?}"))),
    };
    let capability_model = match next() {
        Value::Text(text) => Some(json(&text, "capability_model").map_err(unexpected)?),
        Value::Null => None,
        other => return Err(unexpected(format!("capability_model is {other:?}"))),
    };
    let cloud = match next() {
        Value::Text(text) => {
            CloudProperties::from_json(json(&text, "cloud_properties").map_err(unexpected)?)
                .ok_or_else(|| unexpected("cloud_properties is not a JSON object".into()))?
        }
        other => return Err(unexpected(format!("cloud_properties is {other:?}"))),
    };
    let reported = match next() {
        Value::Text(text) => json(&text, "reported").map_err(unexpected)?,
        other => return Err(unexpected(format!("reported is {other:?}"))),
    };
    Ok(Some(StoredProperties {
        etag,
        template,
        capability_model,
        cloud,
        reported,
    }))
}

fn json(text: &str, column: &str) -> Result<Json, String> {
    serde_json::from_str(text).map_err(|err| format!("{column} is not valid JSON: {err}"))
}

/// Stores `cloud` as device `id`'s cloud properties with a new `etag`. `false` when there is no
/// such device.
pub fn write_cloud<S: Sql>(
    sql: &mut S,
    id: &DeviceId,
    cloud: &CloudProperties,
    etag: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    const WRITE: &str = "UPDATE devices SET cloud_properties = ?2, etag = ?3, updated_at = ?4 \
         WHERE id = ?1 RETURNING id";
    let rows = sql.execute(
        WRITE,
        &[
            Value::Text(id.as_str().to_owned()),
            Value::Text(cloud.to_json_text()),
            Value::Text(etag.to_owned()),
            Value::Integer(now.unix_millis()),
        ],
    )?;
    Ok(!rows.rows.is_empty())
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use super::*;
    use crate::store::{migrate, RusqliteSql};
    use serde_json::json;

    const NOW: i64 = 1_764_161_225_120;
    const TEMPLATE: &str = "dtmi:contoso:Truck;1";

    fn migrated() -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, Timestamp::from_unix_millis(NOW)).unwrap();
        sql
    }

    fn text(value: &str) -> Value {
        Value::Text(value.to_owned())
    }

    fn add_device(sql: &mut RusqliteSql, id: &str, template: Option<&str>) {
        sql.execute(
            "INSERT INTO devices (id, etag, display_name, template, enabled, provisioned, \
             simulated, created_at, updated_at) VALUES (?1, '\"e1\"', ?1, ?2, 1, 0, 0, 0, 0)",
            &[text(id), template.map_or(Value::Null, text)],
        )
        .unwrap();
    }

    fn id(raw: &str) -> DeviceId {
        DeviceId::parse(raw).unwrap()
    }

    #[test]
    fn reads_the_template_model_and_both_property_sets() {
        let mut sql = migrated();
        let model = json!({"@id": TEMPLATE, "@type": "Interface", "contents": []});
        sql.execute(
            "INSERT INTO device_templates (id, etag, types, capability_model, created_at, \
             updated_at) VALUES (?1, 'e', '[]', ?2, 0, 0)",
            &[text(TEMPLATE), text(&model.to_string())],
        )
        .unwrap();
        add_device(&mut sql, "truck-1", Some(TEMPLATE));
        add_device(&mut sql, "gadget", None);
        sql.execute(
            "UPDATE devices SET reported = '{\"firmware\":\"1.0\"}' WHERE id = 'truck-1'",
            &[],
        )
        .unwrap();

        let truck = get(&mut sql, &id("truck-1")).unwrap().unwrap();
        assert_eq!(truck.etag, "\"e1\"");
        assert_eq!(truck.template.as_deref(), Some(TEMPLATE));
        assert_eq!(truck.capability_model, Some(model));
        assert_eq!(truck.cloud, CloudProperties::default());
        assert_eq!(truck.reported, json!({"firmware": "1.0"}));

        let gadget = get(&mut sql, &id("gadget")).unwrap().unwrap();
        assert_eq!((gadget.template, gadget.capability_model), (None, None));
        assert_eq!(get(&mut sql, &id("nope")).unwrap(), None);
    }

    #[test]
    fn writes_cloud_properties_etag_and_time_only() {
        let mut sql = migrated();
        add_device(&mut sql, "o'brien", None);
        let cloud =
            CloudProperties::from_json(json!({"customerName": "x'; DROP TABLE devices; --"}))
                .unwrap();
        let later = Timestamp::from_unix_millis(NOW + 1);
        assert!(write_cloud(&mut sql, &id("o'brien"), &cloud, "\"e2\"", later).unwrap());
        let stored = get(&mut sql, &id("o'brien")).unwrap().unwrap();
        assert_eq!(stored.cloud, cloud);
        assert_eq!(stored.etag, "\"e2\"");
        assert_eq!(stored.reported, json!({}));
        let row = sql
            .execute("SELECT updated_at, display_name FROM devices", &[])
            .unwrap();
        assert_eq!(
            row.rows,
            vec![vec![Value::Integer(NOW + 1), text("o'brien")]]
        );
        assert!(!write_cloud(&mut sql, &id("nope"), &cloud, "\"e3\"", later).unwrap());
    }

    #[test]
    fn a_corrupt_row_is_an_error_not_a_guess() {
        let mut sql = migrated();
        add_device(&mut sql, "d1", None);
        sql.execute("UPDATE devices SET cloud_properties = '[1]'", &[])
            .unwrap();
        let error = get(&mut sql, &id("d1")).unwrap_err();
        assert!(error.to_string().contains("unexpected result"), "{error}");
    }
}
