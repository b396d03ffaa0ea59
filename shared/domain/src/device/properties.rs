//! A device's properties as IoT Central's `/devices/{id}/properties` (and
//! `/devices/{id}/components/{name}/properties`) exposes them: cloud properties (stored by the
//! application, readable and writable here), writable device properties (written here as the
//! twin's desired properties, shown with the device's acknowledgement) and read-only reported
//! properties (sent by the device), and the rules a write follows.
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
//! (`["Property", "Cloud"]`) or writable device properties (`"writable": true`) may be written,
//! each value checked against its schema ([`dtdl::validate_value`]). Every problem is reported
//! at once with its JSON path in the body.
//!
//! Decisions where IoT Central is silent:
//! - PUT replaces the device's whole set of cloud properties with the body (a cloud property
//!   left out is removed; `null` means "no value"); PATCH is a JSON merge patch (RFC 7396) of
//!   the stored set: `null` removes a property, an Object-typed value merges field by field and
//!   the merged value is what is validated.
//! - In a write body a component object may carry `"__t": "c"` (as GET shows it); any other
//!   `__t` is refused, as is `$metadata` or any name the template does not declare.
//! - Writable device properties become a merge patch of the twin's desired document, for PUT
//!   and PATCH alike (a PUT does not send removals for what it leaves out: under IoT Plug and
//!   Play a device has no use for them); `null` removes one from the desired document. The 202
//!   echoes them with `desiredValue` and `desiredVersion`. Read-only device properties are
//!   never writable.
//! - A device without a template has nothing to validate against: every write is refused with
//!   a reason (IoT Central only writes properties a template declares).
//! - GET shows what is stored, modelled or not; a cloud property shadows a reported property of
//!   the same name (as in device-group filters), which a template change alone can cause.
//!
//! Not here: storage (`store::device_properties`), HTTP, and the device's template look-up.

use std::fmt;

use serde_json::{Map, Value};

use crate::dtdl::{self, DeviceModel, Problem};
use crate::twin::{self, Twin};

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

/// The device's side of the GET body (before cloud properties overlay it): its twin in IoT
/// Central's REST view ([`twin::rest_view`]), writable properties as the template declares
/// them.
pub fn device_view(model: Option<&DeviceModel>, twin: &Twin) -> Value {
    let writable = |component: Option<&str>, name: &str| {
        model
            .and_then(|model| model.property(component, name))
            .is_some_and(|property| property.writable && !property.cloud)
    };
    Value::Object(twin::rest_view(twin, writable))
}

