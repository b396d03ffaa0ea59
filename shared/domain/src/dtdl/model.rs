//! The typed device model a template's `capabilityModel` parses into, and the look-ups later
//! issues need (telemetry, property and command by component and name).
//!
//! Every type here is built only by the parser (`DeviceModel::parse`), which has checked it
//! against DTDL, so the structs are `#[non_exhaustive]`: readable field by field elsewhere,
//! constructible only in this crate. Extended Interfaces are already flattened into
//! `contents`, and schema references (`"schema": "dtmi:..."`) are already resolved, so a reader
//! never chases an id. This module owns no JSON wire shape: templates are stored and served as
//! the JSON the client sent.

use std::collections::BTreeMap;

use super::{DtdlVersion, Dtmi};

/// A device template's capability model: the root Interface and everything under it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceModel {
    pub(super) version: DtdlVersion,
    pub(super) root: Interface,
}

/// A DTDL Interface, with the contents of the Interfaces it `extends` merged in.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Interface {
    pub id: Dtmi,
    pub display_name: Option<LocalizedText>,
    pub description: Option<LocalizedText>,
    /// The Interfaces this one extends, directly; their contents are already in `contents`.
    pub extends: Vec<Dtmi>,
    /// Own contents first, in document order, then inherited ones.
    pub contents: Vec<Content>,
}

