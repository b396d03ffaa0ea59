//! Device twin documents (groundwork for the properties issue): a device's desired and reported
//! properties, each a JSON object with a `$version` that only grows and the time every property
//! was last updated, patched with JSON merge-patch semantics as IoT Hub does.
//!
//! What IoT Hub and the SDKs expect, and what holds here:
//! - Both documents start at `$version` 1; every accepted patch adds one, whatever it changed
//!   (IoT Hub counts patches, not changes).
//! - A patch is a JSON object; `null` removes a property, an object merges into an object, any
//!   other value replaces. A top-level `$version` in a patch is ignored (the service owns it).
//! - Keys are at most 1 KB and contain no control characters, `.`, `$` or space; documents nest
//!   at most [`MAX_DEPTH`] levels and stay under [`MAX_DOCUMENT_BYTES`]. A refused patch changes
//!   nothing.
//! - The wire form always carries `$version` (reference §8.13: the Python SDK raises without
//!   it); components are plain nested objects marked `"__t": "c"` by the device or the service,
//!   which this module treats like any other key.
//! - `$metadata` mirrors the document: every object and value has `$lastUpdated`, the time of
//!   the patch that last touched it (an object's is its newest child's); every value also has
//!   `$lastUpdatedVersion`, the document version that patch produced (as IoT Hub's desired
//!   metadata), which is the `desiredVersion` a device acknowledges with `av`.
//!
//! [`rest_view`] is IoT Central's REST view of writable properties: the reported value beside
//! `$metadata.<name>` with the desired value and the device's IoT Plug and Play
//! acknowledgement; [`change_events`] splits a patch into the per-component records the export
//! issue reads. Pure: no IO, the time is an argument.

use serde_json::{Map, Value};

use crate::time::Timestamp;

/// Deepest nesting of objects in a document (IoT Hub's limit for desired and reported).
pub const MAX_DEPTH: usize = 10;
/// Largest document, as compact JSON (IoT Hub's 32 KB per desired or reported document).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

const VERSION: &str = "$version";
const LAST_UPDATED: &str = "$lastUpdated";
const LAST_UPDATED_VERSION: &str = "$lastUpdatedVersion";
/// The key marking a component's object, and its value.
const COMPONENT_MARKER: &str = "__t";
const COMPONENT_MARKER_VALUE: &str = "c";
/// IoT Central's metadata member of a properties view.
const METADATA: &str = "$metadata";

/// Why a patch was refused. `path` is the JSON path of the offending key (`$.a.b`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    #[error("a twin patch must be a JSON object")]
    NotAnObject,
    #[error("`{path}`: keys are 1 to 1024 bytes without control characters, `.`, `$` or space")]
    InvalidKey { path: String },
    #[error("`{path}`: objects nest at most {MAX_DEPTH} levels")]
    TooDeep { path: String },
    #[error("the document would be {bytes} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit")]
    TooLarge { bytes: usize },
}

/// One side of a twin: desired or reported.
#[derive(Clone, Debug, PartialEq)]
pub struct TwinDocument {
    properties: Map<String, Value>,
    version: u64,
    /// `{"$lastUpdated": ..., "<key>": {"$lastUpdated": ..., ...}}`, mirroring `properties`.
    metadata: Map<String, Value>,
}

impl TwinDocument {
    /// An empty document at version 1, created at `now`.
    pub fn new(now: Timestamp) -> TwinDocument {
        let mut metadata = Map::new();
        metadata.insert(LAST_UPDATED.to_owned(), Value::String(now.to_rfc3339()));
        TwinDocument {
            properties: Map::new(),
            version: 1,
            metadata,
        }
    }

