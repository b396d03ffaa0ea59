//! Checking a JSON value against a DTDL schema: property writes, cloud property values and
//! command payloads, each problem with the JSON path inside the value (`$.fields.x`, `$[2]`).
//!
//! Owns the wire forms DTDL gives each schema in JSON. It does not own where a value comes
//! from or what happens to it; the callers (property writes, commands) decide that.
//!
//! Decisions where DTDL is loose:
//! - `integer` and `long` accept a number with a zero fraction (`21.0`): JSON does not tell
//!   them apart and several serialisers write whole doubles that way. The value must still be
//!   in the 32-bit (64-bit) range.
//! - `float` accepts any number within the single-precision range (precision may be lost).
//! - `dateTime` is RFC 3339 and needs an offset (`Z` or `+01:00`); `time` may have one; `date`
//!   is `YYYY-MM-DD`; `duration` is ISO 8601 (`P1DT2H`, `PT0.5S`, `P2W`).
//! - An Object may omit fields (DTDL does not make them required) but not add unknown ones.
//! - `geopoint` is IoT Central's `{"lat", "lon", "alt"?}` with latitude and longitude in range;
//!   `vector` is `{"x", "y", "z"}`; geospatial schemas are GeoJSON geometries of their type.
//! - `null` matches no schema.

use serde_json::Value;

use super::model::{EnumLiteral, EnumValueSchema, Geospatial, Primitive, Schema};
use super::{index_path, json_kind, key_path, Problem};

