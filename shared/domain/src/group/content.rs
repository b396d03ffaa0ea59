//! Request bodies of `PUT` and (merged) `PATCH /deviceGroups/{id}` to [`GroupContent`],
//! reporting every problem at once with its JSON path.

use serde_json::Value;

use super::{DeviceGroup, DeviceGroupId, InvalidGroup};
use crate::auth::OrganizationId;
use crate::dtdl::{json_kind, Problem};
use crate::query::{parse_device_filter, DeviceFilter, QueryError};
use crate::template::optional_string;

const MAX_DISPLAY_NAME_CHARS: usize = 255;
const MAX_DESCRIPTION_CHARS: usize = 1000;

/// What a client decides about a group. Built only by parsing, so the filter is valid.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupContent {
    display_name: String,
    description: Option<String>,
    filter_text: String,
    filter: DeviceFilter,
    organization: Option<OrganizationId>,
}

impl GroupContent {
    /// A `PUT` body for the group `id`.
    pub fn parse(id: &DeviceGroupId, body: &Value) -> Result<GroupContent, InvalidGroup> {
        parse_body(id, body)
    }

    /// A `PATCH`: `merged` is the current group's JSON ([`super::DeviceGroupDto`]) with the
    /// patch merged in (RFC 7396); the result is checked like a `PUT` body, filter included.
    pub fn parse_update(
        current: &DeviceGroup,
        merged: &Value,
    ) -> Result<GroupContent, InvalidGroup> {
        parse_body(current.id(), merged)
    }

    /// Content from a stored row; the filter is parsed again (it was valid when written, so an
    /// error here means the row was not written by this code or the language got stricter).
    pub fn from_stored(
        display_name: String,
        description: Option<String>,
        filter_text: String,
        organization: Option<OrganizationId>,
    ) -> Result<GroupContent, QueryError> {
        let filter = parse_device_filter(&filter_text)?;
        Ok(GroupContent {
            display_name,
            description,
            filter_text,
            filter,
            organization,
        })
    }

    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The query as the client wrote it.
    pub fn filter_text(&self) -> &str {
        &self.filter_text
    }

    pub fn filter(&self) -> &DeviceFilter {
        &self.filter
    }

    pub fn organization(&self) -> Option<&OrganizationId> {
        self.organization.as_ref()
    }
}

fn parse_body(id: &DeviceGroupId, body: &Value) -> Result<GroupContent, InvalidGroup> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        problems.push(Problem::new(
            "$",
            format!("a device group is a JSON object, found {}", json_kind(body)),
        ));
        return Err(InvalidGroup { problems });
    };

    match object.get("id") {
        None | Some(Value::Null) => {}
        Some(Value::String(body_id)) if body_id == id.as_str() => {}
        Some(Value::String(body_id)) => problems.push(Problem::new(
            "$.id",
            format!("`{body_id}` differs from the id in the URL, `{id}`"),
        )),
        Some(other) => problems.push(Problem::new(
            "$.id",
            format!("expected a string, found {}", json_kind(other)),
        )),
    }

    let display_name =
        match optional_string(object.get("displayName"), "$.displayName", &mut problems) {
            None if matches!(object.get("displayName"), None | Some(Value::Null)) => {
                problems.push(Problem::new("$.displayName", "is required"));
                None
            }
            Some(name) if name.trim().is_empty() => {
                problems.push(Problem::new("$.displayName", "must not be empty"));
                None
            }
            Some(name) if name.chars().count() > MAX_DISPLAY_NAME_CHARS => {
                problems.push(Problem::new(
                    "$.displayName",
                    format!("at most {MAX_DISPLAY_NAME_CHARS} characters"),
                ));
                None
            }
            other => other,
        };

    let description = optional_string(object.get("description"), "$.description", &mut problems);
    if description
        .as_ref()
        .is_some_and(|text| text.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        problems.push(Problem::new(
            "$.description",
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }

    let filter = match object.get("filter") {
        None | Some(Value::Null) => {
            problems.push(Problem::new(
                "$.filter",
                "is required: a query such as `SELECT * FROM devices WHERE $simulated = false`",
            ));
            None
        }
        Some(Value::String(text)) => match parse_device_filter(text) {
            Ok(filter) => Some((text.clone(), filter)),
            Err(error) => {
                problems.push(Problem::new("$.filter", error.to_string()));
                None
            }
        },
        Some(other) => {
            problems.push(Problem::new(
                "$.filter",
                format!("expected a string, found {}", json_kind(other)),
            ));
            None
        }
    };

    let organization = parse_organizations(object.get("organizations"), &mut problems);

    match (display_name, filter) {
        (Some(display_name), Some((filter_text, filter))) if problems.is_empty() => {
            Ok(GroupContent {
                display_name,
                description,
                filter_text,
                filter,
                organization,
            })
        }
        _ => Err(InvalidGroup { problems }),
    }
}

fn parse_organizations(
    value: Option<&Value>,
    problems: &mut Vec<Problem>,
) -> Option<OrganizationId> {
    const PATH: &str = "$.organizations";
    let items = match value {
        None | Some(Value::Null) => return None,
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.push(Problem::new(
                PATH,
                format!(
                    "expected an array of organization ids, found {}",
                    json_kind(other)
                ),
            ));
            return None;
        }
    };
    if items.len() > 1 {
        problems.push(Problem::new(
            PATH,
            format!(
                "at most one organization is supported, found {}",
                items.len()
            ),
        ));
        return None;
    }
    let item = items.first()?;
    let path = format!("{PATH}[0]");
    match item.as_str() {
        Some(raw) => match OrganizationId::parse(raw) {
            Ok(organization) => Some(organization),
            Err(error) => {
                problems.push(Problem::new(&path, error.to_string()));
                None
            }
        },
        None => {
            problems.push(Problem::new(
                &path,
                format!("expected a string, found {}", json_kind(item)),
            ));
            None
        }
    }
}