    /// A document as stored: its properties, version and metadata.
    pub fn from_parts(
        properties: Map<String, Value>,
        version: u64,
        metadata: Map<String, Value>,
    ) -> TwinDocument {
        TwinDocument {
            properties,
            version,
            metadata,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn properties(&self) -> &Map<String, Value> {
        &self.properties
    }

    /// `$metadata`: when each property was last updated.
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// Applies `patch` at `now` and returns the new version; on error nothing changes.
    pub fn apply_patch(&mut self, patch: &Value, now: Timestamp) -> Result<u64, TwinError> {
        let Value::Object(patch) = patch else {
            return Err(TwinError::NotAnObject);
        };
        let mut patch = patch.clone();
        patch.remove(VERSION);
        check_keys(&patch, "$", 1)?;
        let mut properties = self.properties.clone();
        let mut metadata = self.metadata.clone();
        let at = Value::String(now.to_rfc3339());
        let stamp = Stamp {
            at: &at,
            version: self.version + 1,
        };
        merge(&mut properties, &mut metadata, &patch, &stamp);
        let bytes = serde_json::to_vec(&properties).map_or(usize::MAX, |json| json.len());
        if bytes > MAX_DOCUMENT_BYTES {
            return Err(TwinError::TooLarge { bytes });
        }
        metadata.insert(LAST_UPDATED.to_owned(), at);
        self.properties = properties;
        self.metadata = metadata;
        self.version += 1;
        Ok(self.version)
    }

    /// The document as the SDKs read it: the properties with `$version`.
    pub fn to_wire(&self) -> Value {
        let mut wire = self.properties.clone();
        wire.insert(VERSION.to_owned(), Value::from(self.version));
        Value::Object(wire)
    }
}

/// A device's twin, both sides.
#[derive(Clone, Debug, PartialEq)]
pub struct Twin {
    pub desired: TwinDocument,
    pub reported: TwinDocument,
}

impl Twin {
    pub fn new(now: Timestamp) -> Twin {
        Twin {
            desired: TwinDocument::new(now),
            reported: TwinDocument::new(now),
        }
    }

    /// The body of a `$iothub/twin/res/200` answer to `$iothub/twin/GET`.
    pub fn to_get_response(&self) -> Value {
        serde_json::json!({
            "desired": self.desired.to_wire(),
            "reported": self.reported.to_wire(),
        })
    }
}

/// The body of a desired-property push (`$iothub/twin/PATCH/properties/desired/?$version=N`):
/// the patch as applied, with the version it produced.
pub fn desired_push(patch: &Value, version: u64) -> Value {
    let mut body = match patch {
        Value::Object(patch) => patch.clone(),
        _ => Map::new(),
    };
    body.insert(VERSION.to_owned(), Value::from(version));
    Value::Object(body)
}

/// IoT Central's REST view of a device's properties as its twin holds them (root and
/// components, cloud properties aside): what the device reported, where a writable property's
/// value is the one it acknowledged (`{"value": v, "ac": .., "av": .., "ad": ..}` reported
/// shows as `v`), and beside each writable property `$metadata.<name>` with `desiredValue`,
/// `desiredVersion`, `ackCode`, `ackVersion`, `ackDescription` and `lastUpdateTime`, each only
/// when known. `is_writable(component, name)` says what the template declares writable; a
/// property with a desired value counts as writable whatever the template says, so a template
/// change never hides what was sent to the device.
pub fn rest_view(
    twin: &Twin,
    is_writable: impl Fn(Option<&str>, &str) -> bool,
) -> Map<String, Value> {
    let empty = Map::new();
    view_level(
        Side::new(&twin.reported, &empty),
        Side::new(&twin.desired, &empty),
        twin.desired.version(),
        None,
        &is_writable,
    )
}

/// One level (root or a component) of one document: its members and their metadata.
#[derive(Clone, Copy)]
struct Side<'a> {
    members: &'a Map<String, Value>,
    metadata: &'a Map<String, Value>,
    empty: &'a Map<String, Value>,
}

impl<'a> Side<'a> {
    fn new(document: &'a TwinDocument, empty: &'a Map<String, Value>) -> Side<'a> {
        Side {
            members: &document.properties,
            metadata: &document.metadata,
            empty,
        }
    }

    /// The component `name` at this level, if this side has one (else an empty side).
    fn component(&self, name: &str) -> Side<'a> {
        let members = self
            .members
            .get(name)
            .filter(|value| is_component(value))
            .and_then(Value::as_object)
            .unwrap_or(self.empty);
        let metadata = self
            .metadata
            .get(name)
            .and_then(Value::as_object)
            .unwrap_or(self.empty);
        Side {
            members,
            metadata,
            empty: self.empty,
        }
    }

    fn metadata_of(&self, name: &str, key: &str) -> Option<&'a Value> {
        self.metadata.get(name)?.get(key)
    }
}

