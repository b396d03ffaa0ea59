//! The DTDL parser and validator: a `capabilityModel` JSON document in, a [`DeviceModel`] or
//! every problem at once out.
//!
//! Two passes. The first indexes every Interface and every reusable schema (`schemas`) by
//! `@id`, with the `@context` in force where it is defined, so Components, `extends` and
//! `"schema": "dtmi:..."` can refer to definitions anywhere in the document. The second builds
//! the model from the root, parsing each referenced definition once (cached by id) and
//! reporting its problems at its own location. Unreferenced Interfaces of an array document
//! are still checked.
//!
//! Recursion is bounded whatever the input: complex schemas stop at 5 levels, `extends` at 10,
//! references are cycle-checked, so a hostile document cannot exhaust the (small, in wasm)
//! stack.
//!
//! Decisions where DTDL or IoT Central leave a choice:
//! - The order of `@context` entries is not enforced: DTDL wants its own context first, but
//!   IoT Central's exported templates list `dtmi:iotcentral:context;2` first.
//! - Every top-level Interface needs its own `@context` (JSON-LD scoping); nested ones inherit.
//! - DTDL's open world: an undefined co-type is allowed and then allows undefined properties.
//!   `Cloud` (IoT Central's cloud property marker, which no published context defines) counts
//!   as one. Without an undefined co-type, an unknown property such as `writeable` is reported.
//! - IoT Central's adjuncts (State, Event, Location, VelocityVector, AccelerationVector) are
//!   recognised only with `dtmi:iotcentral:context;2` (otherwise they are undefined co-types,
//!   as DTDL says) and only in DTDL v2, where the extension is defined. `geopoint` and `vector`
//!   need the context too; without it they are unknown schemas, and the problem says so.
//! - Names: at most 64 characters in v2, 512 in v3; display names likewise 64 / 512.
//! - DTDL v3's limit of 100,000 elements per Interface is left to the API's body-size limit.
//! - Reusable schemas (`schemas`) resolve by `@id` anywhere in the document, not only in the
//!   Interface that defines them (DTDL scopes them per Interface; resolving wider accepts a
//!   few documents DTDL would reject and never misreads a valid one).
//! - An Interface repeated inline with identical JSON (as IoT Central exports a shared
//!   Component Interface) is one definition; a different body under the same `@id` is an error.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::model::*;
use super::units::{self, UnitType};
use super::{index_path, json_kind, key_path, DtdlError, DtdlVersion, Dtmi, Problem};

pub(super) fn parse(document: &Value) -> Result<DeviceModel, DtdlError> {
    let mut parser = Parser::default();
    let root = parser.document(document);
    let mut problems = Vec::new();
    for problem in parser.problems {
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    }
    match root {
        Some((version, root)) if problems.is_empty() => Ok(DeviceModel { version, root }),
        _ => {
            if problems.is_empty() {
                // Every path that returns no root records why; this keeps the error non-empty.
                problems.push(Problem::new(
                    "$",
                    "the capability model could not be parsed",
                ));
            }
            Err(DtdlError { problems })
        }
    }
}

/// How deep complex schemas may nest (Array in Object in Map...), in both versions.
const MAX_SCHEMA_DEPTH: usize = 5;
/// How deep `extends` may chain, in both versions.
const MAX_EXTENDS_DEPTH: usize = 10;
const INTERFACE_ID_MAX_LEN: usize = 128;
const DESCRIPTION_MAX_LEN: usize = 512;

const PRIMITIVES: &[(&str, Primitive)] = &[
    ("boolean", Primitive::Boolean),
    ("date", Primitive::Date),
    ("dateTime", Primitive::DateTime),
    ("double", Primitive::Double),
    ("duration", Primitive::Duration),
    ("float", Primitive::Float),
    ("integer", Primitive::Integer),
    ("long", Primitive::Long),
    ("string", Primitive::String),
    ("time", Primitive::Time),
];

const GEOSPATIAL: &[(&str, Geospatial)] = &[
    ("point", Geospatial::Point),
    ("multiPoint", Geospatial::MultiPoint),
    ("lineString", Geospatial::LineString),
    ("multiLineString", Geospatial::MultiLineString),
    ("polygon", Geospatial::Polygon),
    ("multiPolygon", Geospatial::MultiPolygon),
];

const CONTENT_CLASSES: &[&str] = &[
    "Telemetry",
    "Property",
    "Command",
    "Component",
    "Relationship",
];

/// Terms DTDL defines as classes: never valid as a co-type of another class.
const DTDL_CLASSES: &[&str] = &[
    "Interface",
    "Telemetry",
    "Property",
    "Command",
    "Component",
    "Relationship",
    "CommandPayload",
    "CommandRequest",
    "CommandResponse",
    "Array",
    "Enum",
    "EnumValue",
    "Map",
    "MapKey",
    "MapValue",
    "Object",
    "Field",
];

const IOT_CENTRAL_CONTEXT: &str = "dtmi:iotcentral:context;2";
const QUANTITATIVE_TYPES_CONTEXT: &str = "dtmi:dtdl:extension:quantitativeTypes;1";

/// What the `@context` in force says.
#[derive(Clone, Copy, Debug)]
struct Ctx {
    version: DtdlVersion,
    iot_central: bool,
    quantitative_types: bool,
}

impl Ctx {
    fn name_max_len(self) -> usize {
        match self.version {
            DtdlVersion::V2 => 64,
            DtdlVersion::V3 => 512,
        }
    }
}

/// The kinds of DTDL element, for allowed properties and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Interface,
    Telemetry,
    Property,
    Command,
    Request,
    Response,
    Relationship,
    Component,
    Array,
    Enum,
    EnumValue,
    Map,
    MapKey,
    MapValue,
    Object,
    Field,
}

