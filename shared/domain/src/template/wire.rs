//! The JSON of a device template in responses, IoT Central's `DeviceTemplate`:
//! `{"@id", "@type", "etag", "displayName", "description", "capabilityModel"}`.
//!
//! Request bodies are not deserialized through this type (see `content.rs`); a `PATCH` merges
//! into this shape's JSON, so its field names are also the names a patch uses.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DeviceTemplate, TEMPLATE_TYPES};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTemplateDto {
    #[serde(rename = "@id")]
    pub id: String,
    #[serde(rename = "@type")]
    pub types: Vec<String>,
    pub etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub capability_model: Value,
}

impl From<&DeviceTemplate> for DeviceTemplateDto {
    fn from(template: &DeviceTemplate) -> DeviceTemplateDto {
        let content = template.content();
        DeviceTemplateDto {
            id: template.id().as_str().to_owned(),
            types: TEMPLATE_TYPES.iter().map(|&name| name.to_owned()).collect(),
            etag: template.etag().to_owned(),
            display_name: content.display_name().map(str::to_owned),
            description: content.description().map(str::to_owned),
            capability_model: content.capability_model().clone(),
        }
    }
}

impl DeviceTemplateDto {
    /// The JSON a `PATCH` merges into.
    pub fn to_json(&self) -> Value {
        // A struct of strings and a JSON value always serializes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