fn view_level(
    reported: Side<'_>,
    desired: Side<'_>,
    desired_version: u64,
    component: Option<&str>,
    is_writable: &dyn Fn(Option<&str>, &str) -> bool,
) -> Map<String, Value> {
    let mut out = Map::new();
    let mut writable = Vec::new();
    let mut components = Vec::new();
    let mut consider = |name: &String, value: &Value, from_reported: bool| {
        if component.is_none() && is_component(value) {
            if !components.contains(name) {
                components.push(name.clone());
            }
        } else if name == COMPONENT_MARKER {
            if from_reported {
                out.insert(name.clone(), value.clone());
            }
        } else if !from_reported
            || is_writable(component, name)
            || desired.members.contains_key(name)
        {
            if !writable.contains(name) {
                writable.push(name.clone());
            }
        } else {
            out.insert(name.clone(), value.clone());
        }
    };
    for (name, value) in reported.members {
        consider(name, value, true);
    }
    for (name, value) in desired.members {
        consider(name, value, false);
    }
    for name in components {
        let mut view = view_level(
            reported.component(&name),
            desired.component(&name),
            desired_version,
            Some(&name),
            is_writable,
        );
        view.insert(COMPONENT_MARKER.to_owned(), COMPONENT_MARKER_VALUE.into());
        out.insert(name, Value::Object(view));
    }
    let mut metadata = Map::new();
    for name in writable {
        let mut entry = Map::new();
        let mut times = Vec::new();
        if let Some(value) = desired.members.get(&name) {
            entry.insert("desiredValue".to_owned(), value.clone());
            let version = desired
                .metadata_of(&name, LAST_UPDATED_VERSION)
                .cloned()
                .unwrap_or_else(|| Value::from(desired_version));
            entry.insert("desiredVersion".to_owned(), version);
            times.extend(
                desired
                    .metadata_of(&name, LAST_UPDATED)
                    .and_then(Value::as_str),
            );
        }
        if let Some(value) = reported.members.get(&name) {
            match acknowledgement(value) {
                Some(ack) => {
                    out.insert(
                        name.clone(),
                        ack.get("value").cloned().unwrap_or(Value::Null),
                    );
                    for (from, to) in [
                        ("ac", "ackCode"),
                        ("av", "ackVersion"),
                        ("ad", "ackDescription"),
                    ] {
                        if let Some(value) = ack.get(from) {
                            entry.insert(to.to_owned(), value.clone());
                        }
                    }
                }
                None => {
                    out.insert(name.clone(), value.clone());
                }
            }
            times.extend(
                reported
                    .metadata_of(&name, LAST_UPDATED)
                    .and_then(Value::as_str),
            );
        }
        // RFC 3339 in one format and zone: the greatest string is the latest time.
        if let Some(latest) = times.into_iter().max() {
            entry.insert("lastUpdateTime".to_owned(), latest.into());
        }
        metadata.insert(name, Value::Object(entry));
    }
    if !metadata.is_empty() {
        out.insert(METADATA.to_owned(), Value::Object(metadata));
    }
    out
}

/// A reported value in IoT Plug and Play's acknowledgement shape: an object with `value` and a
/// numeric `ac` (`av` and `ad` optional).
fn acknowledgement(reported: &Value) -> Option<&Map<String, Value>> {
    let object = reported.as_object()?;
    (object.contains_key("value") && object.get("ac").is_some_and(Value::is_number))
        .then_some(object)
}

fn is_component(value: &Value) -> bool {
    value
        .as_object()
        .and_then(|map| map.get(COMPONENT_MARKER))
        .and_then(Value::as_str)
        == Some(COMPONENT_MARKER_VALUE)
}

