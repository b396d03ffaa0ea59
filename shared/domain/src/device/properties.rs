//! A device's properties as IoT Central's `/devices/{id}/properties` exposes them: cloud
//! properties (stored by the application, readable and writable here) and reported properties
//! (sent by the device, read-only here), and the rules a write of cloud properties follows.
//!
//! Shapes (IoT Central's, for the root component's endpoint):
//! - Root-component properties sit at the top level: `{"customerName": "Contoso"}`.
//! - A component's properties sit in an object marked `"__t": "c"` under the component's
//!   name: `{"settings": {"__t": "c", "voltage": 25}}`. Stored cloud properties keep the same
//!   shape (marker included), so the stored JSON is self-describing and serves as is.
//! - A successful write answers 202 with the cloud properties as stored after the write, each
//!   also echoed as IoT Central's `"$metadata": {"<name>": {"desiredValue": <value>}}`.
//!
//! Write rules: only properties the device's template declares as cloud properties
//! (`["Property", "Cloud"]`) may be written, each value checked against its schema
//! ([`dtdl::validate_value`]). Every problem is reported at once with its JSON path in the body.
//!
//! Decisions where IoT Central is silent:
//! - PUT replaces the device's whole set of cloud properties with the body (a cloud property
//!   left out is removed; `null` means "no value"); PATCH is a JSON merge patch (RFC 7396) of
//!   the stored set: `null` removes a property, an Object-typed value merges field by field and
//!   the merged value is what is validated.
//! - In a write body a component object may carry `"__t": "c"` (as GET shows it); any other
//!   `__t` is refused, as is `$metadata` or any name the template does not declare.
//! - Writable device properties (sent to the device as desired properties) are refused with a
//!   reason for now; read-only device properties are never writable.
//! - GET shows what is stored, modelled or not; a cloud property shadows a reported property of
//!   the same name (as in device-group filters), which a template change alone can cause.
//!
//! Not here: storage (`store::device_properties`), HTTP, and the device's template look-up.

use std::fmt;

use serde_json::{Map, Value};

use crate::dtdl::{self, DeviceModel, Problem};

/// The key marking a component's object, and its value.
const COMPONENT_MARKER: &str = "__t";
const COMPONENT_MARKER_VALUE: &str = "c";
/// IoT Central's metadata member of a properties body.
const METADATA: &str = "$metadata";
/// A write reports at most this many problems, then how many more there were.
pub const MAX_PROBLEMS: usize = 50;

/// A device's cloud properties as stored: root-component properties at the top level, each
/// component's in an object marked `"__t": "c"`. Invariant: a JSON object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CloudProperties(Map<String, Value>);

