//! Request bodies of `PUT` and (merged) `PATCH /deviceTemplates/{id}` to [`TemplateContent`],
//! reporting every problem at once with its JSON path.
//!
//! The body is read as a `serde_json::Value` rather than a derived struct so that a wrong type
//! in one field does not hide the problems in the others.

use serde_json::Value;

use super::{DeviceTemplate, InvalidTemplate, TEMPLATE_TYPES};
use crate::dtdl::{json_kind, DeviceModel, Dtmi, Problem};

/// What a client decides about a template: names and the DTDL capability model. Built only by
/// parsing a body (or from a row the store wrote from one), so the model is valid DTDL.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateContent {
    display_name: Option<String>,
    description: Option<String>,
    capability_model: Value,
}

impl TemplateContent {
    /// A `PUT` body for the template `id`.
    pub fn parse(id: &Dtmi, body: &Value) -> Result<TemplateContent, InvalidTemplate> {
        parse_body(id, body, None)
    }

    /// A `PATCH`: `merged` is the current template's JSON ([`super::DeviceTemplateDto`]) with
    /// the patch merged in (RFC 7396). The capability model is parsed again only if it
    /// changed.
    pub fn parse_update(
        current: &DeviceTemplate,
        merged: &Value,
    ) -> Result<TemplateContent, InvalidTemplate> {
        parse_body(
            current.id(),
            merged,
            Some(&current.content().capability_model),
        )
    }

    /// Content the store wrote from a parsed body.
    pub fn from_stored(
        display_name: Option<String>,
        description: Option<String>,
        capability_model: Value,
    ) -> TemplateContent {
        TemplateContent {
            display_name,
            description,
            capability_model,
        }
    }

    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The DTDL as the client sent it.
    pub fn capability_model(&self) -> &Value {
        &self.capability_model
    }

    /// The typed model. Content is only built from a model that parsed, so this fails only for
    /// a row written by something other than this code.
    pub fn model(&self) -> Result<DeviceModel, crate::dtdl::DtdlError> {
        DeviceModel::parse(&self.capability_model)
    }
}

fn parse_body(
    id: &Dtmi,
    body: &Value,
    unchanged_model: Option<&Value>,
) -> Result<TemplateContent, InvalidTemplate> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        problems.push(Problem::new(
            "$",
            format!(
                "a device template is a JSON object, found {}",
                json_kind(body)
            ),
        ));
        return Err(InvalidTemplate { problems });
    };

    match object.get("@id") {
        None | Some(Value::Null) => {}
        Some(Value::String(body_id)) if body_id == id.as_str() => {}
        Some(Value::String(body_id)) => problems.push(Problem::new(
            "$['@id']",
            format!("`{body_id}` differs from the id in the URL, `{id}`"),
        )),
        Some(other) => problems.push(Problem::new(
            "$['@id']",
            format!("expected a string, found {}", json_kind(other)),
        )),
    }

    check_types(object.get("@type"), &mut problems);
    let display_name = optional_string(object.get("displayName"), "$.displayName", &mut problems);
    let description = optional_string(object.get("description"), "$.description", &mut problems);

    let capability_model = match object.get("capabilityModel") {
        None | Some(Value::Null) => {
            problems.push(Problem::new("$.capabilityModel", "is required"));
            None
        }
        Some(model) if Some(model) == unchanged_model => Some(model.clone()),
        Some(model) => {
            if let Err(error) = DeviceModel::parse(model) {
                problems.extend(error.problems.into_iter().map(|problem| Problem {
                    path: format!("$.capabilityModel{}", &problem.path[1..]),
                    message: problem.message,
                }));
            }
            Some(model.clone())
        }
    };

    match capability_model {
        Some(capability_model) if problems.is_empty() => Ok(TemplateContent {
            display_name,
            description,
            capability_model,
        }),
        _ => Err(InvalidTemplate { problems }),
    }
}

/// `@type` must list exactly [`TEMPLATE_TYPES`], in any order.
fn check_types(types: Option<&Value>, problems: &mut Vec<Problem>) {
    let expected = r#"["ModelDefinition", "DeviceModel"]"#;
    let Some(types) = types else {
        problems.push(Problem::new(
            "$['@type']",
            format!("is required: {expected}"),
        ));
        return;
    };
    let Some(items) = types.as_array() else {
        problems.push(Problem::new(
            "$['@type']",
            format!("expected {expected}, found {}", json_kind(types)),
        ));
        return;
    };
    let mut seen = Vec::new();
    for (idx, item) in items.iter().enumerate() {
        let path = format!("$['@type'][{idx}]");
        match item.as_str() {
            Some(name) if seen.contains(&name) => {
                problems.push(Problem::new(&path, format!("`{name}` appears twice")));
            }
            Some(name) if TEMPLATE_TYPES.contains(&name) => seen.push(name),
            Some(name) => problems.push(Problem::new(
                &path,
                format!(
                    "`{name}` is not supported; a device template's types are exactly {expected}"
                ),
            )),
            None => problems.push(Problem::new(
                &path,
                format!("expected a string, found {}", json_kind(item)),
            )),
        }
    }
    for name in TEMPLATE_TYPES {
        if !seen.contains(&name) && items.iter().all(|item| item.is_string()) {
            problems.push(Problem::new("$['@type']", format!("must include `{name}`")));
        }
    }
}

/// A string field that may be absent or null.
pub(crate) fn optional_string(
    value: Option<&Value>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => {
            problems.push(Problem::new(
                path,
                format!("expected a string, found {}", json_kind(other)),
            ));
            None
        }
    }
}