/// Checks `value` against `schema`, reporting every problem with its path inside the value.
pub fn validate_value(schema: &Schema, value: &Value) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    check(schema, value, "$", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn check(schema: &Schema, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    let mut fail = |expected: &str| {
        problems.push(Problem::new(
            path,
            format!("expected {expected}, found {}", describe(value)),
        ));
    };
    match schema {
        Schema::Primitive(primitive) => {
            if !primitive_ok(*primitive, value) {
                fail(primitive_expectation(*primitive));
            }
        }
        Schema::Enum(enum_schema) => {
            let matches =
                enum_schema
                    .values
                    .iter()
                    .any(|enum_value| match (&enum_value.value, value) {
                        (EnumLiteral::Integer(expected), Value::Number(number)) => {
                            number.as_i64() == Some(i64::from(*expected))
                        }
                        (EnumLiteral::String(expected), Value::String(text)) => expected == text,
                        _ => false,
                    });
            if !matches {
                let allowed: Vec<String> = enum_schema
                    .values
                    .iter()
                    .map(|enum_value| match &enum_value.value {
                        EnumLiteral::Integer(integer) => format!("{integer} ({})", enum_value.name),
                        EnumLiteral::String(text) => format!("'{text}' ({})", enum_value.name),
                    })
                    .collect();
                let kind = match enum_schema.value_schema {
                    EnumValueSchema::Integer => "integer",
                    EnumValueSchema::String => "string",
                };
                let expected = if allowed.is_empty() {
                    format!("a value of an Enum that has none ({kind})")
                } else {
                    format!("one of the Enum's {kind} values {}", allowed.join(", "))
                };
                fail(&expected);
            }
        }
        Schema::Array(array) => match value {
            Value::Array(elements) => {
                for (i, element) in elements.iter().enumerate() {
                    check(
                        &array.element_schema,
                        element,
                        &index_path(path, i),
                        problems,
                    );
                }
            }
            _ => fail("an array"),
        },
        Schema::Map(map) => match value {
            Value::Object(entries) => {
                for (key, entry) in entries {
                    check(&map.value_schema, entry, &key_path(path, key), problems);
                }
            }
            _ => fail("an object (a Map)"),
        },
        Schema::Object(object) => match value {
            Value::Object(entries) => {
                for (key, entry) in entries {
                    match object.fields.iter().find(|field| field.name == *key) {
                        Some(field) => check(&field.schema, entry, &key_path(path, key), problems),
                        None => {
                            let names: Vec<&str> =
                                object.fields.iter().map(|f| f.name.as_str()).collect();
                            problems.push(Problem::new(
                                &key_path(path, key),
                                format!(
                                    "unknown field '{key}'; the Object has {}",
                                    if names.is_empty() {
                                        "no fields".to_owned()
                                    } else {
                                        names.join(", ")
                                    }
                                ),
                            ));
                        }
                    }
                }
            }
            _ => fail("an object"),
        },
        Schema::Geopoint => check_members(
            value,
            path,
            &[
                ("lat", true, Some(90.0)),
                ("lon", true, Some(180.0)),
                ("alt", false, None),
            ],
            "a geopoint {\"lat\", \"lon\", \"alt\"}",
            problems,
        ),
        Schema::Vector => check_members(
            value,
            path,
            &[("x", true, None), ("y", true, None), ("z", true, None)],
            "a vector {\"x\", \"y\", \"z\"}",
            problems,
        ),
        Schema::Geospatial(geospatial) => check_geometry(*geospatial, value, path, problems),
    }
}

/// An object of number members: (name, required, maximum absolute value).
fn check_members(
    value: &Value,
    path: &str,
    members: &[(&str, bool, Option<f64>)],
    expected: &str,
    problems: &mut Vec<Problem>,
) {
    let Value::Object(entries) = value else {
        problems.push(Problem::new(
            path,
            format!("expected {expected}, found {}", describe(value)),
        ));
        return;
    };
    for (name, required, limit) in members {
        match entries.get(*name) {
            None if *required => {
                problems.push(Problem::new(path, format!("missing member '{name}'")));
            }
            None => {}
            Some(member) => {
                let member_path = key_path(path, name);
                match (member.as_f64(), limit) {
                    (None, _) => problems.push(Problem::new(
                        &member_path,
                        format!("expected a number, found {}", describe(member)),
                    )),
                    (Some(number), Some(limit)) if number.abs() > *limit => {
                        problems.push(Problem::new(
                            &member_path,
                            format!("{name} must be between -{limit} and {limit}, found {number}"),
                        ))
                    }
                    _ => {}
                }
            }
        }
    }
    let mut unknown: Vec<&String> = entries
        .keys()
        .filter(|key| !members.iter().any(|(name, _, _)| name == key))
        .collect();
    unknown.sort();
    for key in unknown {
        problems.push(Problem::new(
            &key_path(path, key),
            format!("unknown member '{key}' in {expected}"),
        ));
    }
}

fn check_geometry(geospatial: Geospatial, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    let (type_name, shape) = match geospatial {
        Geospatial::Point => ("Point", Shape::Position),
        Geospatial::MultiPoint => ("MultiPoint", Shape::Positions { min: 0 }),
        Geospatial::LineString => ("LineString", Shape::Positions { min: 2 }),
        Geospatial::MultiLineString => {
            ("MultiLineString", Shape::Many(&Shape::Positions { min: 2 }))
        }
        Geospatial::Polygon => ("Polygon", Shape::Many(&Shape::Ring)),
        Geospatial::MultiPolygon => ("MultiPolygon", Shape::Many(&Shape::Many(&Shape::Ring))),
    };
    let Value::Object(geometry) = value else {
        problems.push(Problem::new(
            path,
            format!(
                "expected a GeoJSON {type_name} object, found {}",
                describe(value)
            ),
        ));
        return;
    };
    match geometry.get("type") {
        Some(Value::String(found)) if found == type_name => {}
        Some(found) => problems.push(Problem::new(
            &key_path(path, "type"),
            format!("expected \"{type_name}\", found {}", describe(found)),
        )),
        None => problems.push(Problem::new(
            path,
            format!("missing member 'type' (\"{type_name}\")"),
        )),
    }
    match geometry.get("coordinates") {
        Some(coordinates) => shape.check(coordinates, &key_path(path, "coordinates"), problems),
        None => problems.push(Problem::new(path, "missing member 'coordinates'")),
    }
}

/// The nesting of GeoJSON coordinates.
enum Shape {
    /// `[lon, lat]` or `[lon, lat, alt]`.
    Position,
    /// An array of at least `min` positions.
    Positions { min: usize },
    /// A closed linear ring: at least 4 positions, the last equal to the first.
    Ring,
    /// An array of the inner shape.
    Many(&'static Shape),
}

impl Shape {
    fn check(&self, value: &Value, path: &str, problems: &mut Vec<Problem>) {
        let Value::Array(elements) = value else {
            problems.push(Problem::new(
                path,
                format!(
                    "expected an array of coordinates, found {}",
                    describe(value)
                ),
            ));
            return;
        };
        match self {
            Shape::Position => {
                if !(2..=3).contains(&elements.len()) || !elements.iter().all(Value::is_number) {
                    problems.push(Problem::new(
                        path,
                        "a position is [longitude, latitude] or [longitude, latitude, altitude]",
                    ));
                }
            }
            Shape::Positions { min } => {
                if elements.len() < *min {
                    problems.push(Problem::new(
                        path,
                        format!(
                            "expected at least {min} positions, found {}",
                            elements.len()
                        ),
                    ));
                }
                for (i, element) in elements.iter().enumerate() {
                    Shape::Position.check(element, &index_path(path, i), problems);
                }
            }
            Shape::Ring => {
                Shape::Positions { min: 4 }.check(value, path, problems);
                if elements.len() >= 4 && elements.first() != elements.last() {
                    problems.push(Problem::new(
                        path,
                        "a linear ring ends with the position it starts with",
                    ));
                }
            }
            Shape::Many(inner) => {
                for (i, element) in elements.iter().enumerate() {
                    inner.check(element, &index_path(path, i), problems);
                }
            }
        }
    }
}

fn primitive_ok(primitive: Primitive, value: &Value) -> bool {
    match (primitive, value) {
        (Primitive::Boolean, Value::Bool(_)) => true,
        (Primitive::String, Value::String(_)) => true,
        (Primitive::Double, Value::Number(_)) => true,
        (Primitive::Float, Value::Number(number)) => number
            .as_f64()
            .is_some_and(|v| v.abs() <= f64::from(f32::MAX)),
        (Primitive::Integer, Value::Number(number)) => {
            whole(number).is_some_and(|v| v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX))
        }
        (Primitive::Long, Value::Number(number)) => {
            // i64::MIN is -2^63 exactly; i64::MAX rounds up to 2^63 as an f64, hence `<`.
            let range = |v: f64| (i64::MIN as f64..i64::MAX as f64).contains(&v);
            number.is_i64() || (number.is_f64() && whole(number).is_some_and(range))
        }
        (Primitive::Date, Value::String(text)) => is_date(text),
        (Primitive::DateTime, Value::String(text)) => is_date_time(text),
        (Primitive::Time, Value::String(text)) => is_time(text, false),
        (Primitive::Duration, Value::String(text)) => is_duration(text),
        _ => false,
    }
}

/// The number's value if it is whole (an integer, or a float with a zero fraction).
fn whole(number: &serde_json::Number) -> Option<f64> {
    if let Some(integer) = number.as_i64() {
        return Some(integer as f64);
    }
    let float = number.as_f64()?;
    (float.fract() == 0.0).then_some(float)
}

fn primitive_expectation(primitive: Primitive) -> &'static str {
    match primitive {
        Primitive::Boolean => "a boolean",
        Primitive::Date => "a date (RFC 3339 full-date, e.g. 2024-05-31)",
        Primitive::DateTime => "a dateTime (RFC 3339, e.g. 2024-05-31T12:00:00Z)",
        Primitive::Double => "a double",
        Primitive::Duration => "a duration (ISO 8601, e.g. PT15M)",
        Primitive::Float => "a float (a number within single-precision range)",
        Primitive::Integer => "an integer (32-bit)",
        Primitive::Long => "a long (64-bit integer)",
        Primitive::String => "a string",
        Primitive::Time => "a time (RFC 3339, e.g. 12:30:00)",
    }
}