/// The change records of a patch (desired, reported or cloud), one per component it touches:
/// `{"component": null | "<name>", "properties": [{"name": .., "value": ..}]}`, the root's
/// first; `null` values are removals. A patch that names no property gives none.
pub fn change_events(patch: &Map<String, Value>) -> Vec<Value> {
    let properties = |members: &Map<String, Value>, components: bool| -> Vec<Value> {
        members
            .iter()
            .filter(|(name, value)| {
                !name.starts_with('$')
                    && name.as_str() != COMPONENT_MARKER
                    && !(components && is_component(value))
            })
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect()
    };
    let mut events = Vec::new();
    let root = properties(patch, true);
    if !root.is_empty() {
        events.push(serde_json::json!({"component": null, "properties": root}));
    }
    for (name, value) in patch {
        if let (true, Some(members)) = (is_component(value), value.as_object()) {
            let members = properties(members, false);
            if !members.is_empty() {
                events.push(serde_json::json!({"component": name, "properties": members}));
            }
        }
    }
    events
}

fn check_keys(object: &Map<String, Value>, path: &str, depth: usize) -> Result<(), TwinError> {
    if depth > MAX_DEPTH {
        return Err(TwinError::TooDeep {
            path: path.to_owned(),
        });
    }
    for (key, value) in object {
        let path = format!("{path}.{key}");
        let valid = !key.is_empty()
            && key.len() <= MAX_KEY_BYTES
            && !key
                .chars()
                .any(|c| c.is_control() || matches!(c, '.' | '$' | ' '));
        if !valid {
            return Err(TwinError::InvalidKey { path });
        }
        if let Value::Object(child) = value {
            check_keys(child, &path, depth + 1)?;
        }
    }
    Ok(())
}

/// When a patch was applied, and the version it produced.
struct Stamp<'a> {
    at: &'a Value,
    version: u64,
}

