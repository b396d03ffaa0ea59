//! Device templates: what a template is ([`DeviceTemplate`]), what a client may send to create
//! or change one ([`TemplateContent`], checked all at once), its JSON ([`DeviceTemplateDto`]),
//! the rule that a template in use cannot be deleted ([`check_deletable`]), and the `$filter` /
//! `$orderby` subset of `GET /deviceTemplates` ([`TemplateListQuery`]).
//!
//! Code map: `content.rs` (request bodies to [`TemplateContent`], every problem with its JSON
//! path), `wire.rs` (the response DTO), `list.rs` (list query parameters and the paging cursor).
//!
//! Decisions where IoT Central is silent or loose, taken here:
//! - A template is keyed by its DTMI (the URL id). The body's `@id` may be left out; when given
//!   it must equal the URL id. `@type` must hold `ModelDefinition` and `DeviceModel` and
//!   nothing else (IoT Edge templates, `EdgeModel`, are not supported).
//! - The `capabilityModel` is checked with [`crate::dtdl::DeviceModel::parse`] and stored as
//!   sent (its JSON value; object keys come back in sorted order). Problems inside it are
//!   reported with paths rooted at the body: `$.capabilityModel.contents[2].schema`.
//! - `PUT` on an existing id replaces the template (the store keeps its creation time); `PATCH`
//!   is an RFC 7396 merge over the template's JSON, after which the result must again be a
//!   valid body. The capability model is re-validated only when the patch changed it, so a
//!   template stored under an older, looser parser can still be renamed. Any valid model is
//!   accepted in place of the old one: Gyre does not check that a new model is compatible with
//!   the devices using the template (IoT Central versions templates instead).
//! - `etag` in a body is read-only and ignored; so are unknown top-level fields.
//!
//! Not here: SQL (`store::device_templates`), HTTP status codes and the collection envelope
//! (the registry component), etags' randomness (callers pass a fresh etag).

mod content;
mod list;
mod wire;

#[cfg(test)]
mod tests;

use crate::dtdl::{Dtmi, DtmiError, Problem};
use crate::time::Timestamp;

pub(crate) use content::optional_string;
pub use content::TemplateContent;
pub use list::{
    FilterOp, InvalidCursor, InvalidListQuery, TemplateCursor, TemplateField, TemplateFilter,
    TemplateListQuery, TemplateOrder,
};
pub use wire::DeviceTemplateDto;

/// The `@type` every device template carries.
pub const TEMPLATE_TYPES: [&str; 2] = ["ModelDefinition", "DeviceModel"];

/// A published device template.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceTemplate {
    id: Dtmi,
    etag: String,
    content: TemplateContent,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl DeviceTemplate {
    /// A new template; `etag` is fresh and opaque (the caller's randomness).
    pub fn create(id: Dtmi, content: TemplateContent, etag: String, now: Timestamp) -> Self {
        DeviceTemplate {
            id,
            etag,
            content,
            created_at: now,
            updated_at: now,
        }
    }

    /// This template with new content (a PUT over it or a PATCH), a new etag, and its
    /// creation time kept.
    pub fn replaced(&self, content: TemplateContent, etag: String, now: Timestamp) -> Self {
        DeviceTemplate {
            id: self.id.clone(),
            etag,
            content,
            created_at: self.created_at,
            updated_at: now,
        }
    }

    /// Rebuilds a template from its stored row; the store wrote it from a checked template, so
    /// the capability model is not parsed again.
    pub fn from_stored(
        id: Dtmi,
        etag: String,
        content: TemplateContent,
        created_at: Timestamp,
        updated_at: Timestamp,
    ) -> Self {
        DeviceTemplate {
            id,
            etag,
            content,
            created_at,
            updated_at,
        }
    }

    pub fn id(&self) -> &Dtmi {
        &self.id
    }

    pub fn etag(&self) -> &str {
        &self.etag
    }

    pub fn content(&self) -> &TemplateContent {
        &self.content
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
}

/// The id in a template URL, which must be a DTMI.
pub fn parse_template_id(raw: &str) -> Result<Dtmi, InvalidTemplateId> {
    Dtmi::parse(raw).map_err(|reason| InvalidTemplateId {
        id: raw.to_owned(),
        reason,
    })
}

/// A template URL whose id is not a DTMI (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("device template id `{id}` is not a DTMI: {reason}")]
pub struct InvalidTemplateId {
    pub id: String,
    pub reason: DtmiError,
}

/// A body that is not a valid device template, with every problem found (never empty); each
/// path is rooted at the body (`$.capabilityModel.contents[0].name`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid device template: {}", list_problems(problems))]
pub struct InvalidTemplate {
    pub problems: Vec<Problem>,
}

fn list_problems(problems: &[Problem]) -> String {
    let texts: Vec<String> = problems.iter().map(Problem::to_string).collect();
    texts.join("; ")
}

/// A template that devices use cannot be deleted (409).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "device template `{id}` is used by {n_devices} device{s}; delete them or assign them another \
     template first",
    s = if *n_devices == 1 { "" } else { "s" }
)]
pub struct TemplateInUse {
    pub id: Dtmi,
    pub n_devices: u64,
}

/// The delete rule: `n_devices` is how many devices name the template.
pub fn check_deletable(id: &Dtmi, n_devices: u64) -> Result<(), TemplateInUse> {
    if n_devices == 0 {
        Ok(())
    } else {
        Err(TemplateInUse {
            id: id.clone(),
            n_devices,
        })
    }
}