impl CloudProperties {
    /// Reads the stored JSON; `None` when it is not a JSON object.
    pub fn from_json(json: Value) -> Option<CloudProperties> {
        match json {
            Value::Object(map) => Some(CloudProperties(map)),
            _ => None,
        }
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The JSON text to store.
    pub fn to_json_text(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    /// The 202 body of a write: every cloud property as stored, with IoT Central's
    /// `$metadata.<name>.desiredValue` beside it at each level.
    pub fn accepted_body(&self) -> Value {
        fn level(members: &Map<String, Value>, out: &mut Map<String, Value>) {
            let mut metadata = Map::new();
            for (name, value) in members {
                if name == COMPONENT_MARKER {
                    continue;
                }
                if is_component_object(value) {
                    let mut component = Map::new();
                    component.insert(COMPONENT_MARKER.into(), COMPONENT_MARKER_VALUE.into());
                    if let Value::Object(inner) = value {
                        level(inner, &mut component);
                    }
                    out.insert(name.clone(), Value::Object(component));
                } else {
                    out.insert(name.clone(), value.clone());
                    let mut desired = Map::new();
                    desired.insert("desiredValue".into(), value.clone());
                    metadata.insert(name.clone(), Value::Object(desired));
                }
            }
            if !metadata.is_empty() {
                out.insert(METADATA.into(), Value::Object(metadata));
            }
        }
        let mut out = Map::new();
        level(&self.0, &mut out);
        Value::Object(out)
    }
}

/// The body of `GET /devices/{id}/properties`: reported properties overlaid with cloud
/// properties (a cloud property wins a name clash; component objects merge member by member).
/// A `reported` that is not an object counts as empty.
pub fn properties_body(cloud: &CloudProperties, reported: &Value) -> Value {
    let mut out = match reported {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (name, value) in &cloud.0 {
        match (out.get_mut(name), value) {
            (Some(existing), Value::Object(members))
                if is_component_object(existing) && is_component_object(value) =>
            {
                if let Value::Object(existing) = existing {
                    for (member, member_value) in members {
                        existing.insert(member.clone(), member_value.clone());
                    }
                }
            }
            _ => {
                out.insert(name.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

fn is_component_object(value: &Value) -> bool {
    value
        .as_object()
        .and_then(|map| map.get(COMPONENT_MARKER))
        .and_then(Value::as_str)
        == Some(COMPONENT_MARKER_VALUE)
}

/// A PUT body as read from the request: any JSON value; [`apply_write`] decides whether it is
/// acceptable.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(transparent)]
pub struct WriteBody(Value);

impl WriteBody {
    pub fn json(&self) -> &Value {
        &self.0
    }
}

impl From<Value> for WriteBody {
    /// A PATCH body, already read as a JSON merge patch.
    fn from(json: Value) -> WriteBody {
        WriteBody(json)
    }
}

/// How a write combines with the stored cloud properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// PUT: the body becomes the whole set of cloud properties.
    Replace,
    /// PATCH: the body is a JSON merge patch of the stored set.
    Merge,
}

/// Why a write of cloud properties was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PropertyWriteError {
    #[error(
        "the device has no device template, so it has no cloud properties; assign a template first"
    )]
    NoTemplate,
    #[error("a properties body must be a JSON object, found {found}")]
    NotAnObject { found: &'static str },
    /// Every problem found (never empty), each with its JSON path in the body.
    #[error("{}", ProblemList(problems, *more))]
    Invalid {
        problems: Vec<Problem>,
        /// How many problems past [`MAX_PROBLEMS`] were left out.
        more: usize,
    },
}

struct ProblemList<'a>(&'a [Problem], usize);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        if self.1 > 0 {
            write!(f, "; and {} more", self.1)?;
        }
        Ok(())
    }
}

/// Applies a write of cloud properties (`body`, the request's JSON) to the stored `current`
/// set under the device's template `model` (`None`: the device has none), and returns the new
/// set to store. Nothing is returned unless the whole body is acceptable.
pub fn apply_write(
    model: Option<&DeviceModel>,
    current: &CloudProperties,
    body: &Value,
    mode: WriteMode,
) -> Result<CloudProperties, PropertyWriteError> {
    let model = model.ok_or(PropertyWriteError::NoTemplate)?;
    let Value::Object(body) = body else {
        return Err(PropertyWriteError::NotAnObject { found: kind(body) });
    };
    let mut next = match mode {
        WriteMode::Replace => Map::new(),
        WriteMode::Merge => current.0.clone(),
    };
    let mut problems = Vec::new();
    for (name, value) in body {
        let path = dtdl::key_path("$", name);
        if model.component(name).is_some() {
            write_component(model, name, value, &path, mode, &mut next, &mut problems);
        } else if let Some(property) = cloud_property(model, None, name, &path, &mut problems) {
            write_value(property, name, value, &path, mode, &mut next, &mut problems);
        }
    }
    if problems.is_empty() {
        Ok(CloudProperties(next))
    } else {
        let more = problems.len().saturating_sub(MAX_PROBLEMS);
        problems.truncate(MAX_PROBLEMS);
        Err(PropertyWriteError::Invalid { problems, more })
    }
}

/// `{"<component>": {...}}` in a write body.
fn write_component(
    model: &DeviceModel,
    component: &str,
    value: &Value,
    path: &str,
    mode: WriteMode,
    next: &mut Map<String, Value>,
    problems: &mut Vec<Problem>,
) {
    let members = match value {
        // PATCH `"comp": null` removes the component's cloud properties; in PUT it is no value.
        Value::Null => {
            next.remove(component);
            return;
        }
        Value::Object(members) => members,
        other => {
            problems.push(Problem::new(
                path,
                format!(
                    "'{component}' is a component: expected an object of its properties, found {}",
                    kind(other)
                ),
            ));
            return;
        }
    };
    let mut stored = match next.remove(component) {
        Some(Value::Object(stored)) if mode == WriteMode::Merge => stored,
        _ => Map::new(),
    };
    for (name, member) in members {
        let member_path = dtdl::key_path(path, name);
        if name == COMPONENT_MARKER {
            if member.as_str() != Some(COMPONENT_MARKER_VALUE) {
                problems.push(Problem::new(
                    &member_path,
                    "the component marker '__t' must be \"c\"",
                ));
            }
            continue;
        }
        if let Some(property) = cloud_property(model, Some(component), name, &member_path, problems)
        {
            write_value(
                property,
                name,
                member,
                &member_path,
                mode,
                &mut stored,
                problems,
            );
        }
    }
    stored.remove(COMPONENT_MARKER);
    if !stored.is_empty() {
        let mut marked = Map::new();
        marked.insert(COMPONENT_MARKER.into(), COMPONENT_MARKER_VALUE.into());
        marked.extend(stored);
        next.insert(component.to_owned(), Value::Object(marked));
    }
}

/// The cloud property `name` of `component`, or the problem with writing it.
fn cloud_property<'m>(
    model: &'m DeviceModel,
    component: Option<&str>,
    name: &str,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<&'m dtdl::Property> {
    let place = match component {
        None => String::from("the device template"),
        Some(component) => format!("component '{component}'"),
    };
    if let Some(property) = model.property(component, name) {
        if property.cloud {
            return Some(property);
        }
        let why = if property.writable {
            format!(
                "'{name}' is a writable device property, not a cloud property; writing it \
                 would send it to the device, which this endpoint does not do yet"
            )
        } else {
            format!(
                "'{name}' is a read-only device property: only the device reports it, it \
                 cannot be written"
            )
        };
        problems.push(Problem::new(path, why));
        return None;
    }
    let interface = match component {
        None => Some(model.root()),
        Some(component) => model.component(component).map(|c| &c.interface),
    };
    let other = interface.and_then(|interface| {
        interface
            .contents
            .iter()
            .find(|content| content.name() == name)
    });
    let message = match other {
        Some(dtdl::Content::Telemetry(_)) => {
            format!("'{name}' is a telemetry of {place}, not a property")
        }
        Some(dtdl::Content::Command(_)) => {
            format!("'{name}' is a command of {place}, not a property")
        }
        Some(dtdl::Content::Relationship(_)) => {
            format!("'{name}' is a relationship of {place}, not a property")
        }
        _ => format!("{place} declares no property '{name}'"),
    };
    problems.push(Problem::new(path, message));
    None
}

/// Sets (or, for `null`, removes) cloud property `name` in `target`, validating the value.
fn write_value(
    property: &dtdl::Property,
    name: &str,
    value: &Value,
    path: &str,
    mode: WriteMode,
    target: &mut Map<String, Value>,
    problems: &mut Vec<Problem>,
) {
    if value.is_null() {
        target.remove(name);
        return;
    }
    let mut new_value = match (mode, target.get(name)) {
        (WriteMode::Merge, Some(stored)) => stored.clone(),
        _ => Value::Null,
    };
    merge_patch(&mut new_value, value);
    match dtdl::validate_value(&property.schema, &new_value) {
        Ok(()) => {
            target.insert(name.to_owned(), new_value);
        }
        Err(found) => {
            for problem in found {
                // The value's own path (`$`, `$.fields.x`) rebased onto the body's.
                let suffix = problem.path.strip_prefix('$').unwrap_or(&problem.path);
                problems.push(Problem::new(&format!("{path}{suffix}"), problem.message));
            }
        }
    }
}

/// RFC 7396: objects merge member by member, `null` removes a member, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn kind(value: &Value) -> &'static str {
    dtdl::json_kind(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A template with root cloud properties of several schemas, device properties, telemetry
    /// and a command, and a component with its own cloud and device properties.
    fn model() -> DeviceModel {
        DeviceModel::parse(&json!({
            "@context": ["dtmi:iotcentral:context;2", "dtmi:dtdl:context;2"],
            "@id": "dtmi:contoso:Truck;1",
            "@type": "Interface",
            "contents": [
                { "@type": ["Property", "Cloud"], "name": "customerName", "schema": "string" },
                { "@type": ["Property", "Cloud"], "name": "serviceDate", "schema": "date" },
                { "@type": ["Property", "Cloud"], "name": "depot", "schema": "geopoint" },
                { "@type": ["Property", "Cloud"], "name": "contract", "schema": {
                    "@type": "Object",
                    "fields": [
                        { "name": "number", "schema": "string" },
                        { "name": "years", "schema": "integer" }
                    ]
                } },
                { "@type": "Property", "name": "firmware", "schema": "string" },
                { "@type": "Property", "name": "targetTemperature", "schema": "double",
                  "writable": true },
                { "@type": "Telemetry", "name": "temperature", "schema": "double" },
                { "@type": "Command", "name": "reboot" },
                { "@type": "Component", "name": "settings", "schema": {
                    "@id": "dtmi:contoso:Settings;1",
                    "@type": "Interface",
                    "contents": [
                        { "@type": ["Property", "Cloud"], "name": "voltage", "schema": "double" },
                        { "@type": "Property", "name": "serial", "schema": "string" }
                    ]
                } }
            ]
        }))
        .expect("the test model is valid DTDL")
    }

    fn stored(json: Value) -> CloudProperties {
        CloudProperties::from_json(json).unwrap()
    }

    /// Applies `body` in `mode` to `current` and compares with `expected`: the new stored set,
    /// or the error's text.
    fn check(mode: WriteMode, current: Value, body: Value, expected: Result<Value, &str>) {
        let model = model();
        let actual = apply_write(Some(&model), &stored(current), &body, mode);
        match (actual, expected) {
            (Ok(actual), Ok(expected)) => {
                assert_eq!(Value::Object(actual.0), expected, "{mode:?} {body}")
            }
            (Err(actual), Err(expected)) => {
                assert_eq!(actual.to_string(), expected, "{mode:?} {body}")
            }
            (actual, expected) => panic!("{mode:?} {body}: got {actual:?}, expected {expected:?}"),
        }
    }

    use WriteMode::{Merge, Replace};

    #[test]
    fn patch_merges_cloud_properties_and_null_removes_them() {
        let both = json!({"customerName": "Contoso", "serviceDate": "2025-01-31"});
        check(
            Merge,
            json!({}),
            json!({"customerName": "Contoso"}),
            Ok(json!({"customerName": "Contoso"})),
        );
        check(
            Merge,
            json!({"serviceDate": "2025-01-31"}),
            json!({"customerName": "Contoso"}),
            Ok(both.clone()),
        );
        check(
            Merge,
            both.clone(),
            json!({"customerName": null}),
            Ok(json!({"serviceDate": "2025-01-31"})),
        );
        check(Merge, both.clone(), json!({}), Ok(both.clone()));
        // Removing what is not there is no error.
        check(
            Merge,
            json!({}),
            json!({"customerName": null}),
            Ok(json!({})),
        );
        // Object values merge field by field, and the merged value is what is checked.
        check(
            Merge,
            json!({"contract": {"number": "C-1", "years": 2}}),
            json!({"contract": {"years": 3}}),
            Ok(json!({"contract": {"number": "C-1", "years": 3}})),
        );
        check(
            Merge,
            json!({"contract": {"number": "C-1", "years": 2}}),
            json!({"contract": {"years": null}}),
            Ok(json!({"contract": {"number": "C-1"}})),
        );
        check(
            Merge,
            json!({}),
            json!({"depot": {"lat": 47.6, "lon": -122.3}}),
            Ok(json!({"depot": {"lat": 47.6, "lon": -122.3}})),
        );
    }

    #[test]
    fn put_replaces_the_whole_set() {
        let both = json!({"customerName": "Contoso", "serviceDate": "2025-01-31"});
        check(
            Replace,
            both.clone(),
            json!({"customerName": "Fabrikam"}),
            Ok(json!({"customerName": "Fabrikam"})),
        );
        check(Replace, both.clone(), json!({}), Ok(json!({})));
        check(
            Replace,
            both.clone(),
            json!({"customerName": null}),
            Ok(json!({})),
        );
        check(
            Replace,
            json!({"contract": {"number": "C-1", "years": 2}}),
            json!({"contract": {"years": 3}}),
            Ok(json!({"contract": {"years": 3}})),
        );
    }

    #[test]
    fn components_are_marked_and_merge_within_themselves() {
        check(
            Merge,
            json!({}),
            json!({"settings": {"voltage": 25}}),
            Ok(json!({"settings": {"__t": "c", "voltage": 25}})),
        );
        check(
            Merge,
            json!({"customerName": "x"}),
            json!({"settings": {"__t": "c", "voltage": 25.5}}),
            Ok(json!({"customerName": "x", "settings": {"__t": "c", "voltage": 25.5}})),
        );
        check(
            Merge,
            json!({"settings": {"__t": "c", "voltage": 1}}),
            json!({"settings": {"voltage": null}}),
            Ok(json!({})),
        );
        check(
            Merge,
            json!({"settings": {"__t": "c", "voltage": 1}}),
            json!({"settings": null}),
            Ok(json!({})),
        );
        check(
            Merge,
            json!({"settings": {"__t": "c", "voltage": 1}}),
            json!({"settings": {}}),
            Ok(json!({"settings": {"__t": "c", "voltage": 1}})),
        );
        check(
            Replace,
            json!({"settings": {"__t": "c", "voltage": 1}}),
            json!({"customerName": "y"}),
            Ok(json!({"customerName": "y"})),
        );
    }

    #[test]
    fn wrong_types_are_refused_with_their_path() {
        check(
            Merge,
            json!({}),
            json!({"customerName": 42}),
            Err("$.customerName: expected a string, found 42"),
        );
        check(
            Merge,
            json!({}),
            json!({"serviceDate": "2025-02-30"}),
            Err("$.serviceDate: expected a date (RFC 3339 full-date, e.g. 2024-05-31), found '2025-02-30'"),
        );
        check(
            Merge,
            json!({"contract": {"number": "C-1"}}),
            json!({"contract": {"years": "three"}}),
            Err("$.contract.years: expected an integer (32-bit), found 'three'"),
        );
        check(
            Replace,
            json!({}),
            json!({"settings": {"voltage": "high"}}),
            Err("$.settings.voltage: expected a double, found 'high'"),
        );
        check(
            Merge,
            json!({}),
            json!({"depot": {"lat": 95, "lon": 0}}),
            Err("$.depot.lat: lat must be between -90 and 90, found 95"),
        );
        check(
            Merge,
            json!({}),
            json!({"settings": 3}),
            Err("$.settings: 'settings' is a component: expected an object of its properties, found a number"),
        );
        check(
            Merge,
            json!({}),
            json!({"settings": {"__t": "x"}}),
            Err("$.settings.__t: the component marker '__t' must be \"c\""),
        );
    }

    #[test]
    fn only_declared_cloud_properties_are_writable() {
        check(
            Merge,
            json!({}),
            json!({"nickname": "x"}),
            Err("$.nickname: the device template declares no property 'nickname'"),
        );
        check(
            Merge,
            json!({}),
            json!({"firmware": "2.0"}),
            Err("$.firmware: 'firmware' is a read-only device property: only the device reports it, it cannot be written"),
        );
        check(
            Merge,
            json!({}),
            json!({"targetTemperature": 21}),
            Err("$.targetTemperature: 'targetTemperature' is a writable device property, not a cloud property; writing it would send it to the device, which this endpoint does not do yet"),
        );
        check(Merge, json!({}), json!({"temperature": 21}), Err("$.temperature: 'temperature' is a telemetry of the device template, not a property"));
        check(
            Merge,
            json!({}),
            json!({"reboot": {}}),
            Err("$.reboot: 'reboot' is a command of the device template, not a property"),
        );
        check(
            Merge,
            json!({}),
            json!({"settings": {"serial": "s"}}),
            Err("$.settings.serial: 'serial' is a read-only device property: only the device reports it, it cannot be written"),
        );
        check(
            Merge,
            json!({}),
            json!({"settings": {"customerName": "x"}}),
            Err(
                "$.settings.customerName: component 'settings' declares no property 'customerName'",
            ),
        );
        check(
            Merge,
            json!({}),
            json!({"$metadata": {}}),
            Err("$['$metadata']: the device template declares no property '$metadata'"),
        );
        // Odd names are named, quoted, and never interpreted.
        check(
            Merge,
            json!({}),
            json!({"x'; DROP TABLE devices; --": 1}),
            Err("$['x\\'; DROP TABLE devices; --']: the device template declares no property 'x'; DROP TABLE devices; --'"),
        );
        check(
            Merge,
            json!({}),
            json!({"$.customerName": "x"}),
            Err("$['$.customerName']: the device template declares no property '$.customerName'"),
        );
    }

    #[test]
    fn every_problem_is_reported_and_nothing_is_applied() {
        check(
            Merge,
            json!({"customerName": "kept"}),
            json!({"customerName": "new", "serviceDate": 1, "nickname": true}),
            Err(
                "$.nickname: the device template declares no property 'nickname'; \
                 $.serviceDate: expected a date (RFC 3339 full-date, e.g. 2024-05-31), found 1",
            ),
        );
    }

    #[test]
    fn a_device_without_a_template_or_a_non_object_body_is_refused() {
        let current = stored(json!({}));
        assert_eq!(
            apply_write(None, &current, &json!({"customerName": "x"}), Merge),
            Err(PropertyWriteError::NoTemplate)
        );
        assert_eq!(
            apply_write(Some(&model()), &current, &json!(["customerName"]), Replace),
            Err(PropertyWriteError::NotAnObject { found: "an array" })
        );
    }

    #[test]
    fn problems_are_capped() {
        let body: Map<String, Value> = (0..MAX_PROBLEMS + 7)
            .map(|i| (format!("p{i}"), json!(1)))
            .collect();
        let Err(PropertyWriteError::Invalid { problems, more }) = apply_write(
            Some(&model()),
            &stored(json!({})),
            &Value::Object(body),
            Merge,
        ) else {
            panic!("refused")
        };
        assert_eq!((problems.len(), more), (MAX_PROBLEMS, 7));
    }

    #[test]
    fn get_overlays_cloud_properties_on_reported_ones() {
        let check = |cloud: Value, reported: Value, expected: Value| {
            assert_eq!(
                properties_body(&stored(cloud.clone()), &reported),
                expected,
                "{cloud} over {reported}"
            );
        };
        check(json!({}), json!({}), json!({}));
        check(
            json!({"customerName": "C"}),
            json!({"firmware": "1.0"}),
            json!({"customerName": "C", "firmware": "1.0"}),
        );
        check(
            json!({"settings": {"__t": "c", "voltage": 25}}),
            json!({"settings": {"__t": "c", "serial": "S1"}}),
            json!({"settings": {"__t": "c", "voltage": 25, "serial": "S1"}}),
        );
        check(
            json!({"City": "Seattle"}),
            json!({"City": "Ignored"}),
            json!({"City": "Seattle"}),
        );
        check(json!({"a": 1}), json!("not an object"), json!({"a": 1}));
    }

    #[test]
    fn the_accepted_body_echoes_desired_values() {
        let check = |cloud: Value, expected: Value| {
            assert_eq!(stored(cloud.clone()).accepted_body(), expected, "{cloud}");
        };
        check(json!({}), json!({}));
        check(
            json!({"customerName": "C", "serviceDate": "2025-01-31"}),
            json!({"customerName": "C", "serviceDate": "2025-01-31", "$metadata": {
                "customerName": {"desiredValue": "C"}, "serviceDate": {"desiredValue": "2025-01-31"}}}),
        );
        check(
            json!({"settings": {"__t": "c", "voltage": 25}}),
            json!({"settings": {"__t": "c", "voltage": 25, "$metadata": {"voltage": {"desiredValue": 25}}}}),
        );
    }
}
