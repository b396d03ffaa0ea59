//! The `device_templates` table: insert, update, get, list (with the `$filter`/`$orderby`
//! subset of `template::list`), delete, and the in-use count that guards delete.
//!
//! A row holds a template's DTMI, etag, names, `types` (always IoT Central's
//! `["ModelDefinition","DeviceModel"]`), the capability model as JSON text, and creation and
//! update times in Unix milliseconds. Rows are written only from checked
//! [`DeviceTemplate`]s, so reading one back does not parse the DTDL again.
//!
//! The rules (what a valid template is, when one may be deleted) are in `template`.

use serde_json::Value as Json;

use super::{Rows, Sql, StoreError, Value};
use crate::dtdl::Dtmi;
use crate::template::{
    DeviceTemplate, FilterOp, TemplateContent, TemplateCursor, TemplateField, TemplateListQuery,
    TEMPLATE_TYPES,
};
use crate::time::Timestamp;

const COLUMNS: &str = "id, etag, display_name, description, capability_model, created_at, \
     updated_at";

pub use super::Inserted;

/// Stores a new template unless its id is taken.
pub fn insert<S: Sql>(sql: &mut S, template: &DeviceTemplate) -> Result<Inserted, StoreError> {
    const INSERT: &str = "INSERT INTO device_templates (id, etag, display_name, description, \
         types, capability_model, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING RETURNING id";
    let rows = sql.execute(
        INSERT,
        &[
            text(template.id().as_str()),
            text(template.etag()),
            optional_text(template.content().display_name()),
            optional_text(template.content().description()),
            Value::Text(types_json()),
            Value::Text(template.content().capability_model().to_string()),
            Value::Integer(template.created_at().unix_millis()),
            Value::Integer(template.updated_at().unix_millis()),
        ],
    )?;
    Ok(Inserted::from_returning(&rows))
}

/// Overwrites the stored template with the same id (its creation time is kept). `false` when
/// there is no such template.
pub fn update<S: Sql>(sql: &mut S, template: &DeviceTemplate) -> Result<bool, StoreError> {
    const UPDATE: &str = "UPDATE device_templates SET etag = ?2, display_name = ?3, \
         description = ?4, types = ?5, capability_model = ?6, updated_at = ?7 \
         WHERE id = ?1 RETURNING id";
    let rows = sql.execute(
        UPDATE,
        &[
            text(template.id().as_str()),
            text(template.etag()),
            optional_text(template.content().display_name()),
            optional_text(template.content().description()),
            Value::Text(types_json()),
            Value::Text(template.content().capability_model().to_string()),
            Value::Integer(template.updated_at().unix_millis()),
        ],
    )?;
    Ok(!rows.rows.is_empty())
}

/// The template `id`, if any.
pub fn get<S: Sql>(sql: &mut S, id: &Dtmi) -> Result<Option<DeviceTemplate>, StoreError> {
    const GET: &str = "SELECT id, etag, display_name, description, capability_model, \
         created_at, updated_at FROM device_templates WHERE id = ?1";
    let rows = sql.execute(GET, &[text(id.as_str())])?;
    Ok(templates_from_rows(GET, rows)?.pop())
}

/// Up to `limit` templates that pass `query`'s filters, in its order, starting after `after`
/// (keyset paging: pass [`TemplateCursor::after`] of the previous page's last template).
///
/// The statement is assembled from fixed fragments only; every value travels as an anonymous
/// `?` parameter, bound in the order the fragments appear.
pub fn list<S: Sql>(
    sql: &mut S,
    query: &TemplateListQuery,
    after: Option<&TemplateCursor>,
    limit: u32,
) -> Result<Vec<DeviceTemplate>, StoreError> {
    const STATEMENT: &str = "SELECT ... FROM device_templates (list)";
    let mut statement = format!("SELECT {COLUMNS} FROM device_templates WHERE 1");
    let mut params = Vec::new();
    for filter in query.filters() {
        let column = column(filter.field);
        statement.push_str(" AND ");
        match (filter.op, &filter.value) {
            (FilterOp::Eq, None) => statement.push_str(&format!("{column} IS NULL")),
            (FilterOp::Ne, None) => statement.push_str(&format!("{column} IS NOT NULL")),
            (FilterOp::Eq, Some(value)) => {
                statement.push_str(&format!("{column} = ?"));
                params.push(text(value));
            }
            // OData: a missing display name is `ne` any text.
            (FilterOp::Ne, Some(value)) => {
                statement.push_str(&format!("{column} IS NOT ?"));
                params.push(text(value));
            }
            (FilterOp::StartsWith, value) => {
                let value = value.as_deref().unwrap_or("");
                statement.push_str(&format!("substr({column}, 1, length(?)) = ?"));
                params.push(text(value));
                params.push(text(value));
            }
            (FilterOp::Contains, value) => {
                statement.push_str(&format!("instr({column}, ?) > 0"));
                params.push(text(value.as_deref().unwrap_or("")));
            }
        }
    }
    let order = query.order();
    let (comparison, direction) = if order.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    match order.field {
        TemplateField::Id => {
            if let Some(after) = after {
                statement.push_str(&format!(" AND id {comparison} ?"));
                params.push(text(after.id.as_str()));
            }
            statement.push_str(&format!(" ORDER BY id {direction}"));
        }
        TemplateField::DisplayName => {
            const KEY: &str = "COALESCE(display_name, '')";
            if let Some(after) = after {
                statement.push_str(&format!(" AND ({KEY}, id) {comparison} (?, ?)"));
                params.push(text(after.display_name_key.as_deref().unwrap_or("")));
                params.push(text(after.id.as_str()));
            }
            statement.push_str(&format!(" ORDER BY {KEY} {direction}, id {direction}"));
        }
    }
    statement.push_str(" LIMIT ?");
    params.push(Value::Integer(i64::from(limit)));
    let rows = sql.execute(&statement, &params)?;
    templates_from_rows(STATEMENT, rows)
}