impl Kind {
    /// The `@type` term of this kind in `version`.
    fn class(self, version: DtdlVersion) -> &'static str {
        match (self, version) {
            (Kind::Request | Kind::Response, DtdlVersion::V2) => "CommandPayload",
            (Kind::Request, DtdlVersion::V3) => "CommandRequest",
            (Kind::Response, DtdlVersion::V3) => "CommandResponse",
            (Kind::Interface, _) => "Interface",
            (Kind::Telemetry, _) => "Telemetry",
            (Kind::Property, _) => "Property",
            (Kind::Command, _) => "Command",
            (Kind::Relationship, _) => "Relationship",
            (Kind::Component, _) => "Component",
            (Kind::Array, _) => "Array",
            (Kind::Enum, _) => "Enum",
            (Kind::EnumValue, _) => "EnumValue",
            (Kind::Map, _) => "Map",
            (Kind::MapKey, _) => "MapKey",
            (Kind::MapValue, _) => "MapValue",
            (Kind::Object, _) => "Object",
            (Kind::Field, _) => "Field",
        }
    }

    /// Properties allowed besides `@type`, `@id`, `comment`, `description`, `displayName`.
    fn properties(self) -> &'static [&'static str] {
        match self {
            Kind::Interface => &["@context", "contents", "extends", "schemas"],
            Kind::Telemetry => &["name", "schema", "unit"],
            Kind::Property => &["name", "schema", "writable", "unit"],
            Kind::Command => &["name", "request", "response", "commandType"],
            Kind::Request | Kind::Response => &["name", "schema", "unit"],
            Kind::Relationship => &[
                "name",
                "target",
                "minMultiplicity",
                "maxMultiplicity",
                "properties",
                "writable",
            ],
            Kind::Component => &["name", "schema"],
            Kind::Array => &["elementSchema"],
            Kind::Enum => &["valueSchema", "enumValues"],
            Kind::EnumValue => &["name", "enumValue"],
            Kind::Map => &["mapKey", "mapValue"],
            Kind::MapKey => &["name", "schema"],
            Kind::MapValue => &["name", "schema", "unit"],
            Kind::Object => &["fields"],
            Kind::Field => &["name", "schema", "unit"],
        }
    }

    /// Whether standard semantic types may co-type this kind in `ctx`.
    fn takes_semantic_type(self, ctx: Ctx) -> bool {
        match ctx.version {
            DtdlVersion::V2 => matches!(self, Kind::Telemetry | Kind::Property),
            DtdlVersion::V3 => {
                ctx.quantitative_types
                    && matches!(
                        self,
                        Kind::Telemetry
                            | Kind::Property
                            | Kind::Field
                            | Kind::MapValue
                            | Kind::Request
                            | Kind::Response
                    )
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AdjunctKind {
    State,
    Event,
    Location,
    VelocityVector,
    AccelerationVector,
}

const ADJUNCTS: &[(&str, AdjunctKind)] = &[
    ("State", AdjunctKind::State),
    ("Event", AdjunctKind::Event),
    ("Location", AdjunctKind::Location),
    ("VelocityVector", AdjunctKind::VelocityVector),
    ("AccelerationVector", AdjunctKind::AccelerationVector),
];

/// What an element's `@type`, `@id` and display strings said.
#[derive(Default)]
struct Header {
    id: Option<Dtmi>,
    display_name: Option<LocalizedText>,
    description: Option<LocalizedText>,
    semantic: Option<(&'static str, &'static UnitType)>,
    adjunct: Option<AdjunctKind>,
    cloud: bool,
    /// Co-types Gyre does not interpret; any of them opens the element to unknown properties.
    other_types: Vec<String>,
}

impl Header {
    fn open_world(&self) -> bool {
        self.cloud || !self.other_types.is_empty()
    }
}

/// A parsed schema with the facts its users check.
#[derive(Clone)]
struct SchemaOut {
    schema: Schema,
    /// Complex-schema levels in this schema (0 for primitives).
    height: usize,
    /// Where this schema holds something array-based, and what, for DTDL v2 Properties.
    array_at: Option<(String, String)>,
}

struct ParsedInterface {
    interface: Interface,
    /// The JSON path of each of `interface.contents`, in the same order.
    content_paths: Vec<String>,
    /// Levels of `extends` under this Interface (0 when it extends nothing).
    extends_height: usize,
}

enum Slot<T> {
    Pending,
    InProgress,
    Done(Option<T>),
}

struct Definition<'doc, T> {
    path: String,
    value: &'doc Value,
    ctx: Ctx,
    slot: Slot<T>,
}

#[derive(Default)]
struct Parser<'doc> {
    problems: Vec<Problem>,
    interfaces: HashMap<String, Definition<'doc, ParsedInterface>>,
    schemas: HashMap<String, Definition<'doc, SchemaOut>>,
    /// Interfaces being parsed right now, innermost last: bounds recursion.
    interface_stack: usize,
    /// Schema references being resolved right now: bounds recursion.
    schema_stack: usize,
}

impl<'doc> Parser<'doc> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    // ---------------------------------------------------------------------------------------
    // The document and the index.

    fn document(&mut self, document: &'doc Value) -> Option<(DtdlVersion, Interface)> {
        match document {
            Value::Object(_) => {
                let ctx = self.index_interface(document, "$", None);
                let root = self.interface_at(document, "$", ctx?)?;
                Some((ctx?.version, root.interface))
            }
            Value::Array(elements) if !elements.is_empty() => {
                let ctxs: Vec<Option<Ctx>> = elements
                    .iter()
                    .enumerate()
                    .map(|(i, element)| self.index_interface(element, &index_path("$", i), None))
                    .collect();
                let mut root = None;
                for (i, (element, ctx)) in elements.iter().zip(ctxs).enumerate() {
                    let Some(ctx) = ctx else { continue };
                    let parsed = self.interface_at(element, &index_path("$", i), ctx);
                    if i == 0 {
                        root = parsed.map(|parsed| (ctx.version, parsed.interface));
                    }
                }
                root
            }
            Value::Array(_) => {
                self.problem(
                    "$",
                    "an array capability model needs at least one Interface",
                );
                None
            }
            other => {
                self.problem(
                    "$",
                    format!(
                        "a capability model is an Interface object or an array of Interfaces, \
                         found {}",
                        json_kind(other)
                    ),
                );
                None
            }
        }
    }

    /// Records the Interface at `path` (and the Interfaces and schemas defined inside it) by
    /// `@id`. Returns the context in force there, `None` if it cannot be determined.
    fn index_interface(
        &mut self,
        value: &'doc Value,
        path: &str,
        inherited: Option<Ctx>,
    ) -> Option<Ctx> {
        // Legitimate nesting is shallow (a Component's Interface, a few levels of inline
        // extends); the parse pass reports anything deeper, so the index just stops there.
        if path.matches(".schema").count() + path.matches(".extends").count()
            > MAX_EXTENDS_DEPTH + 2
        {
            return inherited;
        }
        let Value::Object(object) = value else {
            self.problem(
                path,
                format!("expected an Interface object, found {}", json_kind(value)),
            );
            return None;
        };
        let ctx = match object.get("@context") {
            Some(context) => self.context(context, &key_path(path, "@context")),
            None => match inherited {
                Some(ctx) => Some(ctx),
                None => {
                    self.problem(
                        path,
                        "missing @context; expected dtmi:dtdl:context;2 or dtmi:dtdl:context;3",
                    );
                    None
                }
            },
        }?;
        if let Some(Value::String(id)) = object.get("@id") {
            if let Some(first) = self.interfaces.get(id) {
                // IoT Central repeats a shared Interface inline in each Component that uses
                // it; an identical repetition is the same definition, not a conflict.
                if first.value != value {
                    let message = format!("duplicate @id '{id}', also at {}", first.path);
                    self.problem(&key_path(path, "@id"), message);
                }
            } else {
                let definition = Definition {
                    path: path.to_owned(),
                    value,
                    ctx,
                    slot: Slot::Pending,
                };
                self.interfaces.insert(id.clone(), definition);
            }
        }
        if let Some(Value::Array(schemas)) = object.get("schemas") {
            let schemas_path = key_path(path, "schemas");
            for (i, schema) in schemas.iter().enumerate() {
                let Some(Value::String(id)) = schema.get("@id") else {
                    continue;
                };
                let schema_path = index_path(&schemas_path, i);
                if let Some(first) = self.schemas.get(id) {
                    if first.value != schema {
                        let message = format!("duplicate @id '{id}', also at {}", first.path);
                        self.problem(&key_path(&schema_path, "@id"), message);
                    }
                } else {
                    let definition = Definition {
                        path: schema_path,
                        value: schema,
                        ctx,
                        slot: Slot::Pending,
                    };
                    self.schemas.insert(id.clone(), definition);
                }
            }
        }
        if let Some(Value::Array(contents)) = object.get("contents") {
            let contents_path = key_path(path, "contents");
            for (i, content) in contents.iter().enumerate() {
                if let Some(schema @ Value::Object(_)) = content.get("schema") {
                    if has_type(content, "Component") {
                        let schema_path = key_path(&index_path(&contents_path, i), "schema");
                        self.index_interface(schema, &schema_path, Some(ctx));
                    }
                }
            }
        }
        match object.get("extends") {
            Some(extended @ Value::Object(_)) => {
                self.index_interface(extended, &key_path(path, "extends"), Some(ctx));
            }
            Some(Value::Array(extends)) => {
                let extends_path = key_path(path, "extends");
                for (i, extended) in extends.iter().enumerate() {
                    if extended.is_object() {
                        self.index_interface(extended, &index_path(&extends_path, i), Some(ctx));
                    }
                }
            }
            _ => {}
        }
        Some(ctx)
    }

    fn context(&mut self, context: &Value, path: &str) -> Option<Ctx> {
        let entries: Vec<(String, &Value)> = match context {
            Value::Array(entries) => entries
                .iter()
                .enumerate()
                .map(|(i, entry)| (index_path(path, i), entry))
                .collect(),
            single => vec![(path.to_owned(), single)],
        };
        let mut versions = Vec::new();
        let mut iot_central = false;
        let mut quantitative_types = false;
        for (entry_path, entry) in entries {
            let Value::String(entry) = entry else {
                self.problem(
                    &entry_path,
                    format!(
                        "a @context entry is a context DTMI such as dtmi:dtdl:context;2, found {}",
                        json_kind(entry)
                    ),
                );
                continue;
            };
            match entry.as_str() {
                "dtmi:dtdl:context;2" => versions.push(DtdlVersion::V2),
                "dtmi:dtdl:context;3" => versions.push(DtdlVersion::V3),
                IOT_CENTRAL_CONTEXT => iot_central = true,
                QUANTITATIVE_TYPES_CONTEXT => quantitative_types = true,
                other if other.starts_with("dtmi:dtdl:context;") => self.problem(
                    &entry_path,
                    format!(
                        "unsupported DTDL context '{other}'; expected dtmi:dtdl:context;2 or \
                         dtmi:dtdl:context;3"
                    ),
                ),
                // Other extensions (historization, annotation...) are accepted; their
                // co-types are undefined to Gyre, which DTDL's open world allows.
                other if Dtmi::parse(other).is_ok() => {}
                other => self.problem(
                    &entry_path,
                    format!("'{other}' is not a context DTMI such as dtmi:dtdl:context;2"),
                ),
            }
        }
        let version = match versions.as_slice() {
            [version] => *version,
            [] => {
                self.problem(
                    path,
                    "@context must include dtmi:dtdl:context;2 or dtmi:dtdl:context;3",
                );
                return None;
            }
            _ => {
                self.problem(path, "@context names more than one DTDL version");
                return None;
            }
        };
        if quantitative_types && version == DtdlVersion::V2 {
            self.problem(
                path,
                format!("the {QUANTITATIVE_TYPES_CONTEXT} extension needs DTDL v3"),
            );
        }
        Some(Ctx {
            version,
            iot_central,
            quantitative_types,
        })
    }

    // ---------------------------------------------------------------------------------------
    // Interfaces.

    /// The Interface at `path`: from the cache when it is an indexed definition.
    fn interface_at(
        &mut self,
        value: &'doc Value,
        path: &str,
        ctx: Ctx,
    ) -> Option<ParsedInterface> {
        let indexed_id = match value.get("@id") {
            Some(Value::String(id))
                if self
                    .interfaces
                    .get(id)
                    .is_some_and(|definition| definition.path == path) =>
            {
                Some(id.clone())
            }
            _ => None,
        };
        match indexed_id {
            Some(id) => self.interface_by_id(&id, path),
            None => self.interface(value, path, ctx),
        }
    }

    /// The indexed Interface `id`, parsed once. `from` is where it is referred to, for cycles.
    fn interface_by_id(&mut self, id: &str, from: &str) -> Option<ParsedInterface> {
        let definition = self.interfaces.get_mut(id)?;
        match &definition.slot {
            Slot::Done(parsed) => return parsed.as_ref().map(ParsedInterface::clone_parsed),
            Slot::InProgress => {
                self.problem(
                    from,
                    format!("'{id}' refers back to itself, directly or through other Interfaces"),
                );
                return None;
            }
            Slot::Pending => definition.slot = Slot::InProgress,
        }
        let (value, path, ctx) = (definition.value, definition.path.clone(), definition.ctx);
        let parsed = self.interface(value, &path, ctx);
        let copy = parsed.as_ref().map(ParsedInterface::clone_parsed);
        if let Some(definition) = self.interfaces.get_mut(id) {
            definition.slot = Slot::Done(parsed);
        }
        copy
    }

    fn interface(&mut self, value: &'doc Value, path: &str, ctx: Ctx) -> Option<ParsedInterface> {
        let Value::Object(object) = value else {
            self.problem(
                path,
                format!("expected an Interface object, found {}", json_kind(value)),
            );
            return None;
        };
        // Each nested Interface is a Component schema or an extended Interface, and both are
        // bounded (no nested Components, extends at most 10 deep), so this only trips on
        // malicious or broken documents.
        if self.interface_stack > MAX_EXTENDS_DEPTH + 2 {
            self.problem(
                path,
                format!("extends nests more than {MAX_EXTENDS_DEPTH} levels deep"),
            );
            return None;
        }
        self.interface_stack += 1;
        let parsed = self.interface_object(object, path, ctx);
        self.interface_stack -= 1;
        parsed
    }

    fn interface_object(
        &mut self,
        object: &'doc Map<String, Value>,
        path: &str,
        ctx: Ctx,
    ) -> Option<ParsedInterface> {
        // An Interface's own @context was read by the index; nested ones may override it.
        let ctx = match object.get("@context") {
            Some(context) => self.context(context, &key_path(path, "@context"))?,
            None => ctx,
        };
        let header = self.header(object, path, ctx, Kind::Interface, true);
        let id = match (&header.id, object.get("@id")) {
            (Some(id), _) if id.as_str().len() > INTERFACE_ID_MAX_LEN => {
                self.problem(
                    &key_path(path, "@id"),
                    format!(
                        "an Interface @id has at most {INTERFACE_ID_MAX_LEN} characters, found {}",
                        id.as_str().len()
                    ),
                );
                None
            }
            (Some(id), _) => Some(id.clone()),
            (None, None) => {
                self.problem(path, "missing @id; an Interface needs a DTMI");
                None
            }
            (None, Some(_)) => None,
        };
        self.check_keys(object, path, Kind::Interface, &header);

        // Reusable schemas: parse each once so problems show even if nothing refers to them.
        if let Some(schemas) = object.get("schemas") {
            let schemas_path = key_path(path, "schemas");
            for (i, schema) in self.array(schemas, &schemas_path, "schemas") {
                let schema_path = index_path(&schemas_path, i);
                match schema.get("@id") {
                    Some(Value::String(id))
                        if self.schemas.get(id).is_some_and(|d| d.path == schema_path) =>
                    {
                        let id = id.clone();
                        self.schema_by_id(&id, &schema_path, 0);
                    }
                    Some(_) => {
                        // Not indexed: a duplicate (reported by the index) or a bad id.
                        self.schema(schema, &schema_path, ctx, 0);
                    }
                    None => {
                        self.problem(&schema_path, "missing @id; a reusable schema needs a DTMI");
                        self.schema(schema, &schema_path, ctx, 0);
                    }
                }
            }
        }

        let mut contents: Vec<Content> = Vec::new();
        let mut content_paths: Vec<String> = Vec::new();
        if let Some(value) = object.get("contents") {
            let contents_path = key_path(path, "contents");
            for (i, content) in self.array(value, &contents_path, "contents") {
                let content_path = index_path(&contents_path, i);
                if let Some(content) = self.content(content, &content_path, ctx) {
                    let name_path = key_path(&content_path, "name");
                    if let Some(first) = contents.iter().position(|c| c.name() == content.name()) {
                        let message = format!(
                            "duplicate name '{}', also at {}",
                            content.name(),
                            content_paths[first]
                        );
                        self.problem(&name_path, message);
                    }
                    contents.push(content);
                    content_paths.push(content_path);
                }
            }
        }

        let mut extends = Vec::new();
        let mut extends_height = 0;
        if let Some(value) = object.get("extends") {
            let extends_path = key_path(path, "extends");
            let entries: Vec<(String, &'doc Value)> = match value {
                Value::Array(entries) => {
                    if ctx.version == DtdlVersion::V2 && entries.len() > 2 {
                        self.problem(
                            &extends_path,
                            format!(
                                "an Interface extends at most 2 Interfaces in DTDL v2, found {}",
                                entries.len()
                            ),
                        );
                    }
                    entries
                        .iter()
                        .enumerate()
                        .map(|(i, entry)| (index_path(&extends_path, i), entry))
                        .collect()
                }
                single => vec![(extends_path.clone(), single)],
            };
            let mut seen_origins: Vec<String> = Vec::new();
            for (entry_path, entry) in entries {
                let Some(parent) = self.interface_ref(entry, &entry_path, ctx, "extends") else {
                    continue;
                };
                extends_height = extends_height.max(parent.extends_height + 1);
                if parent.extends_height + 1 > MAX_EXTENDS_DEPTH {
                    self.problem(
                        &entry_path,
                        format!("extends nests more than {MAX_EXTENDS_DEPTH} levels deep"),
                    );
                }
                extends.push(parent.interface.id.clone());
                for (content, origin) in parent
                    .interface
                    .contents
                    .into_iter()
                    .zip(parent.content_paths)
                {
                    // Diamond inheritance brings the same element twice: that is no conflict.
                    if seen_origins.contains(&origin) {
                        continue;
                    }
                    if let Some(first) = contents.iter().position(|c| c.name() == content.name()) {
                        let message = format!(
                            "duplicate name '{}': {} is also inherited from {}",
                            content.name(),
                            content_paths[first],
                            origin
                        );
                        self.problem(&entry_path, message);
                        continue;
                    }
                    seen_origins.push(origin.clone());
                    contents.push(content);
                    content_paths.push(origin);
                }
            }
        }
        if ctx.version == DtdlVersion::V2 && contents.len() > 300 {
            self.problem(
                &key_path(path, "contents"),
                format!(
                    "an Interface has at most 300 contents in DTDL v2, inherited ones included; \
                     found {}",
                    contents.len()
                ),
            );
        }
        Some(ParsedInterface {
            interface: Interface {
                id: id?,
                display_name: header.display_name,
                description: header.description,
                extends,
                contents,
            },
            content_paths,
            extends_height,
        })
    }

    /// An Interface given inline (an object) or by DTMI (a string), for Components and extends.
    fn interface_ref(
        &mut self,
        value: &'doc Value,
        path: &str,
        ctx: Ctx,
        what: &str,
    ) -> Option<ParsedInterface> {
        match value {
            Value::String(id) => {
                if let Err(err) = Dtmi::parse(id) {
                    self.problem(path, format!("invalid DTMI '{id}': {err}"));
                    None
                } else if self.interfaces.contains_key(id) {
                    self.interface_by_id(id, path)
                } else {
                    self.problem(
                        path,
                        format!(
                            "{what} refers to '{id}', which no Interface in the document defines"
                        ),
                    );
                    None
                }
            }
            Value::Object(_) => self.interface_at(value, path, ctx),
            other => {
                self.problem(
                    path,
                    format!(
                        "{what} is an Interface or its DTMI, found {}",
                        json_kind(other)
                    ),
                );
                None
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Contents.

    fn content(&mut self, value: &'doc Value, path: &str, ctx: Ctx) -> Option<Content> {
        let Value::Object(object) = value else {
            self.problem(
                path,
                format!(
                    "a content is an object (Telemetry, Property, Command, Component or \
                     Relationship), found {}",
                    json_kind(value)
                ),
            );
            return None;
        };
        let types = self.types(object, path)?;
        let classes: Vec<&str> = types
            .iter()
            .map(String::as_str)
            .filter(|t| CONTENT_CLASSES.contains(t))
            .collect();
        let kind = match classes.as_slice() {
            ["Telemetry"] => Kind::Telemetry,
            ["Property"] => Kind::Property,
            ["Command"] => Kind::Command,
            ["Component"] => Kind::Component,
            ["Relationship"] => Kind::Relationship,
            [] => {
                self.problem(
                    &key_path(path, "@type"),
                    format!(
                        "@type {} has none of Telemetry, Property, Command, Component or \
                         Relationship",
                        show_types(&types)
                    ),
                );
                return None;
            }
            _ => {
                self.problem(
                    &key_path(path, "@type"),
                    format!(
                        "an element has exactly one of Telemetry, Property, Command, Component \
                         or Relationship; @type {} has {}",
                        show_types(&types),
                        classes.len()
                    ),
                );
                return None;
            }
        };
        match kind {
            Kind::Telemetry => self.telemetry(object, path, ctx).map(Content::Telemetry),
            Kind::Property => self.property(object, path, ctx).map(Content::Property),
            Kind::Command => self.command(object, path, ctx).map(Content::Command),
            Kind::Component => self.component(object, path, ctx).map(Content::Component),
            _ => self
                .relationship(object, path, ctx)
                .map(Content::Relationship),
        }
    }

    fn telemetry(
        &mut self,
        object: &'doc Map<String, Value>,
        path: &str,
        ctx: Ctx,
    ) -> Option<Telemetry> {
        let header = self.header(object, path, ctx, Kind::Telemetry, true);
        self.check_keys(object, path, Kind::Telemetry, &header);
        let name = self.name(object, path, ctx);
        let schema = self.required_schema(object, path, ctx);
        let (semantic_type, adjunct) = self.semantics(object, path, ctx, &header, schema.as_ref());
        Some(Telemetry {
            id: header.id,
            name: name?,
            display_name: header.display_name,
            description: header.description,
            schema: schema?.schema,
            semantic_type,
            adjunct,
            other_types: header.other_types,
        })
    }

    fn property(
        &mut self,
        object: &'doc Map<String, Value>,
        path: &str,
        ctx: Ctx,
    ) -> Option<Property> {
        let header = self.header(object, path, ctx, Kind::Property, true);
        self.check_keys(object, path, Kind::Property, &header);
        let name = self.name(object, path, ctx);
        let schema = self.required_schema(object, path, ctx);
        if let (
            DtdlVersion::V2,
            Some(SchemaOut {
                array_at: Some((at, what)),
                ..
            }),
        ) = (ctx.version, &schema)
        {
            let message =
                format!("a DTDL v2 Property cannot hold {what}; Arrays in Properties need DTDL v3");
            self.problem(at, message);
        }
        let writable = self.boolean(object, path, "writable");
        let (semantic_type, adjunct) = self.semantics(object, path, ctx, &header, schema.as_ref());
        Some(Property {
            id: header.id,
            name: name?,
            display_name: header.display_name,
            description: header.description,
            schema: schema?.schema,
            writable: writable?,
            cloud: header.cloud,
            semantic_type,
            adjunct,
            other_types: header.other_types,
        })
    }

    fn command(
        &mut self,
        object: &'doc Map<String, Value>,
        path: &str,
        ctx: Ctx,
    ) -> Option<Command> {
        let header = self.header(object, path, ctx, Kind::Command, true);
        self.check_keys(object, path, Kind::Command, &header);
        let name = self.name(object, path, ctx);
        if let Some(command_type) = object.get("commandType") {
            let command_type_path = key_path(path, "commandType");
            match (ctx.version, command_type.as_str()) {
                (DtdlVersion::V2, Some("synchronous" | "asynchronous")) => {}
                (DtdlVersion::V2, _) => self.problem(
                    &command_type_path,
                    "commandType must be synchronous or asynchronous",
                ),
                (DtdlVersion::V3, _) => {
                    self.problem(&command_type_path, "commandType was removed in DTDL v3")
                }
            }
        }
        let payload = |parser: &mut Self, key: &str, kind: Kind| match object.get(key) {
            None => Some(None),
            Some(value) => parser
                .payload(value, &key_path(path, key), ctx, kind)
                .map(Some),
        };
        let request = payload(self, "request", Kind::Request);
        let response = payload(self, "response", Kind::Response);
        Some(Command {
            id: header.id,
            name: name?,
            display_name: header.display_name,
            description: header.description,
            request: request?,
            response: response?,
        })
    }

    fn payload(
        &mut self,
        value: &'doc Value,
        path: &str,
        ctx: Ctx,
        kind: Kind,
    ) -> Option<CommandPayload> {
        let object = self.object(value, path, kind, ctx)?;
        let header = self.header(object, path, ctx, kind, false);
        self.check_keys(object, path, kind, &header);
        let name = self.name(object, path, ctx);
        let schema = self.required_schema(object, path, ctx);
        let (semantic_type, _) = self.semantics(object, path, ctx, &header, schema.as_ref());
        Some(CommandPayload {
            name: name?,
            display_name: header.display_name,
            description: header.description,
            schema: schema?.schema,
            semantic_type,
        })
    }

    fn component(
        &mut self,
        object: &'doc Map<String, Value>,
        path: &str,
        ctx: Ctx,
    ) -> Option<Component> {
        let header = self.header(object, path, ctx, Kind::Component, true);
        self.check_keys(object, path, Kind::Component, &header);
        let name = self.name(object, path, ctx);
        let schema_path = key_path(path, "schema");
        let interface = match object.get("schema") {
            None => {
                self.problem(
                    path,
                    "missing schema; a Component's schema is an Interface or its DTMI",
                );
                None
            }
            Some(schema) => self.interface_ref(schema, &schema_path, ctx, "the Component schema"),
        };
        if let Some(interface) = &interface {
            for (content, content_path) in interface
                .interface
                .contents
                .iter()
                .zip(&interface.content_paths)
            {
                if let Content::Component(nested) = content {
                    let message = format!(
                        "Component '{}' is inside the Interface of Component '{}'; DTDL does not \
                         allow nested Components",
                        nested.name,
                        name.as_deref().unwrap_or("?")
                    );
                    self.problem(content_path, message);
                }
            }
        }
        Some(Component {
            id: header.id,
            name: name?,
            display_name: header.display_name,
            description: header.description,
            interface: interface?.interface,
        })
    }

    fn relationship(
        &mut self,
        object: &'doc Map<String, Value>,
        path: &str,
        ctx: Ctx,
    ) -> Option<Relationship> {
        let header = self.header(object, path, ctx, Kind::Relationship, true);
        self.check_keys(object, path, Kind::Relationship, &header);
        let name = self.name(object, path, ctx);
        let target = match object.get("target") {
            None => Some(None),
            Some(target) => self.dtmi(target, &key_path(path, "target")).map(Some),
        };
        let min_multiplicity = match object.get("minMultiplicity") {
            None => Some(None),
            Some(value) if value.as_u64() == Some(0) => Some(Some(0)),
            Some(_) => {
                self.problem(
                    &key_path(path, "minMultiplicity"),
                    "minMultiplicity must be 0",
                );
                None
            }
        };
        let max_allowed = match ctx.version {
            DtdlVersion::V2 => 500,
            DtdlVersion::V3 => u32::MAX as u64,
        };
        let max_multiplicity = match object.get("maxMultiplicity") {
            None => Some(None),
            Some(value) => match value.as_u64() {
                Some(max) if (1..=max_allowed).contains(&max) => Some(Some(max as u32)),
                _ => {
                    self.problem(
                        &key_path(path, "maxMultiplicity"),
                        format!("maxMultiplicity must be an integer from 1 to {max_allowed}"),
                    );
                    None
                }
            },
        };
        let writable = self.boolean(object, path, "writable");
        let mut properties = Vec::new();
        let mut property_paths: Vec<String> = Vec::new();
        if let Some(value) = object.get("properties") {
            let properties_path = key_path(path, "properties");
            let entries = self.array(value, &properties_path, "properties");
            if ctx.version == DtdlVersion::V2 && entries.len() > 300 {
                self.problem(
                    &properties_path,
                    format!(
                        "a Relationship has at most 300 properties in DTDL v2, found {}",
                        entries.len()
                    ),
                );
            }
            for (i, value) in entries {
                let property_path = index_path(&properties_path, i);
                let Some(object) = self.object(value, &property_path, Kind::Property, ctx) else {
                    continue;
                };
                let Some(types) = self.types(object, &property_path) else {
                    continue;
                };
                if !types.iter().any(|t| t == "Property") {
                    self.problem(
                        &key_path(&property_path, "@type"),
                        format!(
                            "a Relationship's properties are Properties; @type is {}",
                            show_types(&types)
                        ),
                    );
                    continue;
                }
                let Some(property) = self.property(object, &property_path, ctx) else {
                    continue;
                };
                if let Some(first) = properties
                    .iter()
                    .position(|p: &Property| p.name == property.name)
                {
                    let message = format!(
                        "duplicate name '{}', also at {}",
                        property.name, property_paths[first]
                    );
                    self.problem(&key_path(&property_path, "name"), message);
                }
                properties.push(property);
                property_paths.push(property_path);
            }
        }
        Some(Relationship {
            id: header.id,
            name: name?,
            display_name: header.display_name,
            description: header.description,
            target: target?,
            min_multiplicity: min_multiplicity?,
            max_multiplicity: max_multiplicity?,
            writable: writable?,
            properties,
        })
    }

    /// The semantic type (with its unit) and IoT Central adjunct of an element, checking
    /// `unit` and the schema they constrain.
    fn semantics(
        &mut self,
        object: &Map<String, Value>,
        path: &str,
        ctx: Ctx,
        header: &Header,
        schema: Option<&SchemaOut>,
    ) -> (Option<SemanticType>, Option<Adjunct>) {
        let unit_path = key_path(path, "unit");
        let unit = object.get("unit");
        let schema_path = key_path(path, "schema");
        let schema = schema.map(|out| &out.schema);
        let numeric = |schema: &Schema| {
            matches!(
                schema,
                Schema::Primitive(
                    Primitive::Double | Primitive::Float | Primitive::Integer | Primitive::Long
                )
            )
        };
        let mut semantic_type = None;
        if let Some((semantic_name, unit_type)) = header.semantic {
            match unit {
                None => self.problem(
                    path,
                    format!(
                        "missing unit; semantic type {semantic_name} needs a {}",
                        unit_type.name
                    ),
                ),
                Some(unit) => {
                    semantic_type =
                        self.unit(unit, &unit_path, unit_type, ctx)
                            .map(|unit| SemanticType {
                                name: semantic_name,
                                unit,
                            });
                }
            }
            if let Some(schema) = schema.filter(|schema| !numeric(schema)) {
                self.problem(
                    &schema_path,
                    format!(
                        "semantic type {semantic_name} needs a numeric schema (double, float, \
                         integer or long), found {}",
                        schema_name(schema)
                    ),
                );
            }
        }
        let mut adjunct = None;
        if let Some(kind) = header.adjunct {
            let schema_ok = |schema: &Schema| match kind {
                AdjunctKind::State => matches!(schema, Schema::Enum(_)),
                AdjunctKind::Event => {
                    numeric(schema) || matches!(schema, Schema::Primitive(Primitive::String))
                }
                AdjunctKind::Location => matches!(schema, Schema::Geospatial(_) | Schema::Geopoint),
                AdjunctKind::VelocityVector | AdjunctKind::AccelerationVector => {
                    matches!(schema, Schema::Vector)
                }
            };
            let (term, expected) = match kind {
                AdjunctKind::State => ("State", "an Enum"),
                AdjunctKind::Event => ("Event", "double, float, integer, long or string"),
                AdjunctKind::Location => ("Location", "geopoint or a geospatial schema"),
                AdjunctKind::VelocityVector => ("VelocityVector", "vector"),
                AdjunctKind::AccelerationVector => ("AccelerationVector", "vector"),
            };
            if let Some(schema) = schema.filter(|schema| !schema_ok(schema)) {
                self.problem(
                    &schema_path,
                    format!(
                        "IoT Central's {term} type needs a schema of {expected}, found {}",
                        schema_name(schema)
                    ),
                );
            }
            let vector_unit = |parser: &mut Self, unit_type: &'static UnitType| match unit {
                Some(unit) => parser.unit(unit, &unit_path, unit_type, ctx).map(Some),
                None => Some(None),
            };
            adjunct = match kind {
                AdjunctKind::State => Some(Adjunct::State),
                AdjunctKind::Event => Some(Adjunct::Event),
                AdjunctKind::Location => Some(Adjunct::Location),
                AdjunctKind::VelocityVector => {
                    vector_unit(self, &units::VELOCITY).map(|unit| Adjunct::VelocityVector { unit })
                }
                AdjunctKind::AccelerationVector => vector_unit(self, &units::ACCELERATION)
                    .map(|unit| Adjunct::AccelerationVector { unit }),
            };
        }
        let unit_explained = header.semantic.is_some()
            || matches!(
                header.adjunct,
                Some(AdjunctKind::VelocityVector | AdjunctKind::AccelerationVector)
            )
            || header.open_world();
        if unit.is_some() && !unit_explained {
            self.problem(
                &unit_path,
                "unit is allowed only with a semantic type co-type, e.g. [\"Telemetry\", \"Temperature\"]",
            );
        }
        (semantic_type, adjunct)
    }

    fn unit(
        &mut self,
        unit: &Value,
        path: &str,
        unit_type: &'static UnitType,
        ctx: Ctx,
    ) -> Option<&'static str> {
        let found = unit
            .as_str()
            .and_then(|unit| unit_type.unit(unit, ctx.version));
        if found.is_none() {
            let units: Vec<&str> = unit_type.units(ctx.version).collect();
            let shown = match unit {
                Value::String(unit) => format!("'{unit}'"),
                other => json_kind(other).to_owned(),
            };
            self.problem(
                path,
                format!(
                    "unit {shown} is not a {}; expected one of {}",
                    unit_type.name,
                    units.join(", ")
                ),
            );
        }
        found
    }

    // ---------------------------------------------------------------------------------------
    // Schemas.

    fn required_schema(
        &mut self,
        object: &'doc Map<String, Value>,
        path: &str,
        ctx: Ctx,
    ) -> Option<SchemaOut> {
        match object.get("schema") {
            Some(schema) => self.schema(schema, &key_path(path, "schema"), ctx, 0),
            None => {
                self.problem(path, "missing schema");
                None
            }
        }
    }

    /// The schema at `path`, nested under `depth` complex schemas.
    fn schema(
        &mut self,
        value: &'doc Value,
        path: &str,
        ctx: Ctx,
        depth: usize,
    ) -> Option<SchemaOut> {
        match value {
            Value::String(term) => self.schema_term(term, path, ctx, depth),
            Value::Object(object) => self.complex_schema(object, path, ctx, depth),
            other => {
                self.problem(
                    path,
                    format!(
                        "a schema is a schema name, a DTMI or an object, found {}",
                        json_kind(other)
                    ),
                );
                None
            }
        }
    }

    fn schema_term(&mut self, term: &str, path: &str, ctx: Ctx, depth: usize) -> Option<SchemaOut> {
        let simple = |schema: Schema, array_at: Option<(String, String)>| {
            Some(SchemaOut {
                schema,
                height: 0,
                array_at,
            })
        };
        if let Some((_, primitive)) = PRIMITIVES.iter().find(|(name, _)| *name == term) {
            return simple(Schema::Primitive(*primitive), None);
        }
        if let Some((name, geospatial)) = GEOSPATIAL.iter().find(|(name, _)| *name == term) {
            let what = format!("the geospatial schema '{name}' (GeoJSON coordinates are arrays)");
            return simple(
                Schema::Geospatial(*geospatial),
                Some((path.to_owned(), what)),
            );
        }
        match term {
            "geopoint" | "vector" if ctx.iot_central => {
                let schema = if term == "geopoint" {
                    Schema::Geopoint
                } else {
                    Schema::Vector
                };
                return simple(schema, None);
            }
            "geopoint" | "vector" => {
                self.problem(
                    path,
                    format!("unknown schema '{term}'; IoT Central's {term} needs the context {IOT_CENTRAL_CONTEXT}"),
                );
                return None;
            }
            _ => {}
        }
        if term.starts_with("dtmi:") {
            if let Err(err) = Dtmi::parse(term) {
                self.problem(path, format!("invalid DTMI '{term}': {err}"));
                return None;
            }
            if self.schemas.contains_key(term) {
                return self.schema_by_id(term, path, depth);
            }
            let message = if self.interfaces.contains_key(term) {
                format!("'{term}' is an Interface, not a schema")
            } else {
                format!("unknown schema '{term}'; no schema in the document has this @id")
            };
            self.problem(path, message);
            return None;
        }
        self.problem(
            path,
            format!(
                "unknown schema '{term}'; expected boolean, date, dateTime, double, duration, \
                 float, integer, long, string, time, a geospatial schema, the DTMI of a schema in \
                 the document, or an Array, Enum, Map or Object"
            ),
        );
        None
    }

    /// The reusable schema `id`, parsed once, referred to from `path` under `depth` levels.
    fn schema_by_id(&mut self, id: &str, path: &str, depth: usize) -> Option<SchemaOut> {
        let definition = self.schemas.get_mut(id)?;
        let parsed = match &definition.slot {
            Slot::Done(parsed) => parsed.clone(),
            Slot::InProgress => {
                self.problem(
                    path,
                    format!("schema '{id}' contains itself, directly or through other schemas"),
                );
                return None;
            }
            Slot::Pending if self.schema_stack > MAX_SCHEMA_DEPTH => {
                // Every reference adds at least one level, so this chain is too deep anyway.
                self.problem(
                    path,
                    format!("complex schemas nest at most {MAX_SCHEMA_DEPTH} levels deep"),
                );
                return None;
            }
            Slot::Pending => {
                definition.slot = Slot::InProgress;
                let (value, definition_path, ctx) =
                    (definition.value, definition.path.clone(), definition.ctx);
                self.schema_stack += 1;
                let parsed = match value {
                    Value::Object(object) => self.complex_schema(object, &definition_path, ctx, 0),
                    other => {
                        self.problem(
                            &definition_path,
                            format!(
                                "a reusable schema is an Array, Enum, Map or Object, found {}",
                                json_kind(other)
                            ),
                        );
                        None
                    }
                };
                self.schema_stack -= 1;
                if let Some(definition) = self.schemas.get_mut(id) {
                    definition.slot = Slot::Done(parsed.clone());
                }
                parsed
            }
        }?;
        if depth + parsed.height > MAX_SCHEMA_DEPTH {
            self.problem(
                path,
                format!(
                    "complex schemas nest at most {MAX_SCHEMA_DEPTH} levels deep; '{id}' reaches \
                     level {} here",
                    depth + parsed.height
                ),
            );
        }
        let array_at = parsed.array_at.map(|_| {
            (
                path.to_owned(),
                format!("the schema '{id}', which contains an Array"),
            )
        });
        Some(SchemaOut {
            schema: parsed.schema,
            height: parsed.height,
            array_at,
        })
    }

    fn complex_schema(
        &mut self,
        object: &'doc Map<String, Value>,
        path: &str,
        ctx: Ctx,
        depth: usize,
    ) -> Option<SchemaOut> {
        let types = self.types(object, path)?;
        let kind = match types
            .iter()
            .find(|t| ["Array", "Enum", "Map", "Object"].contains(&t.as_str()))
        {
            Some(t) if t == "Array" => Kind::Array,
            Some(t) if t == "Enum" => Kind::Enum,
            Some(t) if t == "Map" => Kind::Map,
            Some(_) => Kind::Object,
            None => {
                self.problem(
                    &key_path(path, "@type"),
                    format!(
                        "unknown schema type {}; expected Array, Enum, Map or Object",
                        show_types(&types)
                    ),
                );
                return None;
            }
        };
        let level = depth + 1;
        if level > MAX_SCHEMA_DEPTH {
            self.problem(
                path,
                format!("complex schemas nest at most {MAX_SCHEMA_DEPTH} levels deep"),
            );
            return None;
        }
        let header = self.header(object, path, ctx, kind, true);
        self.check_keys(object, path, kind, &header);
        let id = header.id;
        match kind {
            Kind::Array => {
                let element = match object.get("elementSchema") {
                    Some(element) => {
                        self.schema(element, &key_path(path, "elementSchema"), ctx, level)
                    }
                    None => {
                        self.problem(path, "missing elementSchema");
                        None
                    }
                }?;
                Some(SchemaOut {
                    schema: Schema::Array(ArraySchema {
                        id,
                        element_schema: Box::new(element.schema),
                    }),
                    height: element.height + 1,
                    array_at: Some((path.to_owned(), "an Array".to_owned())),
                })
            }
            Kind::Enum => self.enum_schema(object, path, ctx, id),
            Kind::Map => self.map_schema(object, path, ctx, id, level),
            _ => self.object_schema(object, path, ctx, id, level),
        }
    }

    fn enum_schema(
        &mut self,
        object: &'doc Map<String, Value>,
        path: &str,
        ctx: Ctx,
        id: Option<Dtmi>,
    ) -> Option<SchemaOut> {
        let value_schema = match object.get("valueSchema").and_then(Value::as_str) {
            Some("integer") => Some(EnumValueSchema::Integer),
            Some("string") => Some(EnumValueSchema::String),
            _ if object.contains_key("valueSchema") => {
                self.problem(
                    &key_path(path, "valueSchema"),
                    "valueSchema must be integer or string",
                );
                None
            }
            _ => {
                self.problem(
                    path,
                    "missing valueSchema; an Enum's values are integer or string",
                );
                None
            }
        };
        let values_path = key_path(path, "enumValues");
        let entries = match object.get("enumValues") {
            Some(values) => self.array(values, &values_path, "enumValues"),
            None if ctx.version == DtdlVersion::V2 => {
                self.problem(
                    path,
                    "missing enumValues; an Enum needs at least one value in DTDL v2",
                );
                Vec::new()
            }
            None => Vec::new(),
        };
        if ctx.version == DtdlVersion::V2 && object.contains_key("enumValues") {
            if entries.is_empty() {
                self.problem(&values_path, "an Enum needs at least one value in DTDL v2");
            } else if entries.len() > 100 {
                self.problem(
                    &values_path,
                    format!(
                        "an Enum has at most 100 values in DTDL v2, found {}",
                        entries.len()
                    ),
                );
            }
        }
        let mut values: Vec<EnumValue> = Vec::new();
        let mut value_paths: Vec<String> = Vec::new();
        for (i, entry) in entries {
            let entry_path = index_path(&values_path, i);
            let Some(entry_object) = self.object(entry, &entry_path, Kind::EnumValue, ctx) else {
                continue;
            };
            let header = self.header(entry_object, &entry_path, ctx, Kind::EnumValue, false);
            self.check_keys(entry_object, &entry_path, Kind::EnumValue, &header);
            let name = self.name(entry_object, &entry_path, ctx);
            let literal_path = key_path(&entry_path, "enumValue");
            let literal = match (entry_object.get("enumValue"), value_schema) {
                (None, _) => {
                    self.problem(&entry_path, "missing enumValue");
                    None
                }
                (Some(_), None) => None,
                (Some(Value::String(text)), Some(EnumValueSchema::String)) => {
                    Some(EnumLiteral::String(text.clone()))
                }
                (Some(value), Some(EnumValueSchema::Integer)) => {
                    match value.as_i64().and_then(|v| i32::try_from(v).ok()) {
                        Some(integer) => Some(EnumLiteral::Integer(integer)),
                        None => {
                            self.problem(
                                &literal_path,
                                format!("enumValue must be a 32-bit integer (valueSchema integer), found {}", show_value(value)),
                            );
                            None
                        }
                    }
                }
                (Some(value), Some(EnumValueSchema::String)) => {
                    self.problem(
                        &literal_path,
                        format!(
                            "enumValue must be a string (valueSchema string), found {}",
                            show_value(value)
                        ),
                    );
                    None
                }
            };
            let (Some(name), Some(literal)) = (name, literal) else {
                continue;
            };
            if let Some(first) = values.iter().position(|v| v.name == name) {
                let message = format!("duplicate name '{name}', also at {}", value_paths[first]);
                self.problem(&key_path(&entry_path, "name"), message);
            }
            if let Some(first) = values.iter().position(|v| v.value == literal) {
                let message = format!("duplicate enumValue, also at {}", value_paths[first]);
                self.problem(&literal_path, message);
            }
            values.push(EnumValue {
                name,
                display_name: header.display_name,
                value: literal,
            });
            value_paths.push(entry_path);
        }
        Some(SchemaOut {
            schema: Schema::Enum(EnumSchema {
                id,
                value_schema: value_schema?,
                values,
            }),
            height: 1,
            array_at: None,
        })
    }

    fn map_schema(
        &mut self,
        object: &'doc Map<String, Value>,
        path: &str,
        ctx: Ctx,
        id: Option<Dtmi>,
        level: usize,
    ) -> Option<SchemaOut> {
        let key_name = match object.get("mapKey") {
            None => {
                self.problem(path, "missing mapKey");
                None
            }
            Some(map_key) => {
                let map_key_path = key_path(path, "mapKey");
                let map_key = self.object(map_key, &map_key_path, Kind::MapKey, ctx)?;
                let header = self.header(map_key, &map_key_path, ctx, Kind::MapKey, false);
                self.check_keys(map_key, &map_key_path, Kind::MapKey, &header);
                let name = self.name(map_key, &map_key_path, ctx);
                match map_key.get("schema") {
                    Some(Value::String(schema)) if schema == "string" => name,
                    Some(_) => {
                        self.problem(
                            &key_path(&map_key_path, "schema"),
                            "a mapKey's schema must be string",
                        );
                        None
                    }
                    None => {
                        self.problem(&map_key_path, "missing schema; a mapKey's schema is string");
                        None
                    }
                }
            }
        };
        let value = match object.get("mapValue") {
            None => {
                self.problem(path, "missing mapValue");
                None
            }
            Some(map_value) => {
                let map_value_path = key_path(path, "mapValue");
                let map_value = self.object(map_value, &map_value_path, Kind::MapValue, ctx)?;
                let header = self.header(map_value, &map_value_path, ctx, Kind::MapValue, false);
                self.check_keys(map_value, &map_value_path, Kind::MapValue, &header);
                let name = self.name(map_value, &map_value_path, ctx);
                let schema = match map_value.get("schema") {
                    Some(schema) => {
                        self.schema(schema, &key_path(&map_value_path, "schema"), ctx, level)
                    }
                    None => {
                        self.problem(&map_value_path, "missing schema");
                        None
                    }
                };
                let (semantic_type, _) =
                    self.semantics(map_value, &map_value_path, ctx, &header, schema.as_ref());
                name.zip(schema)
                    .map(|(name, schema)| (name, schema, semantic_type))
            }
        };
        let (value_name, value, value_semantic_type) = value?;
        Some(SchemaOut {
            schema: Schema::Map(MapSchema {
                id,
                key_name: key_name?,
                value_name,
                value_schema: Box::new(value.schema),
                value_semantic_type,
            }),
            height: value.height + 1,
            array_at: value.array_at,
        })
    }

    fn object_schema(
        &mut self,
        object: &'doc Map<String, Value>,
        path: &str,
        ctx: Ctx,
        id: Option<Dtmi>,
        level: usize,
    ) -> Option<SchemaOut> {
        let fields_path = key_path(path, "fields");
        let entries = match object.get("fields") {
            Some(fields) => self.array(fields, &fields_path, "fields"),
            None if ctx.version == DtdlVersion::V2 => {
                self.problem(
                    path,
                    "missing fields; an Object needs at least one field in DTDL v2",
                );
                Vec::new()
            }
            None => Vec::new(),
        };
        if ctx.version == DtdlVersion::V2 && object.contains_key("fields") {
            if entries.is_empty() {
                self.problem(
                    &fields_path,
                    "an Object needs at least one field in DTDL v2",
                );
            } else if entries.len() > 30 {
                self.problem(
                    &fields_path,
                    format!(
                        "an Object has at most 30 fields in DTDL v2, found {}",
                        entries.len()
                    ),
                );
            }
        }
        let mut fields: Vec<Field> = Vec::new();
        let mut field_paths: Vec<String> = Vec::new();
        let mut height = 1;
        let mut array_at = None;
        let mut complete = true;
        for (i, entry) in entries {
            let field_path = index_path(&fields_path, i);
            let Some(field_object) = self.object(entry, &field_path, Kind::Field, ctx) else {
                complete = false;
                continue;
            };
            let header = self.header(field_object, &field_path, ctx, Kind::Field, false);
            self.check_keys(field_object, &field_path, Kind::Field, &header);
            let name = self.name(field_object, &field_path, ctx);
            let schema = match field_object.get("schema") {
                Some(schema) => self.schema(schema, &key_path(&field_path, "schema"), ctx, level),
                None => {
                    self.problem(&field_path, "missing schema");
                    None
                }
            };
            let (semantic_type, _) =
                self.semantics(field_object, &field_path, ctx, &header, schema.as_ref());
            let (Some(name), Some(schema)) = (name, schema) else {
                complete = false;
                continue;
            };
            if let Some(first) = fields.iter().position(|f| f.name == name) {
                let message = format!("duplicate name '{name}', also at {}", field_paths[first]);
                self.problem(&key_path(&field_path, "name"), message);
            }
            height = height.max(schema.height + 1);
            array_at = array_at.or(schema.array_at);
            fields.push(Field {
                name,
                display_name: header.display_name,
                description: header.description,
                schema: schema.schema,
                semantic_type,
            });
            field_paths.push(field_path);
        }
        complete.then_some(SchemaOut {
            schema: Schema::Object(ObjectSchema { id, fields }),
            height,
            array_at,
        })
    }

    // ---------------------------------------------------------------------------------------
    // Pieces every element has.

    /// `@type` as a list of terms; `None` (with a problem) when missing or malformed.
    fn types(&mut self, object: &Map<String, Value>, path: &str) -> Option<Vec<String>> {
        let type_path = key_path(path, "@type");
        match object.get("@type") {
            None => {
                self.problem(path, "missing @type");
                None
            }
            Some(Value::String(term)) => Some(vec![term.clone()]),
            Some(Value::Array(terms))
                if !terms.is_empty() && terms.iter().all(Value::is_string) =>
            {
                Some(
                    terms
                        .iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect(),
                )
            }
            Some(_) => {
                self.problem(
                    &type_path,
                    "@type must be a string or a non-empty array of strings",
                );
                None
            }
        }
    }

    /// Reads `@type` (checking it names `kind`, required or not), `@id`, `displayName`,
    /// `description` and `comment`, and sorts the co-types.
    fn header(
        &mut self,
        object: &Map<String, Value>,
        path: &str,
        ctx: Ctx,
        kind: Kind,
        type_required: bool,
    ) -> Header {
        let mut header = Header::default();
        let class = kind.class(ctx.version);
        let type_path = key_path(path, "@type");
        let types = if object.contains_key("@type") || type_required {
            self.types(object, path).unwrap_or_default()
        } else {
            vec![class.to_owned()]
        };
        if !types.is_empty() && !types.iter().any(|t| t == class) {
            // The co-types of an element of the wrong class would only add noise.
            self.problem(
                &type_path,
                format!("@type {} must include {class}", show_types(&types)),
            );
        } else {
            for term in types.iter().filter(|t| *t != class) {
                self.co_type(term, &type_path, ctx, kind, &mut header);
            }
        }
        if let Some(id) = object.get("@id") {
            let id_path = key_path(path, "@id");
            if let Some(id) = self.dtmi(id, &id_path) {
                if id.as_str().starts_with("dtmi:dtdl:")
                    || id.as_str().starts_with("dtmi:standard:")
                {
                    self.problem(
                        &id_path,
                        format!("'{id}' uses a prefix DTDL reserves (dtmi:dtdl:, dtmi:standard:)"),
                    );
                } else if ctx.version == DtdlVersion::V2 && id.minor_version().is_some() {
                    self.problem(
                        &id_path,
                        format!("'{id}' has a two-part version, which needs DTDL v3"),
                    );
                } else {
                    header.id = Some(id);
                }
            }
        }
        let display_max = ctx.name_max_len();
        header.display_name = self.localized(object, path, "displayName", display_max);
        header.description = self.localized(object, path, "description", DESCRIPTION_MAX_LEN);
        if let Some(comment) = object.get("comment") {
            let comment_path = key_path(path, "comment");
            match comment.as_str() {
                Some(text) if text.chars().count() > DESCRIPTION_MAX_LEN => self.problem(
                    &comment_path,
                    format!(
                        "comment has at most {DESCRIPTION_MAX_LEN} characters, found {}",
                        text.chars().count()
                    ),
                ),
                Some(_) => {}
                None => self.problem(&comment_path, "comment must be a string"),
            }
        }
        header
    }

    fn co_type(&mut self, term: &str, type_path: &str, ctx: Ctx, kind: Kind, header: &mut Header) {
        let class = kind.class(ctx.version);
        if DTDL_CLASSES.contains(&term) {
            self.problem(
                type_path,
                format!("'{term}' cannot co-type {} {class}", article(class)),
            );
            return;
        }
        if let Some((name, unit_type)) = units::semantic_type(term, ctx.version) {
            let defined = ctx.version == DtdlVersion::V2 || ctx.quantitative_types;
            if defined {
                if !kind.takes_semantic_type(ctx) {
                    let allowed = match ctx.version {
                        DtdlVersion::V2 => "a Telemetry or a Property in DTDL v2",
                        DtdlVersion::V3 => "a Telemetry, Property, Field, MapValue, CommandRequest or CommandResponse",
                    };
                    self.problem(
                        type_path,
                        format!("semantic type {name} can co-type only {allowed}"),
                    );
                } else if let Some((first, _)) = header.semantic {
                    self.problem(
                        type_path,
                        format!(
                            "an element has at most one semantic type, found {first} and {name}"
                        ),
                    );
                } else {
                    header.semantic = Some((name, unit_type));
                }
                return;
            }
        }
        if let Some((name, adjunct)) = ADJUNCTS.iter().find(|(name, _)| *name == term) {
            if ctx.iot_central {
                if ctx.version != DtdlVersion::V2 {
                    self.problem(
                        type_path,
                        format!("IoT Central's {name} type needs DTDL v2"),
                    );
                } else if !matches!(kind, Kind::Telemetry | Kind::Property) {
                    self.problem(
                        type_path,
                        format!(
                            "IoT Central's {name} type can co-type only a Telemetry or a Property"
                        ),
                    );
                } else if header.adjunct.is_some() {
                    self.problem(
                        type_path,
                        "an element has at most one of IoT Central's State, Event, Location, \
                         VelocityVector and AccelerationVector",
                    );
                } else {
                    header.adjunct = Some(*adjunct);
                }
                return;
            }
        }
        if term == "Cloud" {
            if kind == Kind::Property {
                header.cloud = true;
            } else {
                self.problem(
                    type_path,
                    format!(
                        "IoT Central's Cloud type can co-type only a Property, not {} {class}",
                        article(class)
                    ),
                );
            }
            return;
        }
        if header.other_types.iter().any(|t| t == term) {
            self.problem(type_path, format!("@type lists '{term}' twice"));
            return;
        }
        header.other_types.push(term.to_owned());
    }

    /// Reports properties that `kind` does not define, unless an undefined co-type allows them.
    fn check_keys(&mut self, object: &Map<String, Value>, path: &str, kind: Kind, header: &Header) {
        if header.open_world() {
            return;
        }
        const COMMON: &[&str] = &["@type", "@id", "comment", "description", "displayName"];
        let mut unknown: Vec<&String> = object
            .keys()
            .filter(|key| {
                !COMMON.contains(&key.as_str()) && !kind.properties().contains(&key.as_str())
            })
            .collect();
        unknown.sort();
        for key in unknown {
            let message = format!(
                "unknown property '{key}' for {} {}",
                article(kind.class(DtdlVersion::V2)),
                kind_label(kind)
            );
            self.problem(&key_path(path, key), message);
        }
    }

    /// `name`: required, a DTDL name within the version's length limit.
    fn name(&mut self, object: &Map<String, Value>, path: &str, ctx: Ctx) -> Option<String> {
        let name_path = key_path(path, "name");
        let name = match object.get("name") {
            None => {
                self.problem(path, "missing name");
                return None;
            }
            Some(Value::String(name)) => name,
            Some(other) => {
                self.problem(
                    &name_path,
                    format!("name must be a string, found {}", json_kind(other)),
                );
                return None;
            }
        };
        let max = ctx.name_max_len();
        if !is_dtdl_name(name) {
            self.problem(
                &name_path,
                format!(
                    "'{name}' is not a DTDL name: start with a letter, use only letters, digits \
                     and underscores, and end with a letter or digit"
                ),
            );
            None
        } else if name.len() > max {
            let version = match ctx.version {
                DtdlVersion::V2 => "v2",
                DtdlVersion::V3 => "v3",
            };
            self.problem(
                &name_path,
                format!(
                    "a name has at most {max} characters in DTDL {version}, found {}",
                    name.len()
                ),
            );
            None
        } else {
            Some(name.clone())
        }
    }

    fn dtmi(&mut self, value: &Value, path: &str) -> Option<Dtmi> {
        match value {
            Value::String(raw) => match Dtmi::parse(raw) {
                Ok(dtmi) => Some(dtmi),
                Err(err) => {
                    self.problem(path, format!("invalid DTMI '{raw}': {err}"));
                    None
                }
            },
            other => {
                self.problem(
                    path,
                    format!("expected a DTMI string, found {}", json_kind(other)),
                );
                None
            }
        }
    }

    /// An optional boolean property, `false` when absent.
    fn boolean(&mut self, object: &Map<String, Value>, path: &str, key: &str) -> Option<bool> {
        match object.get(key) {
            None => Some(false),
            Some(Value::Bool(value)) => Some(*value),
            Some(other) => {
                self.problem(
                    &key_path(path, key),
                    format!("{key} must be true or false, found {}", json_kind(other)),
                );
                None
            }
        }
    }

    fn localized(
        &mut self,
        object: &Map<String, Value>,
        path: &str,
        key: &str,
        max: usize,
    ) -> Option<LocalizedText> {
        let value = object.get(key)?;
        let value_path = key_path(path, key);
        let mut by_language = std::collections::BTreeMap::new();
        let entries: Vec<(String, String, &Value)> = match value {
            Value::String(_) => vec![("en".to_owned(), value_path.clone(), value)],
            Value::Object(map) => map
                .iter()
                .map(|(language, text)| (language.clone(), key_path(&value_path, language), text))
                .collect(),
            other => {
                self.problem(
                    &value_path,
                    format!(
                        "{key} is a string or a map from language tags to strings, found {}",
                        json_kind(other)
                    ),
                );
                return None;
            }
        };
        let mut valid = true;
        for (language, entry_path, text) in entries {
            if !is_language_tag(&language) {
                self.problem(
                    &entry_path,
                    format!("'{language}' is not a language tag such as en or en-US"),
                );
                valid = false;
                continue;
            }
            let Value::String(text) = text else {
                self.problem(
                    &entry_path,
                    format!("{key} text must be a string, found {}", json_kind(text)),
                );
                valid = false;
                continue;
            };
            let len = text.chars().count();
            if len > max {
                self.problem(
                    &entry_path,
                    format!("{key} has at most {max} characters, found {len}"),
                );
                valid = false;
                continue;
            }
            by_language.insert(language, text.clone());
        }
        valid.then_some(LocalizedText { by_language })
    }

    /// The elements of an array property, with a problem when it is not an array. DTDL also
    /// accepts a single element where a set is expected (JSON-LD), so a lone object counts as
    /// a set of one.
    fn array(&mut self, value: &'doc Value, path: &str, key: &str) -> Vec<(usize, &'doc Value)> {
        match value {
            Value::Array(elements) => elements.iter().enumerate().collect(),
            Value::Object(_) => vec![(0, value)],
            other => {
                self.problem(
                    path,
                    format!("{key} must be an array, found {}", json_kind(other)),
                );
                Vec::new()
            }
        }
    }

    fn object(
        &mut self,
        value: &'doc Value,
        path: &str,
        kind: Kind,
        ctx: Ctx,
    ) -> Option<&'doc Map<String, Value>> {
        match value {
            Value::Object(object) => Some(object),
            other => {
                self.problem(
                    path,
                    format!(
                        "expected {} {} object, found {}",
                        article(kind.class(ctx.version)),
                        kind.class(ctx.version),
                        json_kind(other)
                    ),
                );
                None
            }
        }
    }
}