/// How problems show what they found: short values verbatim, otherwise their JSON type.
fn describe(value: &Value) -> String {
    match value {
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::String(text) if text.chars().count() <= 40 => format!("'{text}'"),
        other => json_kind(other).to_owned(),
    }
}

/// Exactly `n` ASCII digits, as a number.
fn digits(text: &str, n: usize) -> Option<u32> {
    (text.len() == n && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// RFC 3339 full-date: `YYYY-MM-DD` with a day that exists in that month.
fn is_date(text: &str) -> bool {
    let mut parts = text.split('-');
    let (Some(year), Some(month), Some(day), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Some(year), Some(month), Some(day)) = (digits(year, 4), digits(month, 2), digits(day, 2))
    else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

/// RFC 3339 time: `hh:mm:ss[.frac]` then an offset (`Z`, `+hh:mm`), required or optional.
fn is_time(text: &str, offset_required: bool) -> bool {
    if text.len() < 8 || !text.is_char_boundary(8) {
        return false;
    }
    let (clock, rest) = text.split_at(8);
    let mut parts = clock.split(':');
    let (Some(hour), Some(minute), Some(second), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let clock_ok = digits(hour, 2).is_some_and(|h| h <= 23)
        && digits(minute, 2).is_some_and(|m| m <= 59)
        && digits(second, 2).is_some_and(|s| s <= 60);
    if !clock_ok {
        return false;
    }
    let rest = match rest.strip_prefix('.') {
        Some(fraction) => {
            let end = fraction
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(fraction.len());
            if end == 0 {
                return false;
            }
            &fraction[end..]
        }
        None => rest,
    };
    match rest {
        "" => !offset_required,
        "Z" | "z" => true,
        offset => {
            let Some(offset) = offset.strip_prefix(['+', '-']) else {
                return false;
            };
            let Some((hours, minutes)) = offset.split_once(':') else {
                return false;
            };
            digits(hours, 2).is_some_and(|h| h <= 23) && digits(minutes, 2).is_some_and(|m| m <= 59)
        }
    }
}

/// RFC 3339 date-time: a full-date, `T`, and a time with an offset.
fn is_date_time(text: &str) -> bool {
    match text.split_once(['T', 't']) {
        Some((date, time)) => is_date(date) && is_time(time, true),
        None => false,
    }
}

/// ISO 8601 duration: `PnYnMnWnDTnHnMnS`, components in that order, at least one, `T` only
/// before a time component; only the last component may have a fraction.
fn is_duration(text: &str) -> bool {
    let Some(body) = text.strip_prefix('P') else {
        return false;
    };
    let (date_part, time_part) = match body.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (body, None),
    };
    let Some(n_date) = components(date_part, &['Y', 'M', 'W', 'D']) else {
        return false;
    };
    let n_time = match time_part {
        Some(time) => match components(time, &['H', 'M', 'S']) {
            Some(0) | None => return false,
            Some(n) => n,
        },
        None => 0,
    };
    let fraction_ok = !text.contains(['.', ',']) || ends_with_fraction(text);
    n_date + n_time > 0 && fraction_ok
}

/// Counts `<number><designator>` components in `designators` order; `None` if malformed.
fn components(text: &str, designators: &[char]) -> Option<usize> {
    let mut rest = text;
    let mut next_designator = 0;
    let mut count = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        let valid_number = !number.is_empty()
            && number.starts_with(|c: char| c.is_ascii_digit())
            && number.ends_with(|c: char| c.is_ascii_digit())
            && number.matches(['.', ',']).count() <= 1;
        if !valid_number {
            return None;
        }
        let designator = rest[number_len..].chars().next()?;
        let position = designators[next_designator..]
            .iter()
            .position(|d| *d == designator)?;
        next_designator += position + 1;
        count += 1;
        rest = &rest[number_len + designator.len_utf8()..];
    }
    Some(count)
}

/// A fraction is allowed only in the last component of a duration.
fn ends_with_fraction(text: &str) -> bool {
    let Some(separator) = text.rfind(['.', ',']) else {
        return true;
    };
    let after = &text[separator + 1..];
    after.len() >= 2
        && after[..after.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !after.ends_with(|c: char| c.is_ascii_digit())
        && text.find(['.', ',']) == Some(separator)
}