/// One element of an Interface's `contents`.
// An Interface holds at most a few hundred contents, built once per parse: boxing the larger
// variants would cost more in noise than it saves in memory.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Telemetry(Telemetry),
    Property(Property),
    Command(Command),
    Component(Component),
    Relationship(Relationship),
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Telemetry {
    pub id: Option<Dtmi>,
    pub name: String,
    pub display_name: Option<LocalizedText>,
    pub description: Option<LocalizedText>,
    pub schema: Schema,
    pub semantic_type: Option<SemanticType>,
    pub adjunct: Option<Adjunct>,
    /// Co-types Gyre does not interpret (DTDL's open world); kept for display.
    pub other_types: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Property {
    pub id: Option<Dtmi>,
    pub name: String,
    pub display_name: Option<LocalizedText>,
    pub description: Option<LocalizedText>,
    pub schema: Schema,
    /// Writable by the cloud (desired properties); read-only (reported) otherwise.
    pub writable: bool,
    /// An IoT Central cloud property (`["Property", "Cloud"]`): stored by the application,
    /// never sent to the device.
    pub cloud: bool,
    pub semantic_type: Option<SemanticType>,
    pub adjunct: Option<Adjunct>,
    pub other_types: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Command {
    pub id: Option<Dtmi>,
    pub name: String,
    pub display_name: Option<LocalizedText>,
    pub description: Option<LocalizedText>,
    pub request: Option<CommandPayload>,
    pub response: Option<CommandPayload>,
}

/// A Command's request or response (CommandPayload in v2, CommandRequest/Response in v3).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CommandPayload {
    pub name: String,
    pub display_name: Option<LocalizedText>,
    pub description: Option<LocalizedText>,
    pub schema: Schema,
    pub semantic_type: Option<SemanticType>,
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Component {
    pub id: Option<Dtmi>,
    pub name: String,
    pub display_name: Option<LocalizedText>,
    pub description: Option<LocalizedText>,
    /// The component's Interface (never itself holding Components).
    pub interface: Interface,
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Relationship {
    pub id: Option<Dtmi>,
    pub name: String,
    pub display_name: Option<LocalizedText>,
    pub description: Option<LocalizedText>,
    /// The target Interface; any Interface when absent.
    pub target: Option<Dtmi>,
    pub min_multiplicity: Option<u32>,
    pub max_multiplicity: Option<u32>,
    pub writable: bool,
    pub properties: Vec<Property>,
}

/// The data type of a telemetry, property, field, command payload...
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Schema {
    Primitive(Primitive),
    /// GeoJSON geometries: `point`, `lineString`, ...
    Geospatial(Geospatial),
    /// IoT Central's `geopoint`: `{"lat": .., "lon": .., "alt": ..}`.
    Geopoint,
    /// IoT Central's `vector`: `{"x": .., "y": .., "z": ..}`.
    Vector,
    Array(ArraySchema),
    Enum(EnumSchema),
    Map(MapSchema),
    Object(ObjectSchema),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Primitive {
    Boolean,
    Date,
    DateTime,
    Double,
    Duration,
    Float,
    Integer,
    Long,
    String,
    Time,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Geospatial {
    Point,
    MultiPoint,
    LineString,
    MultiLineString,
    Polygon,
    MultiPolygon,
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ArraySchema {
    pub id: Option<Dtmi>,
    pub element_schema: Box<Schema>,
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EnumSchema {
    pub id: Option<Dtmi>,
    pub value_schema: EnumValueSchema,
    pub values: Vec<EnumValue>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnumValueSchema {
    Integer,
    String,
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EnumValue {
    pub name: String,
    pub display_name: Option<LocalizedText>,
    pub value: EnumLiteral,
}

/// The on-the-wire value of an enum label; its kind matches the Enum's `valueSchema`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EnumLiteral {
    Integer(i32),
    String(String),
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MapSchema {
    pub id: Option<Dtmi>,
    /// The `mapKey` name: metadata only, keys are any strings on the wire.
    pub key_name: String,
    pub value_name: String,
    pub value_schema: Box<Schema>,
    pub value_semantic_type: Option<SemanticType>,
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ObjectSchema {
    pub id: Option<Dtmi>,
    pub fields: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Field {
    pub name: String,
    pub display_name: Option<LocalizedText>,
    pub description: Option<LocalizedText>,
    pub schema: Schema,
    pub semantic_type: Option<SemanticType>,
}

/// A standard semantic type and its unit, e.g. `Temperature` in `degreeCelsius`.
/// Invariant: the pair comes from DTDL's table for the model's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SemanticType {
    pub(super) name: &'static str,
    pub(super) unit: &'static str,
}

impl SemanticType {
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn unit(&self) -> &'static str {
        self.unit
    }
}

/// IoT Central's adjunct types (`dtmi:iotcentral:context;2`, DTDL v2 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Adjunct {
    /// The schema is an Enum; IoT Central charts it as a state.
    State,
    /// A numeric or string value IoT Central shows as an event.
    Event,
    /// A geospatial or `geopoint` value IoT Central puts on a map.
    Location,
    VelocityVector {
        unit: Option<&'static str>,
    },
    AccelerationVector {
        unit: Option<&'static str>,
    },
}

/// A localizable display string: DTDL's plain string (English) or language map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalizedText {
    pub(super) by_language: BTreeMap<String, String>,
}

impl LocalizedText {
    /// The text in `language` (a BCP 47 tag such as `en`), if given.
    pub fn get(&self, language: &str) -> Option<&str> {
        self.by_language.get(language).map(String::as_str)
    }

    /// English if present (DTDL's default language), otherwise the first language's text.
    pub fn default_text(&self) -> &str {
        self.get("en")
            .or_else(|| self.by_language.values().next().map(String::as_str))
            .unwrap_or("")
    }
}

impl DeviceModel {
    /// The root Interface's id: the template's model id.
    pub fn id(&self) -> &Dtmi {
        &self.root.id
    }

    pub fn display_name(&self) -> Option<&LocalizedText> {
        self.root.display_name.as_ref()
    }

    /// The DTDL version of the root Interface, from its `@context`.
    pub fn version(&self) -> DtdlVersion {
        self.version
    }

    /// The root Interface: the default component.
    pub fn root(&self) -> &Interface {
        &self.root
    }

    pub fn component(&self, name: &str) -> Option<&Component> {
        self.root.contents.iter().find_map(|content| match content {
            Content::Component(component) if component.name == name => Some(component),
            _ => None,
        })
    }

    /// Every content of the model with the component it belongs to (`None`: the root
    /// Interface), root contents first; Components themselves are not yielded.
    pub fn contents(&self) -> impl Iterator<Item = (Option<&str>, &Content)> {
        let root = self.root.contents.iter().map(|content| (None, content));
        let components = self
            .root
            .contents
            .iter()
            .filter_map(|content| match content {
                Content::Component(component) => Some(component),
                _ => None,
            });
        let nested = components.flat_map(|component| {
            let name = Some(component.name.as_str());
            component
                .interface
                .contents
                .iter()
                .map(move |content| (name, content))
        });
        root.filter(|(_, content)| !matches!(content, Content::Component(_)))
            .chain(nested)
    }

    /// The telemetry `name` of `component` (`None`: the root Interface).
    pub fn telemetry(&self, component: Option<&str>, name: &str) -> Option<&Telemetry> {
        self.find(component, name, |content| match content {
            Content::Telemetry(telemetry) => Some(telemetry),
            _ => None,
        })
    }

    /// The property `name` of `component` (`None`: the root Interface), cloud ones included.
    pub fn property(&self, component: Option<&str>, name: &str) -> Option<&Property> {
        self.find(component, name, |content| match content {
            Content::Property(property) => Some(property),
            _ => None,
        })
    }

    /// The command `name` of `component` (`None`: the root Interface).
    pub fn command(&self, component: Option<&str>, name: &str) -> Option<&Command> {
        self.find(component, name, |content| match content {
            Content::Command(command) => Some(command),
            _ => None,
        })
    }

    fn find<'a, T>(
        &'a self,
        component: Option<&str>,
        name: &str,
        select: impl Fn(&'a Content) -> Option<&'a T>,
    ) -> Option<&'a T> {
        let interface = match component {
            None => &self.root,
            Some(component) => &self.component(component)?.interface,
        };
        interface
            .contents
            .iter()
            .find(|content| content.name() == name)
            .and_then(select)
    }
}

impl Content {
    pub fn name(&self) -> &str {
        match self {
            Content::Telemetry(telemetry) => &telemetry.name,
            Content::Property(property) => &property.name,
            Content::Command(command) => &command.name,
            Content::Component(component) => &component.name,
            Content::Relationship(relationship) => &relationship.name,
        }
    }
}
