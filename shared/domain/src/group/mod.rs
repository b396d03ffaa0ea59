//! Device groups: a named IoT Central query over devices ([`DeviceGroup`]), what a client may
//! send to create or change one ([`GroupContent`], every problem at once), its id
//! ([`DeviceGroupId`]) and its JSON ([`DeviceGroupDto`]).
//!
//! Membership is never stored: `GET /deviceGroups/{id}/devices` runs the group's filter
//! ([`crate::query::DeviceFilter::to_sql`]) against the devices table at that moment (the SQL
//! is in `store::device_groups`).
//!
//! Decisions where IoT Central is silent or loose, taken here:
//! - `PUT` creates or replaces the group (keeping its creation time); `PATCH` is an RFC 7396
//!   merge over the group's JSON, after which the result must again be a valid body, so the
//!   filter is parsed again and `displayName` cannot be removed.
//! - `displayName` must be a non-empty string of at most 255 characters; `description` at
//!   most 1,000. `filter` is parsed with IoT Central's limits (350 characters, 10 logical
//!   operators); its errors name the character offset.
//! - `organizations` holds at most one organization id (IoT Central: "only one organization
//!   is supported today"); an empty list means none.
//! - `id` in a body may be left out; when given it must equal the URL id. `etag` is read-only
//!   and ignored, as are unknown fields.
//!
//! Not here: SQL, status codes, the paging envelope, etags' randomness.

mod content;
mod wire;

#[cfg(test)]
mod tests;

use std::fmt;

use crate::dtdl::Problem;
use crate::time::Timestamp;

pub use content::GroupContent;
pub use wire::DeviceGroupDto;

/// Identifies a device group. IoT Central's rule: `^[a-zA-Z0-9_-]*$`, at most 255 characters;
/// Gyre also requires at least one. Enforced only by [`DeviceGroupId::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceGroupId(String);

/// Longest device group id.
pub const MAX_DEVICE_GROUP_ID_LEN: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "device group id must be 1 to 255 letters, digits, '_' or '-'{}",
    shown(id)
)]
pub struct InvalidDeviceGroupId {
    pub id: String,
}

/// Echoes a rejected id when it is short enough to help rather than flood the message.
fn shown(id: &str) -> String {
    if id.chars().count() <= 64 {
        format!(", found `{id}`")
    } else {
        String::new()
    }
}

impl DeviceGroupId {
    pub fn parse(raw: &str) -> Result<DeviceGroupId, InvalidDeviceGroupId> {
        let valid = (1..=MAX_DEVICE_GROUP_ID_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(DeviceGroupId(raw.to_owned()))
        } else {
            Err(InvalidDeviceGroupId { id: raw.to_owned() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device group.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceGroup {
    id: DeviceGroupId,
    etag: String,
    content: GroupContent,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl DeviceGroup {
    /// A new group; `etag` is fresh and opaque (the caller's randomness).
    pub fn create(id: DeviceGroupId, content: GroupContent, etag: String, now: Timestamp) -> Self {
        DeviceGroup {
            id,
            etag,
            content,
            created_at: now,
            updated_at: now,
        }
    }

    /// This group with new content, a new etag, and its creation time kept.
    pub fn replaced(&self, content: GroupContent, etag: String, now: Timestamp) -> Self {
        DeviceGroup {
            id: self.id.clone(),
            etag,
            content,
            created_at: self.created_at,
            updated_at: now,
        }
    }

    /// Rebuilds a group from its stored row.
    pub fn from_stored(
        id: DeviceGroupId,
        etag: String,
        content: GroupContent,
        created_at: Timestamp,
        updated_at: Timestamp,
    ) -> Self {
        DeviceGroup {
            id,
            etag,
            content,
            created_at,
            updated_at,
        }
    }

    pub fn id(&self) -> &DeviceGroupId {
        &self.id
    }

    pub fn etag(&self) -> &str {
        &self.etag
    }

    pub fn content(&self) -> &GroupContent {
        &self.content
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
}

/// A body that is not a valid device group, with every problem found (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid device group: {}", list_problems(problems))]
pub struct InvalidGroup {
    pub problems: Vec<Problem>,
}

fn list_problems(problems: &[Problem]) -> String {
    let texts: Vec<String> = problems.iter().map(Problem::to_string).collect();
    texts.join("; ")
}