/// Merges `patch` into `target`, stamping every key it touches (and its ancestors) with `at`.
fn merge(
    target: &mut Map<String, Value>,
    metadata: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    stamp: &Stamp<'_>,
) {
    let at = stamp.at;
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
                metadata.remove(key);
            }
            Value::Object(child_patch) => {
                if !target.get(key).is_some_and(Value::is_object) {
                    target.insert(key.clone(), Value::Object(Map::new()));
                    metadata.insert(key.clone(), Value::Object(Map::new()));
                }
                let Some(Value::Object(child)) = target.get_mut(key) else {
                    unreachable!("an object was just ensured");
                };
                let child_metadata = metadata
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !child_metadata.is_object() {
                    *child_metadata = Value::Object(Map::new());
                }
                let Value::Object(child_metadata) = child_metadata else {
                    unreachable!("an object was just ensured");
                };
                merge(child, child_metadata, child_patch, stamp);
                child_metadata.insert(LAST_UPDATED.to_owned(), at.clone());
            }
            value => {
                target.insert(key.clone(), value.clone());
                let mut leaf = Map::new();
                leaf.insert(LAST_UPDATED.to_owned(), at.clone());
                leaf.insert(LAST_UPDATED_VERSION.to_owned(), Value::from(stamp.version));
                metadata.insert(key.clone(), Value::Object(leaf));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_764_000_000_000 + seconds * 1000)
    }

    #[test]
    fn patches_merge_remove_and_always_bump_the_version() {
        let mut reported = TwinDocument::new(at(0));
        assert_eq!(reported.to_wire(), json!({"$version": 1}));
        let v = reported
            .apply_patch(
                &json!({"maxTempSinceLastReboot": 30.5,
                        "thermostat1": {"__t": "c", "temperature": 21.0}}),
                at(1),
            )
            .unwrap();
        assert_eq!(v, 2);
        reported
            .apply_patch(
                &json!({"thermostat1": {"temperature": 22.5}, "maxTempSinceLastReboot": null}),
                at(2),
            )
            .unwrap();
        assert_eq!(
            reported.to_wire(),
            json!({"thermostat1": {"__t": "c", "temperature": 22.5}, "$version": 3})
        );
        // A patch that changes nothing still counts, as in IoT Hub.
        assert_eq!(reported.apply_patch(&json!({}), at(3)).unwrap(), 4);
    }

    #[test]
    fn metadata_says_when_each_property_was_last_updated() {
        let mut desired = TwinDocument::new(at(0));
        desired
            .apply_patch(
                &json!({"targetTemperature": 21.0, "c1": {"a": 1, "b": 2}}),
                at(1),
            )
            .unwrap();
        desired
            .apply_patch(&json!({"c1": {"b": 3}}), at(2))
            .unwrap();
        let metadata = desired.metadata();
        assert_eq!(
            metadata["targetTemperature"]["$lastUpdated"],
            at(1).to_rfc3339()
        );
        assert_eq!(metadata["c1"]["a"]["$lastUpdated"], at(1).to_rfc3339());
        assert_eq!(metadata["c1"]["b"]["$lastUpdated"], at(2).to_rfc3339());
        assert_eq!(metadata["c1"]["$lastUpdated"], at(2).to_rfc3339());
        assert_eq!(metadata["$lastUpdated"], at(2).to_rfc3339());
    }

    #[test]
    fn refused_patches_change_nothing() {
        let mut doc = TwinDocument::new(at(0));
        doc.apply_patch(&json!({"keep": 1}), at(1)).unwrap();
        let before = doc.clone();
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!({ "d": deep });
        }
        for (patch, expected) in [
            (json!([1]), TwinError::NotAnObject),
            (
                json!({"a.b": 1}),
                TwinError::InvalidKey {
                    path: "$.a.b".into(),
                },
            ),
            (
                json!({"x": {"$meta": 1}}),
                TwinError::InvalidKey {
                    path: "$.x.$meta".into(),
                },
            ),
            (
                json!({"has space": 1}),
                TwinError::InvalidKey {
                    path: "$.has space".into(),
                },
            ),
            (json!({"": 1}), TwinError::InvalidKey { path: "$.".into() }),
            (
                json!({ "top": deep }),
                TwinError::TooDeep {
                    path: format!("$.top{}", ".d".repeat(MAX_DEPTH - 1)),
                },
            ),
        ] {
            assert_eq!(doc.apply_patch(&patch, at(2)), Err(expected), "{patch}");
            assert_eq!(doc, before, "{patch} changed the document");
        }
        let big = json!({ "blob": "x".repeat(MAX_DOCUMENT_BYTES) });
        assert!(matches!(
            doc.apply_patch(&big, at(2)),
            Err(TwinError::TooLarge { .. })
        ));
        assert_eq!(doc, before);
        // `$version` in a patch is the service's, not the patch's: ignored.
        assert_eq!(
            doc.apply_patch(&json!({"$version": 99, "k": 2}), at(3)),
            Ok(3)
        );
    }

    #[test]
    fn the_get_answer_and_desired_pushes_carry_versions() {
        let mut twin = Twin::new(at(0));
        let patch = json!({"targetTemperature": 23.0});
        let version = twin.desired.apply_patch(&patch, at(1)).unwrap();
        assert_eq!(
            desired_push(&patch, version),
            json!({"targetTemperature": 23.0, "$version": 2})
        );
        twin.reported
            .apply_patch(
                &json!({"targetTemperature": {"value": 23.0, "ac": 200, "av": 2, "ad": "ok"}}),
                at(2),
            )
            .unwrap();
        assert_eq!(
            twin.to_get_response(),
            json!({
                "desired": {"targetTemperature": 23.0, "$version": 2},
                "reported": {"targetTemperature": {"value": 23.0, "ac": 200, "av": 2, "ad": "ok"},
                             "$version": 2}
            })
        );
    }

    #[test]
    fn a_patch_gives_one_change_record_per_component() {
        let patch = json!({"fan": null, "targetTemperature": 21, "$version": 4,
                           "thermostat1": {"__t": "c", "targetTemperature": 19},
                           "empty": {"__t": "c"}});
        let Value::Object(patch) = patch else {
            unreachable!()
        };
        assert_eq!(
            change_events(&patch),
            vec![
                json!({"component": null, "properties": [
                    {"name": "fan", "value": null}, {"name": "targetTemperature", "value": 21}]}),
                json!({"component": "thermostat1", "properties": [
                    {"name": "targetTemperature", "value": 19}]}),
            ]
        );
        assert!(change_events(&Map::new()).is_empty());
    }
}