/// Deletes the template `id`. `false` when there was none. The caller checks
/// [`count_devices_using`] and `template::check_deletable` first, in the same transaction.
pub fn delete<S: Sql>(sql: &mut S, id: &Dtmi) -> Result<bool, StoreError> {
    const DELETE: &str = "DELETE FROM device_templates WHERE id = ?1 RETURNING id";
    let rows = sql.execute(DELETE, &[text(id.as_str())])?;
    Ok(!rows.rows.is_empty())
}

/// How many devices name the template `id` (served by the `devices_by_template` index).
pub fn count_devices_using<S: Sql>(sql: &mut S, id: &Dtmi) -> Result<u64, StoreError> {
    const COUNT: &str = "SELECT COUNT(*) FROM devices WHERE template = ?";
    let rows = sql.execute(COUNT, &[text(id.as_str())])?;
    rows.scalar()
        .and_then(Value::as_integer)
        .and_then(|count| u64::try_from(count).ok())
        .ok_or_else(|| StoreError::UnexpectedResult {
            statement: COUNT,
            detail: format!("{rows:?}"),
        })
}

fn column(field: TemplateField) -> &'static str {
    match field {
        TemplateField::Id => "id",
        TemplateField::DisplayName => "display_name",
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn optional_text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, text)
}

fn types_json() -> String {
    // An array of two constant strings always serializes.
    serde_json::to_string(&TEMPLATE_TYPES).unwrap_or_default()
}

fn templates_from_rows(
    statement: &'static str,
    rows: Rows,
) -> Result<Vec<DeviceTemplate>, StoreError> {
    rows.rows
        .into_iter()
        .map(|row| {
            template_from_row(row)
                .map_err(|detail| StoreError::UnexpectedResult { statement, detail })
        })
        .collect()
}