impl ParsedInterface {
    fn clone_parsed(&self) -> ParsedInterface {
        ParsedInterface {
            interface: self.interface.clone(),
            content_paths: self.content_paths.clone(),
            extends_height: self.extends_height,
        }
    }
}

/// `^[a-zA-Z](?:[a-zA-Z0-9_]*[a-zA-Z0-9])?$`
fn is_dtdl_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphabetic()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        _ => false,
    }
}

/// A loose BCP 47 check: alphabetic primary subtag, then alphanumeric subtags, 1-8 each.
fn is_language_tag(tag: &str) -> bool {
    let mut subtags = tag.split('-');
    let primary_ok = subtags
        .next()
        .is_some_and(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic()));
    primary_ok
        && subtags
            .all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn has_type(value: &Value, term: &str) -> bool {
    match value.get("@type") {
        Some(Value::String(t)) => t == term,
        Some(Value::Array(terms)) => terms.iter().any(|t| t.as_str() == Some(term)),
        _ => false,
    }
}

fn show_types(types: &[String]) -> String {
    match types {
        [single] => format!("'{single}'"),
        _ => format!(
            "[{}]",
            types
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn show_value(value: &Value) -> String {
    match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => format!("'{text}'"),
        other => json_kind(other).to_owned(),
    }
}

/// How problems name a schema they found.
pub(super) fn schema_name(schema: &Schema) -> String {
    match schema {
        Schema::Primitive(primitive) => PRIMITIVES
            .iter()
            .find(|(_, p)| p == primitive)
            .map_or("a primitive", |(name, _)| name)
            .to_owned(),
        Schema::Geospatial(geospatial) => GEOSPATIAL
            .iter()
            .find(|(_, g)| g == geospatial)
            .map_or("a geospatial schema", |(name, _)| name)
            .to_owned(),
        Schema::Geopoint => "geopoint".to_owned(),
        Schema::Vector => "vector".to_owned(),
        Schema::Array(_) => "an Array".to_owned(),
        Schema::Enum(_) => "an Enum".to_owned(),
        Schema::Map(_) => "a Map".to_owned(),
        Schema::Object(_) => "an Object".to_owned(),
    }
}

fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('A' | 'E' | 'I' | 'O' | 'U' | 'a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// The class name problems use for `kind`: Request/Response read better than CommandPayload.
fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Request => "Command request",
        Kind::Response => "Command response",
        other => other.class(DtdlVersion::V2),
    }
}
