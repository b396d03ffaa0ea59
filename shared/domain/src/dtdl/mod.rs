//! DTDL, the language of device templates: a template's `capabilityModel` parsed and checked
//! into a typed [`DeviceModel`], and JSON values checked against the model's schemas.
//!
//! Code map:
//! - [`Dtmi`] (`dtmi.rs`): model identifiers, also the ids of device templates.
//! - `parse.rs`: [`DeviceModel::parse`], JSON in, a model or every problem at once out. DTDL v2
//!   (`dtmi:dtdl:context;2`, what IoT Central supports) and v3 (`dtmi:dtdl:context;3`) with IoT
//!   Central's extension (`dtmi:iotcentral:context;2`: State, Event, Location, vectors,
//!   `geopoint`, `vector`, and `["Property", "Cloud"]` cloud properties).
//! - `model.rs`: the model types and the look-ups by (component, name).
//! - `value.rs`: [`validate_value`], for property writes and command payloads.
//! - `units.rs`: the semantic type and unit tables.
//!
//! Problems carry the JSON path of the offending element (`$.contents[3].schema.fields[0].name`,
//! or `$[1]...` when the model is an array of Interfaces) and a lower-case reason.
//!
//! This module owns no storage, no HTTP and no wire DTOs: the registry stores a template's JSON
//! as sent and parses it with this module when it needs the model. Decisions where IoT Central
//! and DTDL are silent or loose are documented where they are taken, in `parse.rs` and
//! `value.rs`.

mod dtmi;
mod model;
mod parse;
mod units;
mod value;

#[cfg(test)]
mod tests;

use std::fmt;

pub use dtmi::{Dtmi, DtmiError, MAX_DTMI_LEN};
pub use model::{
    Adjunct, ArraySchema, Command, CommandPayload, Component, Content, DeviceModel, EnumLiteral,
    EnumSchema, EnumValue, EnumValueSchema, Field, Geospatial, Interface, LocalizedText, MapSchema,
    ObjectSchema, Primitive, Property, Relationship, Schema, SemanticType, Telemetry,
};
pub use value::validate_value;

/// The DTDL language version of an Interface, from its `@context`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DtdlVersion {
    V2,
    V3,
}

/// One thing wrong with a model or a value: where (a JSON path such as
/// `$.contents[3].schema.fields[0].name`) and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: &str, message: impl Into<String>) -> Problem {
        Problem {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A capability model that is not valid DTDL, with every problem found (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the capability model is not valid DTDL: {}", list(problems))]
pub struct DtdlError {
    pub problems: Vec<Problem>,
}

fn list(problems: &[Problem]) -> String {
    let texts: Vec<String> = problems.iter().map(Problem::to_string).collect();
    texts.join("; ")
}

impl DeviceModel {
    /// Parses a device template's `capabilityModel`: one Interface object, or an array of
    /// Interfaces whose first element is the root and whose others define the Interfaces that
    /// Components and `extends` refer to by DTMI. Reports every problem at once.
    pub fn parse(capability_model: &serde_json::Value) -> Result<DeviceModel, DtdlError> {
        parse::parse(capability_model)
    }
}

/// `path` followed by an object key: `.key`, or `['key']` when the key is not an identifier
/// (`['@type']`, keys with spaces or quotes).
pub(crate) fn key_path(path: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{path}.{key}")
    } else {
        let escaped = key.replace('\\', "\\\\").replace('\'', "\\'");
        format!("{path}['{escaped}']")
    }
}

/// `path` followed by an array index: `[i]`.
pub(crate) fn index_path(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// "a string", "an object"...: how problems name the JSON type they found.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
