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
//!   the patch that last touched it (an object's is its newest child's).
//!
//! Pure: no IO, the time is an argument. Storage and the MQTT and REST sides come with the
//! properties issue.

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
        merge(&mut properties, &mut metadata, &patch, &at);
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

/// Merges `patch` into `target`, stamping every key it touches (and its ancestors) with `at`.
fn merge(
    target: &mut Map<String, Value>,
    metadata: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    at: &Value,
) {
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
                merge(child, child_metadata, child_patch, at);
                child_metadata.insert(LAST_UPDATED.to_owned(), at.clone());
            }
            value => {
                target.insert(key.clone(), value.clone());
                let mut leaf = Map::new();
                leaf.insert(LAST_UPDATED.to_owned(), at.clone());
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
}
