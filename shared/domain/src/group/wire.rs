//! The JSON of a device group in responses, IoT Central's `DeviceGroup`:
//! `{"id", "etag", "displayName", "filter", "description", "organizations"}`.
//!
//! Request bodies are not deserialized through this type (see `content.rs`); a `PATCH` merges
//! into this shape's JSON, so its field names are also the names a patch uses.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DeviceGroup;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceGroupDto {
    pub id: String,
    pub etag: String,
    pub display_name: String,
    pub filter: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
}

impl From<&DeviceGroup> for DeviceGroupDto {
    fn from(group: &DeviceGroup) -> DeviceGroupDto {
        let content = group.content();
        DeviceGroupDto {
            id: group.id().as_str().to_owned(),
            etag: group.etag().to_owned(),
            display_name: content.display_name().to_owned(),
            filter: content.filter_text().to_owned(),
            description: content.description().map(str::to_owned),
            organizations: content
                .organization()
                .map(|organization| organization.as_str().to_owned())
                .into_iter()
                .collect(),
        }
    }
}

impl DeviceGroupDto {
    /// The JSON a `PATCH` merges into.
    pub fn to_json(&self) -> Value {
        // A struct of strings always serializes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