/// Maps the [`COLUMNS`]; a row this code did not write is an error naming what is wrong.
fn template_from_row(row: Vec<Value>) -> Result<DeviceTemplate, String> {
    let [id, etag, display_name, description, capability_model, created_at, updated_at]: [Value;
        7] = row
        .try_into()
        .map_err(|row: Vec<Value>| format!("expected 7 columns, got {}", row.len()))?;
    let id = match &id {
        Value::Text(raw) => Dtmi::parse(raw).map_err(|error| format!("id `{raw}`: {error}"))?,
        other => return Err(format!("id: not text: {other:?}")),
    };
    let required_text = |value: Value, column: &str| match value {
        Value::Text(text) => Ok(text),
        other => Err(format!("{column} of template `{id}`: not text: {other:?}")),
    };
    let optional_text = |value: Value, column: &str| match value {
        Value::Null => Ok(None),
        Value::Text(text) => Ok(Some(text)),
        other => Err(format!("{column} of template `{id}`: not text: {other:?}")),
    };
    let millis = |value: &Value, column: &str| {
        value
            .as_integer()
            .map(Timestamp::from_unix_millis)
            .ok_or_else(|| format!("{column} of template `{id}`: not an integer"))
    };
    let etag = required_text(etag, "etag")?;
    let capability_model: Json =
        serde_json::from_str(&required_text(capability_model, "capability_model")?)
            .map_err(|error| format!("capability_model of template `{id}`: {error}"))?;
    let content = TemplateContent::from_stored(
        optional_text(display_name, "display_name")?,
        optional_text(description, "description")?,
        capability_model,
    );
    Ok(DeviceTemplate::from_stored(
        id.clone(),
        etag,
        content,
        millis(&created_at, "created_at")?,
        millis(&updated_at, "updated_at")?,
    ))
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::{migrate, RusqliteSql};
    use crate::template::TemplateOrder;

    const NOW: i64 = 1_764_161_225_120;

    fn migrated() -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, Timestamp::from_unix_millis(NOW)).unwrap();
        sql
    }

    fn dtmi(raw: &str) -> Dtmi {
        Dtmi::parse(raw).unwrap()
    }

    fn model(id: &str) -> Json {
        json!({
            "@context": "dtmi:dtdl:context;2",
            "@id": id,
            "@type": "Interface",
            "contents": [{"@type": "Telemetry", "name": "temperature", "schema": "double"}],
        })
    }

    fn template(id: &str, display_name: Option<&str>) -> DeviceTemplate {
        let body = json!({
            "@type": ["ModelDefinition", "DeviceModel"],
            "displayName": display_name,
            "capabilityModel": model(id),
        });
        let content = TemplateContent::parse(&dtmi(id), &body).unwrap();
        DeviceTemplate::create(
            dtmi(id),
            content,
            format!("etag-{id}"),
            Timestamp::from_unix_millis(NOW),
        )
    }

    fn add_device(sql: &mut RusqliteSql, id: &str, template: Option<&str>) {
        sql.execute(
            "INSERT INTO devices (id, etag, display_name, template, enabled, provisioned, \
             simulated, created_at, updated_at) VALUES (?1, 'e', ?1, ?2, 1, 0, 0, 0, 0)",
            &[
                Value::Text(id.into()),
                template.map_or(Value::Null, |t| Value::Text(t.into())),
            ],
        )
        .unwrap();
    }

    #[test]
    fn templates_round_trip_and_are_never_overwritten_by_insert() {
        let mut sql = migrated();
        let thermostat = template("dtmi:com:example:Thermostat;1", Some("Thermostat"));
        assert_eq!(insert(&mut sql, &thermostat).unwrap(), Inserted::Created);
        assert_eq!(
            insert(&mut sql, &thermostat).unwrap(),
            Inserted::AlreadyExists
        );
        assert_eq!(
            get(&mut sql, thermostat.id()).unwrap(),
            Some(thermostat.clone())
        );
        let other = dtmi("dtmi:com:example:Other;1");
        assert_eq!(get(&mut sql, &other).unwrap(), None);

        let renamed = thermostat.replaced(
            TemplateContent::from_stored(None, Some("d".into()), model(THERMO)),
            "etag-2".into(),
            Timestamp::from_unix_millis(NOW + 1),
        );
        assert!(update(&mut sql, &renamed).unwrap());
        let stored = get(&mut sql, thermostat.id()).unwrap().unwrap();
        assert_eq!(stored, renamed);
        assert_eq!(stored.created_at(), Timestamp::from_unix_millis(NOW));
        assert!(!update(&mut sql, &template("dtmi:x:y;1", None)).unwrap());
    }

    const THERMO: &str = "dtmi:com:example:Thermostat;1";

    #[test]
    fn delete_and_the_in_use_count() {
        let mut sql = migrated();
        let thermostat = template(THERMO, None);
        insert(&mut sql, &thermostat).unwrap();
        add_device(&mut sql, "d1", Some(THERMO));
        add_device(&mut sql, "d2", Some(THERMO));
        add_device(&mut sql, "d3", Some("dtmi:com:example:Other;1"));
        add_device(&mut sql, "d4", None);
        assert_eq!(count_devices_using(&mut sql, thermostat.id()).unwrap(), 2);
        assert!(delete(&mut sql, thermostat.id()).unwrap());
        assert!(!delete(&mut sql, thermostat.id()).unwrap());
        assert_eq!(get(&mut sql, thermostat.id()).unwrap(), None);
    }

    fn ids(templates: &[DeviceTemplate]) -> Vec<&str> {
        templates.iter().map(|t| t.id().as_str()).collect()
    }

    /// Pages through the whole list two at a time, as a client following `nextLink` would.
    fn all_pages(sql: &mut RusqliteSql, query: &TemplateListQuery) -> Vec<String> {
        let mut seen = Vec::new();
        let mut after: Option<TemplateCursor> = None;
        loop {
            let page = list(sql, query, after.as_ref(), 2).unwrap();
            seen.extend(ids(&page).into_iter().map(str::to_owned));
            let Some(last) = page.last() else { break };
            // Round-trip through the token, as the next request would.
            let cursor =
                TemplateCursor::after(last.id(), last.content().display_name(), query.order());
            after = Some(TemplateCursor::decode(&cursor.encode(), query.order()).unwrap());
            if page.len() < 2 {
                break;
            }
        }
        seen
    }

    #[test]
    fn lists_filter_order_and_page() {
        let mut sql = migrated();
        for (id, name) in [
            ("dtmi:a:c;1", Some("Beta")),
            ("dtmi:a:a;1", Some("Gamma")),
            ("dtmi:a:b;1", None),
            ("dtmi:b:a;1", Some("Alpha")),
            ("dtmi:a:d;1", Some("Beta")),
            ("dtmi:x:q;1", Some("it's")),
        ] {
            insert(&mut sql, &template(id, name)).unwrap();
        }
        let query = |filter: Option<&str>, orderby: Option<&str>| {
            TemplateListQuery::parse(filter, orderby).unwrap()
        };
        let check = |sql: &mut RusqliteSql,
                     filter: Option<&str>,
                     orderby: Option<&str>,
                     expected: &[&str]| {
            let query = query(filter, orderby);
            assert_eq!(all_pages(sql, &query), expected, "{filter:?} {orderby:?}");
            let whole = list(sql, &query, None, 100).unwrap();
            assert_eq!(ids(&whole), expected, "{filter:?} {orderby:?}");
        };
        check(
            &mut sql,
            None,
            None,
            &[
                "dtmi:a:a;1",
                "dtmi:a:b;1",
                "dtmi:a:c;1",
                "dtmi:a:d;1",
                "dtmi:b:a;1",
                "dtmi:x:q;1",
            ],
        );
        check(
            &mut sql,
            None,
            Some("id desc"),
            &[
                "dtmi:x:q;1",
                "dtmi:b:a;1",
                "dtmi:a:d;1",
                "dtmi:a:c;1",
                "dtmi:a:b;1",
                "dtmi:a:a;1",
            ],
        );
        check(
            &mut sql,
            None,
            Some("displayName"),
            &[
                "dtmi:a:b;1",
                "dtmi:b:a;1",
                "dtmi:a:c;1",
                "dtmi:a:d;1",
                "dtmi:a:a;1",
                "dtmi:x:q;1",
            ],
        );
        check(
            &mut sql,
            None,
            Some("displayName desc"),
            &[
                "dtmi:x:q;1",
                "dtmi:a:a;1",
                "dtmi:a:d;1",
                "dtmi:a:c;1",
                "dtmi:b:a;1",
                "dtmi:a:b;1",
            ],
        );
        check(
            &mut sql,
            Some("displayName eq 'Beta'"),
            None,
            &["dtmi:a:c;1", "dtmi:a:d;1"],
        );
        check(
            &mut sql,
            Some("displayName ne 'Beta'"),
            None,
            &["dtmi:a:a;1", "dtmi:a:b;1", "dtmi:b:a;1", "dtmi:x:q;1"],
        );
        check(&mut sql, Some("displayName eq null"), None, &["dtmi:a:b;1"]);
        check(
            &mut sql,
            Some("displayName ne null and startswith(id, 'dtmi:a:')"),
            None,
            &["dtmi:a:a;1", "dtmi:a:c;1", "dtmi:a:d;1"],
        );
        check(
            &mut sql,
            Some("contains(displayName, 'mm')"),
            None,
            &["dtmi:a:a;1"],
        );
        check(&mut sql, Some("contains(displayName, 'ALPHA')"), None, &[]);
        check(
            &mut sql,
            Some("displayName eq 'it''s'"),
            None,
            &["dtmi:x:q;1"],
        );
        check(&mut sql, Some("id eq 'x'' OR 1=1 --'"), None, &[]);
        check(&mut sql, Some("@id eq 'dtmi:b:a;1'"), None, &["dtmi:b:a;1"]);
        assert_eq!(
            list(&mut sql, &TemplateListQuery::default(), None, 0).unwrap(),
            []
        );

        // A cursor whose template was deleted still pages correctly.
        let by_name = query(None, Some("displayName"));
        let cursor = TemplateCursor::after(
            &dtmi("dtmi:a:c;1"),
            Some("Beta"),
            TemplateOrder { ..by_name.order() },
        );
        delete(&mut sql, &dtmi("dtmi:a:c;1")).unwrap();
        assert_eq!(
            ids(&list(&mut sql, &by_name, Some(&cursor), 10).unwrap()),
            ["dtmi:a:d;1", "dtmi:a:a;1", "dtmi:x:q;1"]
        );
    }

    #[test]
    fn rows_this_code_did_not_write_are_errors_not_panics() {
        let mut sql = migrated();
        sql.execute(
            "INSERT INTO device_templates (id, etag, types, capability_model, created_at, \
             updated_at) VALUES ('dtmi:a:b;1', 'e', '[]', '{', 0, 0), ('nope', 'e', '[]', '{}', 0, 0)",
            &[],
        )
        .unwrap();
        let error = get(&mut sql, &dtmi("dtmi:a:b;1")).unwrap_err();
        assert!(error.to_string().contains("unexpected result"), "{error}");
        let error = list(&mut sql, &TemplateListQuery::default(), None, 10).unwrap_err();
        assert!(
            format!("{error:?}").contains("capability_model"),
            "{error:?}"
        );
    }
}
