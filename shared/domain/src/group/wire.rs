//! The JSON of a device group in responses, IoT Central's `DeviceGroup`:
//! `{"id", "etag", "displayName", "filter", "description", "organizations"}`.
//!
//! Request bodies are not deserialized through this type (see `content.rs`); a `PATCH` merges
//! into this shape's JSON, so its field names are also the names a patch uses.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DeviceGroup;
use crate::store::device_groups::MemberDevice;

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

/// A member of a group in `GET /deviceGroups/{id}/devices`, in IoT Central's `Device` shape:
/// `{id, etag, displayName, template, enabled, provisioned, simulated, organizations}`.
/// `template` is left out for a device without one.
// FIXME(lead): the devices helper's Device DTO (in `device`) is the same shape; use it here
// once it exists, so the two cannot drift.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberDeviceDto {
    pub id: String,
    pub etag: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub enabled: bool,
    pub provisioned: bool,
    pub simulated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
}

impl From<&MemberDevice> for MemberDeviceDto {
    fn from(device: &MemberDevice) -> MemberDeviceDto {
        MemberDeviceDto {
            id: device.id.clone(),
            etag: device.etag.clone(),
            display_name: device.display_name.clone(),
            template: device.template.clone(),
            enabled: device.enabled,
            provisioned: device.provisioned,
            simulated: device.simulated,
            organizations: device.organization.iter().cloned().collect(),
        }
    }
}