/// A component's part of a properties body, as the component endpoints show it: its members
/// (and `$metadata`) without the component marker; `{}` when the body has none.
pub fn component_body(body: &Value, component: &str) -> Value {
    let mut members = body
        .get(component)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    members.remove(COMPONENT_MARKER);
    Value::Object(members)
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
        "the device has no device template, so it has no properties to write; assign a template first"
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

/// Where a write body sits: the whole device (`/devices/{id}/properties`, components as
/// marked objects) or one component (`/devices/{id}/components/{name}/properties`, its
/// members at the top level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    Device,
    Component(&'a str),
}

/// What an accepted write changes.
#[derive(Clone, Debug, PartialEq)]
pub struct PropertyWrite {
    /// The device's cloud properties to store.
    pub cloud: CloudProperties,
    /// The cloud properties the body set (`null`: removed), shaped as a patch with components
    /// marked: what the change records name.
    pub cloud_changes: Map<String, Value>,
    /// The merge patch of the device's desired document for the writable device properties
    /// the body set (components marked `"__t": "c"`, as the device must see them); empty when
    /// the body names none.
    pub desired_patch: Map<String, Value>,
}

impl PropertyWrite {
    /// The 202 body: the cloud properties as stored and the writable properties just set, each
    /// echoed under `$metadata.<name>.desiredValue` (writable ones also with `desiredVersion`,
    /// the desired document's version that carries them, when there is one).
    pub fn accepted_body(&self, desired_version: Option<u64>) -> Value {
        let Value::Object(mut out) = self.cloud.accepted_body() else {
            unreachable!("the accepted body is an object");
        };
        fn level(
            patch: &Map<String, Value>,
            out: &mut Map<String, Value>,
            version: Option<u64>,
            root: bool,
        ) {
            for (name, value) in patch {
                if name == COMPONENT_MARKER || value.is_null() {
                    continue;
                }
                if root && is_component_object(value) {
                    let entry = out.entry(name.clone()).or_insert_with(|| {
                        let mut marked = Map::new();
                        marked.insert(COMPONENT_MARKER.into(), COMPONENT_MARKER_VALUE.into());
                        Value::Object(marked)
                    });
                    if let (Value::Object(inner), Value::Object(entry)) = (value, entry) {
                        level(inner, entry, version, false);
                    }
                    continue;
                }
                out.insert(name.clone(), value.clone());
                let mut desired = Map::new();
                desired.insert("desiredValue".into(), value.clone());
                if let Some(version) = version {
                    desired.insert("desiredVersion".into(), version.into());
                }
                let metadata = out
                    .entry(METADATA.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(metadata) = metadata {
                    metadata.insert(name.clone(), Value::Object(desired));
                }
            }
        }
        level(&self.desired_patch, &mut out, desired_version, true);
        Value::Object(out)
    }
}

/// Applies a write (`body`, the request's JSON, at `scope`) to the stored cloud properties
/// `current` and desired document `desired` under the device's template `model` (`None`: the
/// device has none). Cloud properties are stored here (PUT replaces the set, or the
/// component's set at component scope; PATCH merges); writable device properties become a
/// desired patch (always a merge, as the twin is: a PUT does not send removals to the device
/// for the writable properties it leaves out). Nothing is returned unless the whole body is
/// acceptable.
pub fn apply_write(
    model: Option<&DeviceModel>,
    current: &CloudProperties,
    desired: &Map<String, Value>,
    body: &Value,
    mode: WriteMode,
    scope: Scope<'_>,
) -> Result<PropertyWrite, PropertyWriteError> {
    let model = model.ok_or(PropertyWriteError::NoTemplate)?;
    let Value::Object(members) = body else {
        return Err(PropertyWriteError::NotAnObject { found: kind(body) });
    };
    let mut writer = Writer {
        model,
        mode,
        desired,
        next: match (mode, scope) {
            (WriteMode::Replace, Scope::Device) => Map::new(),
            _ => current.0.clone(),
        },
        cloud_changes: Map::new(),
        desired_patch: Map::new(),
        problems: Vec::new(),
    };
    match scope {
        Scope::Component(component) => {
            if model.component(component).is_some() {
                writer.component(component, body, "$");
            } else {
                writer.problems.push(Problem::new(
                    "$",
                    format!("the device template has no component '{component}'"),
                ));
            }
        }
        Scope::Device => {
            for (name, value) in members {
                let path = dtdl::key_path("$", name);
                if model.component(name).is_some() {
                    writer.component(name, value, &path);
                } else {
                    writer.member(None, name, value, &path);
                }
            }
        }
    }
    let Writer {
        next,
        cloud_changes,
        desired_patch,
        mut problems,
        ..
    } = writer;
    if problems.is_empty() {
        Ok(PropertyWrite {
            cloud: CloudProperties(next),
            cloud_changes,
            desired_patch,
        })
    } else {
        let more = problems.len().saturating_sub(MAX_PROBLEMS);
        problems.truncate(MAX_PROBLEMS);
        Err(PropertyWriteError::Invalid { problems, more })
    }
}

/// A write in progress: the next cloud set, the changes, the desired patch, the problems.
struct Writer<'a> {
    model: &'a DeviceModel,
    mode: WriteMode,
    desired: &'a Map<String, Value>,
    next: Map<String, Value>,
    cloud_changes: Map<String, Value>,
    desired_patch: Map<String, Value>,
    problems: Vec<Problem>,
}

impl<'a> Writer<'a> {
    /// `{"<component>": {...}}` in a write body (or the whole body at component scope).
    fn component(&mut self, component: &str, value: &Value, path: &str) {
        let members = match value {
            // PATCH `"comp": null` removes the component's cloud properties; in PUT it is no
            // value. Desired values are the device's to keep: nothing is sent.
            Value::Null => {
                self.next.remove(component);
                return;
            }
            Value::Object(members) => members,
            other => {
                self.problems.push(Problem::new(
                    path,
                    format!(
                        "'{component}' is a component: expected an object of its properties, found {}",
                        kind(other)
                    ),
                ));
                return;
            }
        };
        let mut stored = match self.next.remove(component) {
            Some(Value::Object(stored)) if self.mode == WriteMode::Merge => stored,
            _ => Map::new(),
        };
        for (name, member) in members {
            let member_path = dtdl::key_path(path, name);
            if name == COMPONENT_MARKER {
                if member.as_str() != Some(COMPONENT_MARKER_VALUE) {
                    self.problems.push(Problem::new(
                        &member_path,
                        "the component marker '__t' must be \"c\"",
                    ));
                }
                continue;
            }
            // The component's cloud set is worked on aside, then put back marked.
            std::mem::swap(&mut self.next, &mut stored);
            self.member(Some(component), name, member, &member_path);
            std::mem::swap(&mut self.next, &mut stored);
        }
        stored.remove(COMPONENT_MARKER);
        if !stored.is_empty() {
            let mut marked = Map::new();
            marked.insert(COMPONENT_MARKER.into(), COMPONENT_MARKER_VALUE.into());
            marked.extend(stored);
            self.next
                .insert(component.to_owned(), Value::Object(marked));
        }
    }

    /// Property `name` of `component` (`None`: the root): a cloud property goes to `next` (the
    /// level being written), a writable device property to the desired patch.
    fn member(&mut self, component: Option<&str>, name: &str, value: &Value, path: &str) {
        let Some(property) = self.property(component, name, path) else {
            return;
        };
        if property.cloud {
            self.write_cloud(property, component, name, value, path);
        } else {
            self.write_desired(property, component, name, value, path);
        }
    }

    /// The cloud or writable property `name` of `component`, or the problem with writing it.
    fn property(
        &mut self,
        component: Option<&str>,
        name: &str,
        path: &str,
    ) -> Option<&'a dtdl::Property> {
        let model = self.model;
        let place = match component {
            None => String::from("the device template"),
            Some(component) => format!("component '{component}'"),
        };
        if let Some(property) = model.property(component, name) {
            if property.cloud || property.writable {
                return Some(property);
            }
            self.problems.push(Problem::new(
                path,
                format!(
                    "'{name}' is a read-only device property: only the device reports it, it \
                     cannot be written"
                ),
            ));
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
        self.problems.push(Problem::new(path, message));
        None
    }

    /// Sets (or, for `null`, removes) cloud property `name` in `next`, validating the value.
    fn write_cloud(
        &mut self,
        property: &dtdl::Property,
        component: Option<&str>,
        name: &str,
        value: &Value,
        path: &str,
    ) {
        if value.is_null() {
            self.next.remove(name);
            record(&mut self.cloud_changes, component, name, Value::Null);
            return;
        }
        let mut new_value = match (self.mode, self.next.get(name)) {
            (WriteMode::Merge, Some(stored)) => stored.clone(),
            _ => Value::Null,
        };
        merge_patch(&mut new_value, value);
        if validate(property, &new_value, path, &mut self.problems) {
            record(&mut self.cloud_changes, component, name, new_value.clone());
            self.next.insert(name.to_owned(), new_value);
        }
    }

    /// Adds writable property `name` to the desired patch; the value it will have once merged
    /// into the desired document is what is validated.
    fn write_desired(
        &mut self,
        property: &dtdl::Property,
        component: Option<&str>,
        name: &str,
        value: &Value,
        path: &str,
    ) {
        if !value.is_null() {
            let current = match component {
                None => self.desired.get(name),
                Some(component) => self.desired.get(component).and_then(|c| c.get(name)),
            };
            let mut merged = current.cloned().unwrap_or(Value::Null);
            merge_patch(&mut merged, value);
            if !validate(property, &merged, path, &mut self.problems) {
                return;
            }
        }
        record(&mut self.desired_patch, component, name, value.clone());
    }
}

/// Checks `value` against the property's schema; problems carry the body's path.
fn validate(
    property: &dtdl::Property,
    value: &Value,
    path: &str,
    problems: &mut Vec<Problem>,
) -> bool {
    match dtdl::validate_value(&property.schema, value) {
        Ok(()) => true,
        Err(found) => {
            for problem in found {
                // The value's own path (`$`, `$.fields.x`) rebased onto the body's.
                let suffix = problem.path.strip_prefix('$').unwrap_or(&problem.path);
                problems.push(Problem::new(&format!("{path}{suffix}"), problem.message));
            }
            false
        }
    }
}

/// Puts `name: value` into a patch, under the component's marked object when there is one.
fn record(patch: &mut Map<String, Value>, component: Option<&str>, name: &str, value: Value) {
    let level = match component {
        None => patch,
        Some(component) => {
            let entry = patch.entry(component.to_owned()).or_insert_with(|| {
                let mut marked = Map::new();
                marked.insert(COMPONENT_MARKER.into(), COMPONENT_MARKER_VALUE.into());
                Value::Object(marked)
            });
            match entry {
                Value::Object(level) => level,
                _ => unreachable!("a component's entry is always an object"),
            }
        }
    };
    level.insert(name.to_owned(), value);
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
        let actual = apply_write(
            Some(&model),
            &stored(current),
            &Map::new(),
            &body,
            mode,
            Scope::Device,
        );
        match (actual, expected) {
            (Ok(actual), Ok(expected)) => {
                assert_eq!(Value::Object(actual.cloud.0), expected, "{mode:?} {body}")
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
        let desired = Map::new();
        assert_eq!(
            apply_write(
                None,
                &current,
                &desired,
                &json!({"customerName": "x"}),
                Merge,
                Scope::Device
            ),
            Err(PropertyWriteError::NoTemplate)
        );
        assert_eq!(
            apply_write(
                Some(&model()),
                &current,
                &desired,
                &json!(["customerName"]),
                Replace,
                Scope::Device
            ),
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
            &Map::new(),
            &Value::Object(body),
            Merge,
            Scope::Device,
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

    /// The model with a writable object-typed property and a component with a writable one.
    fn thermostat() -> DeviceModel {
        DeviceModel::parse(&json!({
            "@context": "dtmi:dtdl:context;2",
            "@id": "dtmi:com:example:TemperatureController;1",
            "@type": "Interface",
            "contents": [
                { "@type": "Property", "name": "targetTemperature", "schema": "double",
                  "writable": true },
                { "@type": "Property", "name": "schedule", "writable": true, "schema": {
                    "@type": "Object",
                    "fields": [
                        { "name": "start", "schema": "integer" },
                        { "name": "end", "schema": "integer" }
                    ]
                } },
                { "@type": ["Property", "Cloud"], "name": "site", "schema": "string" },
                { "@type": "Property", "name": "serialNumber", "schema": "string" },
                { "@type": "Component", "name": "thermostat1", "schema": {
                    "@id": "dtmi:com:example:Thermostat;1",
                    "@type": "Interface",
                    "contents": [
                        { "@type": "Property", "name": "targetTemperature", "schema": "double",
                          "writable": true },
                        { "@type": "Property", "name": "maxTempSinceLastReboot",
                          "schema": "double" },
                        { "@type": ["Property", "Cloud"], "name": "room", "schema": "string" }
                    ]
                } }
            ]
        }))
        .expect("the thermostat model is valid DTDL")
    }

    fn write(
        desired: Value,
        body: Value,
        mode: WriteMode,
        scope: Scope<'_>,
    ) -> Result<PropertyWrite, String> {
        let Value::Object(desired) = desired else {
            panic!("desired is an object")
        };
        apply_write(
            Some(&thermostat()),
            &stored(json!({"site": "lab", "thermostat1": {"__t": "c", "room": "r1"}})),
            &desired,
            &body,
            mode,
            scope,
        )
        .map_err(|err| err.to_string())
    }

    #[test]
    fn writable_properties_become_a_desired_patch_with_components_marked() {
        let done = write(
            json!({}),
            json!({"targetTemperature": 21.5, "site": "depot",
                   "thermostat1": {"targetTemperature": 19, "room": "r2"}}),
            Merge,
            Scope::Device,
        )
        .unwrap();
        assert_eq!(
            Value::Object(done.desired_patch.clone()),
            json!({"targetTemperature": 21.5, "thermostat1": {"__t": "c", "targetTemperature": 19}})
        );
        assert_eq!(
            Value::Object(done.cloud.0.clone()),
            json!({"site": "depot", "thermostat1": {"__t": "c", "room": "r2"}})
        );
        assert_eq!(
            Value::Object(done.cloud_changes.clone()),
            json!({"site": "depot", "thermostat1": {"__t": "c", "room": "r2"}})
        );
        assert_eq!(
            done.accepted_body(Some(4)),
            json!({
                "site": "depot",
                "targetTemperature": 21.5,
                "thermostat1": {"__t": "c", "room": "r2", "targetTemperature": 19,
                    "$metadata": {"room": {"desiredValue": "r2"},
                                  "targetTemperature": {"desiredValue": 19, "desiredVersion": 4}}},
                "$metadata": {"site": {"desiredValue": "depot"},
                              "targetTemperature": {"desiredValue": 21.5, "desiredVersion": 4}}
            })
        );
        // Only writable properties: the cloud set is unchanged, PUT or PATCH.
        for mode in [Merge, Replace] {
            let done = write(
                json!({}),
                json!({"targetTemperature": 20}),
                mode,
                Scope::Device,
            )
            .unwrap();
            assert_eq!(
                Value::Object(done.desired_patch),
                json!({"targetTemperature": 20})
            );
            if mode == Merge {
                assert_eq!(done.cloud.0["site"], "lab");
            }
        }
    }

    #[test]
    fn writable_values_are_validated_as_merged_into_the_desired_document() {
        let desired = json!({"schedule": {"start": 8, "end": 18}});
        let done = write(
            desired.clone(),
            json!({"schedule": {"end": 20}}),
            Merge,
            Scope::Device,
        )
        .unwrap();
        assert_eq!(
            Value::Object(done.desired_patch),
            json!({"schedule": {"end": 20}})
        );
        assert_eq!(
            write(
                desired.clone(),
                json!({"schedule": {"end": "late"}}),
                Merge,
                Scope::Device
            )
            .unwrap_err(),
            "$.schedule.end: expected an integer (32-bit), found 'late'"
        );
        assert_eq!(
            write(
                json!({}),
                json!({"targetTemperature": "warm"}),
                Replace,
                Scope::Device
            )
            .unwrap_err(),
            "$.targetTemperature: expected a double, found 'warm'"
        );
        assert_eq!(
            write(
                json!({}),
                json!({"serialNumber": "x", "thermostat1": {"maxTempSinceLastReboot": 1}}),
                Merge,
                Scope::Device
            )
            .unwrap_err(),
            "$.serialNumber: 'serialNumber' is a read-only device property: only the device \
             reports it, it cannot be written; $.thermostat1.maxTempSinceLastReboot: \
             'maxTempSinceLastReboot' is a read-only device property: only the device reports \
             it, it cannot be written"
        );
        // `null` removes a desired value; nothing to validate.
        let done = write(desired, json!({"schedule": null}), Merge, Scope::Device).unwrap();
        assert_eq!(Value::Object(done.desired_patch), json!({"schedule": null}));
    }

    #[test]
    fn a_component_scope_writes_that_component_only_with_paths_relative_to_it() {
        let done = write(
            json!({}),
            json!({"targetTemperature": 18, "room": "r9"}),
            Replace,
            Scope::Component("thermostat1"),
        )
        .unwrap();
        assert_eq!(
            Value::Object(done.desired_patch.clone()),
            json!({"thermostat1": {"__t": "c", "targetTemperature": 18}})
        );
        // PUT replaces the component's cloud set and keeps the root's.
        assert_eq!(
            Value::Object(done.cloud.0.clone()),
            json!({"site": "lab", "thermostat1": {"__t": "c", "room": "r9"}})
        );
        let put = write(
            json!({}),
            json!({}),
            Replace,
            Scope::Component("thermostat1"),
        )
        .unwrap();
        assert_eq!(Value::Object(put.cloud.0), json!({"site": "lab"}));
        assert_eq!(
            component_body(&done.accepted_body(Some(2)), "thermostat1"),
            json!({"room": "r9", "targetTemperature": 18, "$metadata": {
                "room": {"desiredValue": "r9"},
                "targetTemperature": {"desiredValue": 18, "desiredVersion": 2}}})
        );
        assert_eq!(
            write(
                json!({}),
                json!({"targetTemperature": true}),
                Merge,
                Scope::Component("thermostat1")
            )
            .unwrap_err(),
            "$.targetTemperature: expected a double, found true"
        );
        assert_eq!(
            write(
                json!({}),
                json!({"site": "x"}),
                Merge,
                Scope::Component("thermostat1")
            )
            .unwrap_err(),
            "$.site: component 'thermostat1' declares no property 'site'"
        );
    }

    #[test]
    fn the_device_view_shows_acknowledged_values_with_their_metadata() {
        let now = crate::time::Timestamp::from_unix_millis(1_764_000_000_000);
        let later = crate::time::Timestamp::from_unix_millis(1_764_000_005_000);
        let mut twin = Twin::new(now);
        twin.desired
            .apply_patch(
                &json!({"targetTemperature": 22,
                        "thermostat1": {"__t": "c", "targetTemperature": 19}}),
                now,
            )
            .unwrap();
        // Not yet acknowledged: the desired value in metadata, no value.
        let view = device_view(Some(&thermostat()), &twin);
        assert_eq!(
            view,
            json!({
                "$metadata": {"targetTemperature": {"desiredValue": 22, "desiredVersion": 2,
                                                    "lastUpdateTime": now.to_rfc3339()}},
                "thermostat1": {"__t": "c", "$metadata": {"targetTemperature": {
                    "desiredValue": 19, "desiredVersion": 2, "lastUpdateTime": now.to_rfc3339()}}}
            })
        );
        twin.reported
            .apply_patch(
                &json!({"targetTemperature": {"value": 22, "ac": 200, "av": 2, "ad": "completed"},
                        "serialNumber": "SN-1",
                        "thermostat1": {"__t": "c", "maxTempSinceLastReboot": 30,
                                        "targetTemperature": {"value": 18.5, "ac": 202, "av": 2}}}),
                later,
            )
            .unwrap();
        let view = device_view(Some(&thermostat()), &twin);
        assert_eq!(
            view,
            json!({
                "serialNumber": "SN-1",
                "targetTemperature": 22,
                "$metadata": {"targetTemperature": {
                    "desiredValue": 22, "desiredVersion": 2, "ackCode": 200, "ackVersion": 2,
                    "ackDescription": "completed", "lastUpdateTime": later.to_rfc3339()}},
                "thermostat1": {"__t": "c", "maxTempSinceLastReboot": 30, "targetTemperature": 18.5,
                    "$metadata": {"targetTemperature": {
                        "desiredValue": 19, "desiredVersion": 2, "ackCode": 202, "ackVersion": 2,
                        "lastUpdateTime": later.to_rfc3339()}}}
            })
        );
        // Cloud properties overlay it, components merging.
        let body = properties_body(
            &stored(json!({"site": "lab", "thermostat1": {"__t": "c", "room": "r1"}})),
            &view,
        );
        assert_eq!(body["thermostat1"]["room"], "r1");
        assert_eq!(
            body["thermostat1"]["$metadata"]["targetTemperature"]["ackCode"],
            202
        );
        assert_eq!(
            component_body(&body, "thermostat1")["targetTemperature"],
            18.5
        );
        assert_eq!(component_body(&body, "nothing"), json!({}));
        // Without a template an acknowledgement shape is shown as reported, unless it was
        // desired.
        let mut untemplated = Twin::new(now);
        untemplated
            .reported
            .apply_patch(&json!({"fan": {"value": 1, "ac": 200}}), now)
            .unwrap();
        assert_eq!(
            device_view(None, &untemplated),
            json!({"fan": {"value": 1, "ac": 200}})
        );
    }
}
