//! Tests of the DTDL layer at its public boundary: whole public models that must parse, many
//! small bad documents that must fail with exactly the listed problems, the look-ups, and
//! values checked against schemas.

use serde_json::{json, Value};

use super::*;

// -------------------------------------------------------------------------------------------
// Fixtures: public models, written out.

/// The public IoT Plug and Play thermostat model (`fixtures/thermostat.json`, shared with the
/// template and end-to-end tests).
fn thermostat() -> Value {
    serde_json::from_str(include_str!("fixtures/thermostat.json"))
        .expect("the thermostat fixture is JSON")
}

fn device_information() -> Value {
    let property = |name: &str, display_name: &str, schema: &str, description: &str| {
        json!({
            "@type": "Property",
            "name": name,
            "displayName": display_name,
            "schema": schema,
            "description": description
        })
    };
    json!({
        "@context": "dtmi:dtdl:context;2",
        "@id": "dtmi:azure:DeviceManagement:DeviceInformation;1",
        "@type": "Interface",
        "displayName": "Device Information",
        "contents": [
            property("manufacturer", "Manufacturer", "string",
                "Company name of the device manufacturer. This could be the same as the name of the original equipment manufacturer (OEM). Ex. Contoso."),
            property("model", "Device model", "string",
                "Device model name or ID. Ex. Surface Book 2."),
            property("swVersion", "Software version", "string",
                "Version of the software on your device. This could be the version of your firmware. Ex. 1.3.45"),
            property("osName", "Operating system name", "string",
                "Name of the operating system on the device. Ex. Windows 10 IoT Core."),
            property("processorArchitecture", "Processor architecture", "string",
                "Architecture of the processor on the device. Ex. x64 or ARM."),
            property("processorManufacturer", "Processor manufacturer", "string",
                "Name of the manufacturer of the processor on the device. Ex. Intel."),
            property("totalStorage", "Total storage", "double",
                "Total available storage on the device in kilobytes. Ex. 2048000 kilobytes."),
            property("totalMemory", "Total memory", "double",
                "Total available memory on the device in kilobytes. Ex. 256000 kilobytes.")
        ]
    })
}

/// The public temperature controller, in the array form: root first, then the Interfaces its
/// Components refer to.
fn temperature_controller() -> Value {
    let component = |name: &str, schema: &str, display_name: &str| json!({ "@type": "Component", "name": name, "schema": schema, "displayName": display_name });
    json!([
        {
            "@context": "dtmi:dtdl:context;2",
            "@id": "dtmi:com:example:TemperatureController;2",
            "@type": "Interface",
            "displayName": "Temperature Controller",
            "description": "Device with two thermostats and remote reboot.",
            "contents": [
                {
                    "@type": ["Telemetry", "DataSize"],
                    "name": "workingSet",
                    "displayName": "Working Set",
                    "description": "Current working set of the device memory in KiB.",
                    "schema": "double",
                    "unit": "kibibyte"
                },
                {
                    "@type": "Property",
                    "name": "serialNumber",
                    "displayName": "Serial Number",
                    "description": "Serial number of the device.",
                    "schema": "string"
                },
                {
                    "@type": "Command",
                    "name": "reboot",
                    "displayName": "Reboot",
                    "description": "Reboots the device after waiting the number of seconds specified.",
                    "request": {
                        "@type": "CommandPayload",
                        "name": "delay",
                        "displayName": "Delay in seconds",
                        "description": "Number of seconds to wait before rebooting the device.",
                        "schema": "integer"
                    }
                },
                component("thermostat1", "dtmi:com:example:Thermostat;1", "Thermostat One"),
                component("thermostat2", "dtmi:com:example:Thermostat;1", "Thermostat Two"),
                component("deviceInformation", "dtmi:azure:DeviceManagement:DeviceInformation;1",
                    "Device Information interface")
            ]
        },
        thermostat(),
        device_information()
    ])
}

/// An IoT Central template's capability model: its context first, components inline, a cloud
/// property, State and Event telemetry, a geopoint Location and a vector.
fn iot_central_truck() -> Value {
    json!({
        "@context": ["dtmi:iotcentral:context;2", "dtmi:dtdl:context;2"],
        "@id": "dtmi:contoso:RefrigeratedTruck;1",
        "@type": "Interface",
        "displayName": { "en": "Refrigerated Truck", "fr": "Camion frigorifique" },
        "contents": [
            {
                "@id": "dtmi:contoso:RefrigeratedTruck:customerName;1",
                "@type": ["Property", "Cloud"],
                "name": "customerName",
                "displayName": "Customer name",
                "schema": "string"
            },
            {
                "@type": ["Property", "Cloud", "StringValue"],
                "name": "depot",
                "schema": "geopoint"
            },
            {
                "@type": ["Telemetry", "State"],
                "name": "contentsState",
                "schema": {
                    "@type": "Enum",
                    "valueSchema": "string",
                    "enumValues": [
                        { "name": "empty", "enumValue": "empty", "displayName": "Empty" },
                        { "name": "full", "enumValue": "full" },
                        { "name": "melting", "enumValue": "melting" }
                    ]
                }
            },
            { "@type": ["Telemetry", "Event"], "name": "doorOpened", "schema": "string" },
            { "@type": ["Telemetry", "Location"], "name": "location", "schema": "geopoint" },
            {
                "@type": ["Telemetry", "AccelerationVector"],
                "name": "acceleration",
                "schema": "vector",
                "unit": "gForce"
            },
            {
                "@type": "Component",
                "name": "cooler",
                "schema": {
                    "@id": "dtmi:contoso:Cooler;1",
                    "@type": "Interface",
                    "displayName": "Cooler",
                    "contents": [
                        {
                            "@type": ["Telemetry", "Temperature"],
                            "name": "temperature",
                            "schema": "double",
                            "unit": "degreeCelsius"
                        },
                        {
                            "@type": ["Property", "State"],
                            "name": "mode",
                            "writable": true,
                            "schema": {
                                "@type": "Enum",
                                "valueSchema": "integer",
                                "enumValues": [
                                    { "name": "off", "enumValue": 0 },
                                    { "name": "cooling", "enumValue": 1 }
                                ]
                            }
                        },
                        { "@type": "Command", "name": "defrost" }
                    ]
                }
            },
            {
                "@type": "Relationship",
                "name": "depotOf",
                "target": "dtmi:contoso:Depot;1",
                "maxMultiplicity": 1,
                "properties": [
                    { "@type": "Property", "name": "since", "schema": "date" }
                ]
            }
        ]
    })
}

// -------------------------------------------------------------------------------------------
// Helpers.

fn parse_ok(document: &Value) -> DeviceModel {
    match DeviceModel::parse(document) {
        Ok(model) => model,
        Err(err) => panic!("expected a valid model, got:\n{}", show(&err.problems)),
    }
}

fn show(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  ({:?}, {:?}),", p.path, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that `document` fails with exactly `expected` (path, message) problems, in order.
fn check(document: Value, expected: &[(&str, &str)]) {
    let actual = match DeviceModel::parse(&document) {
        Ok(_) => Vec::new(),
        Err(err) => err.problems,
    };
    let expected: Vec<Problem> = expected
        .iter()
        .map(|(path, message)| Problem::new(path, *message))
        .collect();
    assert!(
        actual == expected,
        "document:\n{document:#}\nexpected:\n{}\nactual:\n{}",
        show(&expected),
        show(&actual)
    );
}

/// A DTDL v2 Interface with IoT Central's context holding `contents`.
fn v2(contents: Value) -> Value {
    json!({
        "@context": ["dtmi:dtdl:context;2", "dtmi:iotcentral:context;2"],
        "@id": "dtmi:com:example:Test;1",
        "@type": "Interface",
        "contents": contents
    })
}

/// A DTDL v3 Interface with the QuantitativeTypes extension holding `contents`.
fn v3(contents: Value) -> Value {
    json!({
        "@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1"],
        "@id": "dtmi:com:example:Test;1",
        "@type": "Interface",
        "contents": contents
    })
}

/// The schema of a one-telemetry v2 model (with IoT Central's context).
fn schema(schema: Value) -> Schema {
    let model = parse_ok(&v2(
        json!([{ "@type": "Telemetry", "name": "t", "schema": schema }]),
    ));
    model.telemetry(None, "t").unwrap().schema.clone()
}

fn check_value(schema: &Schema, value: Value, expected: &[(&str, &str)]) {
    let actual = match validate_value(schema, &value) {
        Ok(()) => Vec::new(),
        Err(problems) => problems,
    };
    let expected: Vec<Problem> = expected
        .iter()
        .map(|(path, message)| Problem::new(path, *message))
        .collect();
    assert!(
        actual == expected,
        "value {value}\nexpected:\n{}\nactual:\n{}",
        show(&expected),
        show(&actual)
    );
}

fn nested_objects(levels: usize) -> Value {
    let mut schema = json!("double");
    for _ in 0..levels {
        schema = json!({ "@type": "Object", "fields": [{ "name": "inner", "schema": schema }] });
    }
    schema
}

// -------------------------------------------------------------------------------------------
// Public models.

#[test]
fn the_public_thermostat_parses_into_its_capabilities() {
    let model = parse_ok(&thermostat());
    assert_eq!(model.id().as_str(), "dtmi:com:example:Thermostat;1");
    assert_eq!(model.version(), DtdlVersion::V2);
    assert_eq!(model.display_name().unwrap().default_text(), "Thermostat");
    assert_eq!(model.root().contents.len(), 4);

    let temperature = model.telemetry(None, "temperature").unwrap();
    assert_eq!(temperature.schema, Schema::Primitive(Primitive::Double));
    let semantic = temperature.semantic_type.unwrap();
    assert_eq!(
        (semantic.name(), semantic.unit()),
        ("Temperature", "degreeCelsius")
    );

    let target = model.property(None, "targetTemperature").unwrap();
    assert!(target.writable && !target.cloud);
    let max = model.property(None, "maxTempSinceLastReboot").unwrap();
    assert!(!max.writable);

    let command = model.command(None, "getMaxMinReport").unwrap();
    let request = command.request.as_ref().unwrap();
    assert_eq!(
        (request.name.as_str(), &request.schema),
        ("since", &Schema::Primitive(Primitive::DateTime))
    );
    let response = command.response.as_ref().unwrap();
    assert_eq!(response.name, "tempReport");
    let Schema::Object(report) = &response.schema else {
        panic!("expected an Object response, got {:?}", response.schema)
    };
    let fields: Vec<&str> = report.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        fields,
        ["maxTemp", "minTemp", "avgTemp", "startTime", "endTime"]
    );

    // Look-ups are by kind: a property name is not a telemetry, and there is no component.
    assert!(model.telemetry(None, "targetTemperature").is_none());
    assert!(model.command(None, "reboot").is_none());
    assert!(model
        .telemetry(Some("thermostat1"), "temperature")
        .is_none());
}

#[test]
fn the_temperature_controller_resolves_its_components_from_the_array() {
    let model = parse_ok(&temperature_controller());
    assert_eq!(
        model.id().as_str(),
        "dtmi:com:example:TemperatureController;2"
    );

    let working_set = model.telemetry(None, "workingSet").unwrap();
    assert_eq!(working_set.semantic_type.unwrap().unit(), "kibibyte");
    assert!(model.property(None, "serialNumber").is_some());
    let reboot = model.command(None, "reboot").unwrap();
    assert_eq!(
        reboot.request.as_ref().unwrap().schema,
        Schema::Primitive(Primitive::Integer)
    );
    assert!(reboot.response.is_none());

    for component in ["thermostat1", "thermostat2"] {
        let thermostat = model.component(component).unwrap();
        assert_eq!(
            thermostat.interface.id.as_str(),
            "dtmi:com:example:Thermostat;1"
        );
        assert!(model.telemetry(Some(component), "temperature").is_some());
        assert!(
            model
                .property(Some(component), "targetTemperature")
                .unwrap()
                .writable
        );
        assert!(model.command(Some(component), "getMaxMinReport").is_some());
    }
    assert_eq!(
        model
            .property(Some("deviceInformation"), "totalMemory")
            .unwrap()
            .schema,
        Schema::Primitive(Primitive::Double)
    );
    // The root does not see into its components, nor do components see each other.
    assert!(model.telemetry(None, "temperature").is_none());
    assert!(model
        .property(Some("thermostat1"), "serialNumber")
        .is_none());
    assert!(model.telemetry(Some("nope"), "temperature").is_none());

    let listed: Vec<(Option<&str>, &str)> = model
        .contents()
        .map(|(component, content)| (component, content.name()))
        .collect();
    assert_eq!(listed.len(), 3 + 4 + 4 + 8);
    assert_eq!(listed[0], (None, "workingSet"));
    assert_eq!(listed[3], (Some("thermostat1"), "temperature"));
    assert_eq!(listed[18], (Some("deviceInformation"), "totalMemory"));
}

#[test]
fn an_iot_central_template_with_cloud_properties_states_and_events_parses() {
    let model = parse_ok(&iot_central_truck());
    assert_eq!(
        model.display_name().unwrap().get("fr"),
        Some("Camion frigorifique")
    );

    let customer = model.property(None, "customerName").unwrap();
    assert!(customer.cloud && !customer.writable);
    assert_eq!(
        customer.id.as_ref().unwrap().as_str(),
        "dtmi:contoso:RefrigeratedTruck:customerName;1"
    );
    let depot = model.property(None, "depot").unwrap();
    assert!(depot.cloud);
    assert_eq!(depot.schema, Schema::Geopoint);
    assert_eq!(depot.other_types, ["StringValue"]);

    let state = model.telemetry(None, "contentsState").unwrap();
    assert_eq!(state.adjunct, Some(Adjunct::State));
    let Schema::Enum(states) = &state.schema else {
        panic!("expected an Enum")
    };
    assert_eq!(states.value_schema, EnumValueSchema::String);
    assert_eq!(
        states.values[2].value,
        EnumLiteral::String("melting".to_owned())
    );
    assert_eq!(
        model.telemetry(None, "doorOpened").unwrap().adjunct,
        Some(Adjunct::Event)
    );
    assert_eq!(
        model.telemetry(None, "location").unwrap().adjunct,
        Some(Adjunct::Location)
    );
    assert_eq!(
        model.telemetry(None, "acceleration").unwrap().adjunct,
        Some(Adjunct::AccelerationVector {
            unit: Some("gForce")
        })
    );

    let mode = model.property(Some("cooler"), "mode").unwrap();
    assert_eq!((mode.adjunct, mode.writable), (Some(Adjunct::State), true));
    assert!(model
        .command(Some("cooler"), "defrost")
        .unwrap()
        .request
        .is_none());

    let Content::Relationship(relationship) = &model.root().contents[7] else {
        panic!("expected the relationship last")
    };
    assert_eq!(
        relationship.target.as_ref().unwrap().as_str(),
        "dtmi:contoso:Depot;1"
    );
    assert_eq!(
        (relationship.min_multiplicity, relationship.max_multiplicity),
        (None, Some(1))
    );
    assert_eq!(
        relationship.properties[0].schema,
        Schema::Primitive(Primitive::Date)
    );
}

#[test]
fn dtdl_v3_allows_arrays_in_properties_and_two_part_versions() {
    let model = parse_ok(&json!({
        "@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1"],
        "@id": "dtmi:com:example:Room;1.2",
        "@type": "Interface",
        "contents": [
            { "@type": "Property", "name": "tags", "schema": { "@type": "Array", "elementSchema": "string" } },
            { "@type": "Property", "name": "outline", "schema": "polygon" },
            { "@type": "Property", "name": "empty", "schema": { "@type": "Enum", "valueSchema": "integer" } },
            {
                "@type": "Telemetry",
                "name": "climate",
                "schema": {
                    "@type": "Object",
                    "fields": [
                        { "@type": ["Field", "Pressure"], "name": "pressure", "schema": "double", "unit": "hectopascal" }
                    ]
                }
            },
            {
                "@type": "Command",
                "name": "heat",
                "request": { "@type": ["CommandRequest", "Temperature"], "name": "to", "schema": "double", "unit": "kelvin" }
            }
        ]
    }));
    assert_eq!(model.version(), DtdlVersion::V3);
    assert_eq!(model.id().minor_version(), Some(2));
    let Schema::Object(climate) = &model.telemetry(None, "climate").unwrap().schema else {
        panic!("expected an Object")
    };
    assert_eq!(
        climate.fields[0].semantic_type.unwrap().unit(),
        "hectopascal"
    );
    let heat = model.command(None, "heat").unwrap();
    assert_eq!(
        heat.request.as_ref().unwrap().semantic_type.unwrap().name(),
        "Temperature"
    );
}

#[test]
fn extends_merges_contents_and_reusable_schemas_resolve_by_id() {
    let model = parse_ok(&json!([
        {
            "@context": "dtmi:dtdl:context;2",
            "@id": "dtmi:com:example:ConferenceRoom;1",
            "@type": "Interface",
            "extends": ["dtmi:com:example:Room;1", {
                "@id": "dtmi:com:example:Bookable;1",
                "@type": "Interface",
                "contents": [{ "@type": "Property", "name": "booked", "schema": "boolean" }]
            }],
            "contents": [
                { "@type": "Property", "name": "capacity", "schema": "integer" },
                { "@type": "Telemetry", "name": "accel1", "schema": "dtmi:com:example:acceleration;1" },
                { "@type": "Telemetry", "name": "accel2", "schema": "dtmi:com:example:acceleration;1" }
            ],
            "schemas": [{
                "@id": "dtmi:com:example:acceleration;1",
                "@type": "Object",
                "fields": [
                    { "name": "x", "schema": "double" },
                    { "name": "y", "schema": "double" },
                    { "name": "z", "schema": "double" }
                ]
            }]
        },
        {
            "@context": "dtmi:dtdl:context;2",
            "@id": "dtmi:com:example:Room;1",
            "@type": "Interface",
            "contents": [{ "@type": "Property", "name": "occupied", "schema": "boolean" }]
        }
    ]));
    let names: Vec<&str> = model.root().contents.iter().map(Content::name).collect();
    assert_eq!(
        names,
        ["capacity", "accel1", "accel2", "occupied", "booked"]
    );
    assert_eq!(
        model
            .root()
            .extends
            .iter()
            .map(Dtmi::as_str)
            .collect::<Vec<_>>(),
        ["dtmi:com:example:Room;1", "dtmi:com:example:Bookable;1"]
    );
    let accel = &model.telemetry(None, "accel2").unwrap().schema;
    let Schema::Object(object) = accel else {
        panic!("expected the shared Object")
    };
    assert_eq!(
        object.id.as_ref().unwrap().as_str(),
        "dtmi:com:example:acceleration;1"
    );
    assert_eq!(object.fields.len(), 3);
}

#[test]
fn open_world_co_types_allow_undefined_properties() {
    // DTDL's own example: an undefined co-type permits an undefined property.
    let model = parse_ok(&v2(json!([{
        "@type": ["Property", "Commercial"],
        "name": "setPointTemp",
        "writable": true,
        "schema": "double",
        "brand": "Honeywell"
    }])));
    assert_eq!(
        model.property(None, "setPointTemp").unwrap().other_types,
        ["Commercial"]
    );
    // Without IoT Central's context, State is just an undefined co-type.
    let model = parse_ok(&json!({
        "@context": "dtmi:dtdl:context;2",
        "@id": "dtmi:com:example:Test;1",
        "@type": "Interface",
        "contents": [{ "@type": ["Telemetry", "State"], "name": "s", "schema": "string" }]
    }));
    let state = model.telemetry(None, "s").unwrap();
    assert_eq!(
        (state.adjunct, state.other_types.as_slice()),
        (None, ["State".to_owned()].as_slice())
    );
}

// -------------------------------------------------------------------------------------------
// Bad documents: each problem with its path and reason.

#[test]
fn the_document_shape_is_checked() {
    check(
        json!("dtmi:com:example:Thermostat;1"),
        &[(
            "$",
            "a capability model is an Interface object or an array of Interfaces, found a string",
        )],
    );
    check(
        json!([]),
        &[(
            "$",
            "an array capability model needs at least one Interface",
        )],
    );
    check(
        json!([thermostat(), 7]),
        &[("$[1]", "expected an Interface object, found a number")],
    );
    check(
        json!({ "@id": "dtmi:a:b;1", "@type": "Interface" }),
        &[(
            "$",
            "missing @context; expected dtmi:dtdl:context;2 or dtmi:dtdl:context;3",
        )],
    );
    let mut no_context = thermostat();
    no_context.as_object_mut().unwrap().remove("@context");
    check(
        json!([thermostat(), no_context]),
        &[(
            "$[1]",
            "missing @context; expected dtmi:dtdl:context;2 or dtmi:dtdl:context;3",
        )],
    );
}

#[test]
fn the_context_picks_a_supported_dtdl_version() {
    let with_context =
        |context: Value| json!({ "@context": context, "@id": "dtmi:a:b;1", "@type": "Interface" });
    check(with_context(json!("dtmi:dtdl:context;4")), &[
        ("$['@context']", "unsupported DTDL context 'dtmi:dtdl:context;4'; expected dtmi:dtdl:context;2 or dtmi:dtdl:context;3"),
        ("$['@context']", "@context must include dtmi:dtdl:context;2 or dtmi:dtdl:context;3"),
    ]);
    check(
        with_context(json!(["dtmi:iotcentral:context;2"])),
        &[(
            "$['@context']",
            "@context must include dtmi:dtdl:context;2 or dtmi:dtdl:context;3",
        )],
    );
    check(
        with_context(json!(["dtmi:dtdl:context;2", "dtmi:dtdl:context;3"])),
        &[("$['@context']", "@context names more than one DTDL version")],
    );
    check(
        with_context(json!(["dtmi:dtdl:context;2", "https://example.com/ctx", { "x": 1 }])),
        &[
            (
                "$['@context'][1]",
                "'https://example.com/ctx' is not a context DTMI such as dtmi:dtdl:context;2",
            ),
            (
                "$['@context'][2]",
                "a @context entry is a context DTMI such as dtmi:dtdl:context;2, found an object",
            ),
        ],
    );
    check(
        with_context(json!([
            "dtmi:dtdl:context;2",
            "dtmi:dtdl:extension:quantitativeTypes;1"
        ])),
        &[(
            "$['@context']",
            "the dtmi:dtdl:extension:quantitativeTypes;1 extension needs DTDL v3",
        )],
    );
    // Unknown extensions are accepted, in any order.
    parse_ok(&with_context(json!([
        "dtmi:dtdl:extension:historization;1",
        "dtmi:dtdl:context;3"
    ])));
}

#[test]
fn the_interface_itself_is_checked() {
    check(
        json!({ "@context": "dtmi:dtdl:context;2", "@type": "Interface" }),
        &[("$", "missing @id; an Interface needs a DTMI")],
    );
    check(
        json!({ "@context": "dtmi:dtdl:context;2", "@id": "dtmi:a:b;1" }),
        &[("$", "missing @type")],
    );
    check(
        json!({ "@context": "dtmi:dtdl:context;2", "@id": "dtmi:a:b;1", "@type": "Object" }),
        &[("$['@type']", "@type 'Object' must include Interface")],
    );
    check(json!({ "@context": "dtmi:dtdl:context;2", "@id": "dtmi:com:1bad;1", "@type": "Interface" }), &[(
        "$['@id']",
        "invalid DTMI 'dtmi:com:1bad;1': segment '1bad' must start with a letter, hold only letters, digits and underscores, and not end with an underscore",
    )]);
    check(json!({ "@context": "dtmi:dtdl:context;2", "@id": "dtmi:com:example:Thermostat", "@type": "Interface" }), &[(
        "$['@id']",
        "invalid DTMI 'dtmi:com:example:Thermostat': a DTMI ends with ';' and a version, e.g. ';1'",
    )]);
    check(
        json!({ "@context": "dtmi:dtdl:context;2", "@id": "dtmi:a:b;1.2", "@type": "Interface" }),
        &[(
            "$['@id']",
            "'dtmi:a:b;1.2' has a two-part version, which needs DTDL v3",
        )],
    );
    check(
        json!({ "@context": "dtmi:dtdl:context;2", "@id": "dtmi:dtdl:mine;1", "@type": "Interface" }),
        &[(
            "$['@id']",
            "'dtmi:dtdl:mine;1' uses a prefix DTDL reserves (dtmi:dtdl:, dtmi:standard:)",
        )],
    );
    let long_id = format!("dtmi:com:{};1", "x".repeat(120));
    check(
        json!({ "@context": "dtmi:dtdl:context;2", "@id": long_id, "@type": "Interface" }),
        &[(
            "$['@id']",
            "an Interface @id has at most 128 characters, found 131",
        )],
    );
    let longest_id = format!("dtmi:com:{};1", "x".repeat(117));
    parse_ok(
        &json!({ "@context": "dtmi:dtdl:context;2", "@id": longest_id, "@type": "Interface" }),
    );
    check(
        json!({ "@context": "dtmi:dtdl:context;2", "@id": "dtmi:a:b;1", "@type": "Interface", "contentz": [] }),
        &[("$.contentz", "unknown property 'contentz' for an Interface")],
    );
    check(
        json!({ "@context": "dtmi:dtdl:context;2", "@id": "dtmi:a:b;1", "@type": "Interface", "contents": "none" }),
        &[("$.contents", "contents must be an array, found a string")],
    );
    check(
        json!({ "@context": "dtmi:dtdl:context;2", "@id": "dtmi:a:b;1", "@type": "Interface", "displayName": "x".repeat(65) }),
        &[(
            "$.displayName",
            "displayName has at most 64 characters, found 65",
        )],
    );
    check(
        json!({ "@context": "dtmi:dtdl:context;2", "@id": "dtmi:a:b;1", "@type": "Interface", "displayName": { "en": "A", "not a tag": "B", "de": 3 } }),
        &[
            (
                "$.displayName.de",
                "displayName text must be a string, found a number",
            ),
            (
                "$.displayName['not a tag']",
                "'not a tag' is not a language tag such as en or en-US",
            ),
        ],
    );
    check(
        json!({ "@context": "dtmi:dtdl:context;2", "@id": "dtmi:a:b;1", "@type": "Interface", "comment": 5, "description": "d".repeat(513) }),
        &[
            (
                "$.description",
                "description has at most 512 characters, found 513",
            ),
            ("$.comment", "comment must be a string"),
        ],
    );
}

#[test]
fn contents_need_a_known_type() {
    check(
        v2(json!([{ "name": "t", "schema": "double" }])),
        &[("$.contents[0]", "missing @type")],
    );
    check(v2(json!([42])), &[(
        "$.contents[0]",
        "a content is an object (Telemetry, Property, Command, Component or Relationship), found a number",
    )]);
    check(
        v2(json!([{ "@type": "Sensor", "name": "t", "schema": "double" }])),
        &[(
            "$.contents[0]['@type']",
            "@type 'Sensor' has none of Telemetry, Property, Command, Component or Relationship",
        )],
    );
    check(v2(json!([{ "@type": ["Telemetry", "Property"], "name": "t", "schema": "double" }])), &[(
        "$.contents[0]['@type']",
        "an element has exactly one of Telemetry, Property, Command, Component or Relationship; @type ['Telemetry', 'Property'] has 2",
    )]);
    check(
        v2(json!([{ "@type": [], "name": "t", "schema": "double" }])),
        &[(
            "$.contents[0]['@type']",
            "@type must be a string or a non-empty array of strings",
        )],
    );
    check(
        v2(json!([{ "@type": ["Telemetry", "Object"], "name": "t", "schema": "double" }])),
        &[(
            "$.contents[0]['@type']",
            "'Object' cannot co-type a Telemetry",
        )],
    );
}

#[test]
fn names_must_be_dtdl_names_and_unique() {
    let telemetry = |name: Value| json!({ "@type": "Telemetry", "name": name, "schema": "double" });
    check(
        v2(json!([{ "@type": "Telemetry", "schema": "double" }])),
        &[("$.contents[0]", "missing name")],
    );
    check(
        v2(json!([telemetry(json!(7))])),
        &[(
            "$.contents[0].name",
            "name must be a string, found a number",
        )],
    );
    for bad in ["1temp", "temp_", "_temp", "tem-p", "", "températ"] {
        let message = format!(
            "'{bad}' is not a DTDL name: start with a letter, use only letters, digits and underscores, and end with a letter or digit"
        );
        check(
            v2(json!([telemetry(json!(bad))])),
            &[("$.contents[0].name", &message)],
        );
    }
    check(
        v2(json!([telemetry(json!("a".repeat(65)))])),
        &[(
            "$.contents[0].name",
            "a name has at most 64 characters in DTDL v2, found 65",
        )],
    );
    parse_ok(&v3(json!([telemetry(json!("a".repeat(512)))])));
    check(
        v3(json!([telemetry(json!("a".repeat(513)))])),
        &[(
            "$.contents[0].name",
            "a name has at most 512 characters in DTDL v3, found 513",
        )],
    );
    check(
        v2(json!([
            telemetry(json!("temp")),
            { "@type": "Property", "name": "temp", "schema": "double" },
            { "@type": "Command", "name": "temp" }
        ])),
        &[
            (
                "$.contents[1].name",
                "duplicate name 'temp', also at $.contents[0]",
            ),
            (
                "$.contents[2].name",
                "duplicate name 'temp', also at $.contents[0]",
            ),
        ],
    );
}

#[test]
fn unknown_properties_are_reported_where_they_are() {
    check(
        v2(
            json!([{ "@type": "Property", "name": "p", "schema": "double", "writeable": true, "@context": "x" }]),
        ),
        &[
            (
                "$.contents[0]['@context']",
                "unknown property '@context' for a Property",
            ),
            (
                "$.contents[0].writeable",
                "unknown property 'writeable' for a Property",
            ),
        ],
    );
    check(
        v2(
            json!([{ "@type": "Command", "name": "c", "request": { "name": "r", "schema": "string", "default": "x" } }]),
        ),
        &[(
            "$.contents[0].request.default",
            "unknown property 'default' for a Command request",
        )],
    );
    check(
        v2(json!([{ "@type": "Property", "name": "p", "schema": "double", "writable": "yes" }])),
        &[(
            "$.contents[0].writable",
            "writable must be true or false, found a string",
        )],
    );
}

#[test]
fn schemas_must_be_known() {
    let telemetry =
        |schema: Value| v2(json!([{ "@type": "Telemetry", "name": "t", "schema": schema }]));
    check(
        v2(json!([{ "@type": "Telemetry", "name": "t" }])),
        &[("$.contents[0]", "missing schema")],
    );
    check(telemetry(json!("dobule")), &[(
        "$.contents[0].schema",
        "unknown schema 'dobule'; expected boolean, date, dateTime, double, duration, float, integer, long, string, time, a geospatial schema, the DTMI of a schema in the document, or an Array, Enum, Map or Object",
    )]);
    check(
        telemetry(json!(3)),
        &[(
            "$.contents[0].schema",
            "a schema is a schema name, a DTMI or an object, found a number",
        )],
    );
    check(
        telemetry(json!("dtmi:com:example:missing;1")),
        &[(
            "$.contents[0].schema",
            "unknown schema 'dtmi:com:example:missing;1'; no schema in the document has this @id",
        )],
    );
    check(
        telemetry(json!("dtmi:com:example:Test;1")),
        &[(
            "$.contents[0].schema",
            "'dtmi:com:example:Test;1' is an Interface, not a schema",
        )],
    );
    check(
        telemetry(json!({ "@type": "Struct", "fields": [] })),
        &[(
            "$.contents[0].schema['@type']",
            "unknown schema type 'Struct'; expected Array, Enum, Map or Object",
        )],
    );
    check(
        telemetry(json!({ "fields": [] })),
        &[("$.contents[0].schema", "missing @type")],
    );
    check(
        telemetry(json!({ "@type": "Array" })),
        &[("$.contents[0].schema", "missing elementSchema")],
    );
    check(
        telemetry(json!({ "@type": "Array", "elementSchema": "double", "minItems": 1 })),
        &[(
            "$.contents[0].schema.minItems",
            "unknown property 'minItems' for an Array",
        )],
    );
    let no_iot_central = json!({
        "@context": "dtmi:dtdl:context;2",
        "@id": "dtmi:com:example:Test;1",
        "@type": "Interface",
        "contents": [{ "@type": "Telemetry", "name": "t", "schema": "geopoint" }]
    });
    check(no_iot_central, &[(
        "$.contents[0].schema",
        "unknown schema 'geopoint'; IoT Central's geopoint needs the context dtmi:iotcentral:context;2",
    )]);
}

#[test]
fn objects_report_problems_in_their_fields() {
    let object = |fields: Value| {
        v2(
            json!([{ "@type": "Telemetry", "name": "t", "schema": { "@type": "Object", "fields": fields } }]),
        )
    };
    check(object(json!([{ "name": "a", "schema": "double" }, { "name": "b" }, { "name": "1c", "schema": "double" }])), &[
        ("$.contents[0].schema.fields[1]", "missing schema"),
        ("$.contents[0].schema.fields[2].name", "'1c' is not a DTDL name: start with a letter, use only letters, digits and underscores, and end with a letter or digit"),
    ]);
    check(
        object(json!([{ "name": "a", "schema": "double" }, { "name": "a", "schema": "string" }])),
        &[(
            "$.contents[0].schema.fields[1].name",
            "duplicate name 'a', also at $.contents[0].schema.fields[0]",
        )],
    );
    check(
        object(json!([])),
        &[(
            "$.contents[0].schema.fields",
            "an Object needs at least one field in DTDL v2",
        )],
    );
    check(
        object(json!([{ "@type": "Property", "name": "a", "schema": "double" }])),
        &[(
            "$.contents[0].schema.fields[0]['@type']",
            "@type 'Property' must include Field",
        )],
    );
    let many: Vec<Value> = (0..31)
        .map(|i| json!({ "name": format!("f{i}"), "schema": "double" }))
        .collect();
    check(
        object(json!(many)),
        &[(
            "$.contents[0].schema.fields",
            "an Object has at most 30 fields in DTDL v2, found 31",
        )],
    );
    check(object(json!([{ "name": "a", "schema": "dobule" }])), &[(
        "$.contents[0].schema.fields[0].schema",
        "unknown schema 'dobule'; expected boolean, date, dateTime, double, duration, float, integer, long, string, time, a geospatial schema, the DTMI of a schema in the document, or an Array, Enum, Map or Object",
    )]);
}

#[test]
fn enums_need_values_of_their_value_schema() {
    let enum_schema = |body: Value| {
        let mut schema = json!({ "@type": "Enum" });
        schema
            .as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        v2(json!([{ "@type": "Telemetry", "name": "t", "schema": schema }]))
    };
    check(
        enum_schema(json!({ "valueSchema": "integer" })),
        &[(
            "$.contents[0].schema",
            "missing enumValues; an Enum needs at least one value in DTDL v2",
        )],
    );
    check(
        enum_schema(json!({ "valueSchema": "integer", "enumValues": [] })),
        &[(
            "$.contents[0].schema.enumValues",
            "an Enum needs at least one value in DTDL v2",
        )],
    );
    check(
        enum_schema(json!({ "enumValues": [{ "name": "a", "enumValue": 1 }] })),
        &[(
            "$.contents[0].schema",
            "missing valueSchema; an Enum's values are integer or string",
        )],
    );
    check(
        enum_schema(
            json!({ "valueSchema": "boolean", "enumValues": [{ "name": "a", "enumValue": true }] }),
        ),
        &[(
            "$.contents[0].schema.valueSchema",
            "valueSchema must be integer or string",
        )],
    );
    check(
        enum_schema(json!({ "valueSchema": "integer", "enumValues": [
            { "name": "a", "enumValue": 1 },
            { "name": "b", "enumValue": "2" },
            { "name": "c", "enumValue": 1 },
            { "name": "a", "enumValue": 4 },
            { "name": "d", "enumValue": 4294967296_i64 },
            { "name": "e" }
        ] })),
        &[
            (
                "$.contents[0].schema.enumValues[1].enumValue",
                "enumValue must be a 32-bit integer (valueSchema integer), found '2'",
            ),
            (
                "$.contents[0].schema.enumValues[2].enumValue",
                "duplicate enumValue, also at $.contents[0].schema.enumValues[0]",
            ),
            (
                "$.contents[0].schema.enumValues[3].name",
                "duplicate name 'a', also at $.contents[0].schema.enumValues[0]",
            ),
            (
                "$.contents[0].schema.enumValues[4].enumValue",
                "enumValue must be a 32-bit integer (valueSchema integer), found 4294967296",
            ),
            ("$.contents[0].schema.enumValues[5]", "missing enumValue"),
        ],
    );
    check(
        enum_schema(
            json!({ "valueSchema": "string", "enumValues": [{ "name": "a", "enumValue": 1 }] }),
        ),
        &[(
            "$.contents[0].schema.enumValues[0].enumValue",
            "enumValue must be a string (valueSchema string), found 1",
        )],
    );
}

#[test]
fn maps_need_a_string_key_and_a_value() {
    let map = |body: Value| {
        let mut schema = json!({ "@type": "Map" });
        schema
            .as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        v2(json!([{ "@type": "Property", "name": "p", "schema": schema }]))
    };
    check(
        map(json!({ "mapKey": { "name": "k", "schema": "string" } })),
        &[("$.contents[0].schema", "missing mapValue")],
    );
    check(
        map(
            json!({ "mapKey": { "name": "k", "schema": "integer" }, "mapValue": { "name": "v", "schema": "double" } }),
        ),
        &[(
            "$.contents[0].schema.mapKey.schema",
            "a mapKey's schema must be string",
        )],
    );
    check(
        map(json!({ "mapKey": "string", "mapValue": { "name": "v", "schema": "double" } })),
        &[(
            "$.contents[0].schema.mapKey",
            "expected a MapKey object, found a string",
        )],
    );
    check(
        map(
            json!({ "mapKey": { "name": "k", "schema": "string" }, "mapValue": { "schema": "double" } }),
        ),
        &[("$.contents[0].schema.mapValue", "missing name")],
    );
}

#[test]
fn dtdl_v2_properties_cannot_hold_arrays() {
    check(
        v2(
            json!([{ "@type": "Property", "name": "p", "schema": { "@type": "Array", "elementSchema": "string" } }]),
        ),
        &[(
            "$.contents[0].schema",
            "a DTDL v2 Property cannot hold an Array; Arrays in Properties need DTDL v3",
        )],
    );
    check(
        v2(
            json!([{ "@type": "Property", "name": "p", "schema": { "@type": "Object", "fields": [
            { "name": "ok", "schema": "string" },
            { "name": "list", "schema": { "@type": "Array", "elementSchema": "string" } }
        ] } }]),
        ),
        &[(
            "$.contents[0].schema.fields[1].schema",
            "a DTDL v2 Property cannot hold an Array; Arrays in Properties need DTDL v3",
        )],
    );
    check(v2(json!([{ "@type": "Property", "name": "p", "schema": "point" }])), &[(
        "$.contents[0].schema",
        "a DTDL v2 Property cannot hold the geospatial schema 'point' (GeoJSON coordinates are arrays); Arrays in Properties need DTDL v3",
    )]);
    let mut referenced =
        v2(json!([{ "@type": "Property", "name": "p", "schema": "dtmi:com:example:list;1" }]));
    referenced["schemas"] =
        json!([{ "@id": "dtmi:com:example:list;1", "@type": "Array", "elementSchema": "string" }]);
    check(referenced, &[(
        "$.contents[0].schema",
        "a DTDL v2 Property cannot hold the schema 'dtmi:com:example:list;1', which contains an Array; Arrays in Properties need DTDL v3",
    )]);
    // Telemetry and command payloads may hold arrays in v2; IoT Central's geopoint is no array.
    parse_ok(&v2(json!([
        { "@type": "Telemetry", "name": "t", "schema": { "@type": "Array", "elementSchema": "double" } },
        { "@type": "Property", "name": "where", "schema": "geopoint" },
        { "@type": "Command", "name": "c", "request": { "name": "r", "schema": { "@type": "Array", "elementSchema": "string" } } }
    ])));
}

#[test]
fn complex_schemas_nest_at_most_five_levels() {
    parse_ok(&v2(
        json!([{ "@type": "Telemetry", "name": "t", "schema": nested_objects(5) }]),
    ));
    check(v2(json!([{ "@type": "Telemetry", "name": "t", "schema": nested_objects(6) }])), &[(
        "$.contents[0].schema.fields[0].schema.fields[0].schema.fields[0].schema.fields[0].schema.fields[0].schema",
        "complex schemas nest at most 5 levels deep",
    )]);
    let mut referenced = v2(json!([{ "@type": "Telemetry", "name": "t", "schema": {
        "@type": "Object", "fields": [{ "name": "deep", "schema": "dtmi:com:example:deep;1" }]
    } }]));
    let mut deep = nested_objects(5);
    deep["@id"] = json!("dtmi:com:example:deep;1");
    referenced["schemas"] = json!([deep]);
    check(referenced, &[(
        "$.contents[0].schema.fields[0].schema",
        "complex schemas nest at most 5 levels deep; 'dtmi:com:example:deep;1' reaches level 6 here",
    )]);
}

#[test]
fn schema_references_cannot_loop() {
    let mut looped =
        v2(json!([{ "@type": "Telemetry", "name": "t", "schema": "dtmi:com:example:a;1" }]));
    looped["schemas"] = json!([
        { "@id": "dtmi:com:example:a;1", "@type": "Object", "fields": [{ "name": "b", "schema": "dtmi:com:example:b;1" }] },
        { "@id": "dtmi:com:example:b;1", "@type": "Array", "elementSchema": "dtmi:com:example:a;1" }
    ]);
    check(
        looped,
        &[(
            "$.schemas[1].elementSchema",
            "schema 'dtmi:com:example:a;1' contains itself, directly or through other schemas",
        )],
    );
    let mut duplicate = v2(json!([]));
    duplicate["schemas"] = json!([
        { "@id": "dtmi:com:example:a;1", "@type": "Enum", "valueSchema": "string", "enumValues": [{ "name": "x", "enumValue": "x" }] },
        { "@id": "dtmi:com:example:a;1", "@type": "Enum", "valueSchema": "string", "enumValues": [{ "name": "y", "enumValue": "y" }] },
        { "@type": "Object", "fields": [{ "name": "z", "schema": "string" }] }
    ]);
    check(
        duplicate,
        &[
            (
                "$.schemas[1]['@id']",
                "duplicate @id 'dtmi:com:example:a;1', also at $.schemas[0]",
            ),
            (
                "$.schemas[2]",
                "missing @id; a reusable schema needs a DTMI",
            ),
        ],
    );
}

#[test]
fn semantic_types_need_a_unit_of_their_type_and_a_number() {
    let telemetry = |body: Value| {
        let mut telemetry = json!({ "@type": ["Telemetry", "Temperature"], "name": "t" });
        telemetry
            .as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        v2(json!([telemetry]))
    };
    check(
        telemetry(json!({ "schema": "double" })),
        &[(
            "$.contents[0]",
            "missing unit; semantic type Temperature needs a TemperatureUnit",
        )],
    );
    check(telemetry(json!({ "schema": "double", "unit": "celsius" })), &[(
        "$.contents[0].unit",
        "unit 'celsius' is not a TemperatureUnit; expected one of degreeCelsius, degreeFahrenheit, kelvin",
    )]);
    check(telemetry(json!({ "schema": "string", "unit": "kelvin" })), &[(
        "$.contents[0].schema",
        "semantic type Temperature needs a numeric schema (double, float, integer or long), found string",
    )]);
    check(v2(json!([{ "@type": "Telemetry", "name": "t", "schema": "double", "unit": "kelvin" }])), &[(
        "$.contents[0].unit",
        "unit is allowed only with a semantic type co-type, e.g. [\"Telemetry\", \"Temperature\"]",
    )]);
    check(
        v2(
            json!([{ "@type": ["Telemetry", "Temperature", "Pressure"], "name": "t", "schema": "double", "unit": "kelvin" }]),
        ),
        &[(
            "$.contents[0]['@type']",
            "an element has at most one semantic type, found Temperature and Pressure",
        )],
    );
    check(
        v2(json!([{ "@type": ["Command", "Temperature"], "name": "c" }])),
        &[(
            "$.contents[0]['@type']",
            "semantic type Temperature can co-type only a Telemetry or a Property in DTDL v2",
        )],
    );
    // v3 units from the QuantitativeTypes extension are not v2 units.
    check(v2(json!([{ "@type": ["Telemetry", "Pressure"], "name": "t", "schema": "double", "unit": "hectopascal" }])), &[(
        "$.contents[0].unit",
        "unit 'hectopascal' is not a PressureUnit; expected one of bar, inchesOfMercury, inchesOfWater, kilopascal, millibar, millimetresOfMercury, pascal, poundPerSquareInch",
    )]);
    // In v3 without the extension, Temperature is an undefined co-type, and unit goes with it.
    let plain_v3 = json!({
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:com:example:Test;1",
        "@type": "Interface",
        "contents": [{ "@type": ["Telemetry", "Temperature"], "name": "t", "schema": "double", "unit": "kelvin" }]
    });
    let model = parse_ok(&plain_v3);
    assert_eq!(model.telemetry(None, "t").unwrap().semantic_type, None);
}

#[test]
fn iot_central_adjuncts_constrain_their_schema() {
    check(
        v2(json!([{ "@type": ["Telemetry", "State"], "name": "s", "schema": "string" }])),
        &[(
            "$.contents[0].schema",
            "IoT Central's State type needs a schema of an Enum, found string",
        )],
    );
    check(v2(json!([{ "@type": ["Telemetry", "Event"], "name": "e", "schema": "boolean" }])), &[(
        "$.contents[0].schema",
        "IoT Central's Event type needs a schema of double, float, integer, long or string, found boolean",
    )]);
    check(v2(json!([{ "@type": ["Property", "Location"], "name": "l", "schema": "string" }])), &[(
        "$.contents[0].schema",
        "IoT Central's Location type needs a schema of geopoint or a geospatial schema, found string",
    )]);
    check(v2(json!([{ "@type": ["Telemetry", "VelocityVector"], "name": "v", "schema": "vector", "unit": "kelvin" }])), &[(
        "$.contents[0].unit",
        "unit 'kelvin' is not a VelocityUnit; expected one of centimetrePerSecond, kilometrePerHour, kilometrePerSecond, knot, metrePerHour, metrePerSecond, milePerHour, milePerSecond",
    )]);
    check(
        v2(json!([{ "@type": ["Command", "Event"], "name": "c" }])),
        &[(
            "$.contents[0]['@type']",
            "IoT Central's Event type can co-type only a Telemetry or a Property",
        )],
    );
    check(
        v2(json!([{ "@type": ["Telemetry", "Cloud"], "name": "t", "schema": "double" }])),
        &[(
            "$.contents[0]['@type']",
            "IoT Central's Cloud type can co-type only a Property, not a Telemetry",
        )],
    );
    let v3_with_iot_central = json!({
        "@context": ["dtmi:dtdl:context;3", "dtmi:iotcentral:context;2"],
        "@id": "dtmi:com:example:Test;1",
        "@type": "Interface",
        "contents": [{ "@type": ["Telemetry", "Event"], "name": "e", "schema": "string" }]
    });
    check(
        v3_with_iot_central,
        &[(
            "$.contents[0]['@type']",
            "IoT Central's Event type needs DTDL v2",
        )],
    );
}

#[test]
fn commands_check_their_payloads() {
    check(
        v2(json!([{ "@type": "Command", "name": "c", "request": { "schema": "string" } }])),
        &[("$.contents[0].request", "missing name")],
    );
    check(
        v2(json!([{ "@type": "Command", "name": "c", "response": "string" }])),
        &[(
            "$.contents[0].response",
            "expected a CommandPayload object, found a string",
        )],
    );
    check(
        v2(
            json!([{ "@type": "Command", "name": "c", "request": { "@type": "CommandRequest", "name": "r", "schema": "string" } }]),
        ),
        &[(
            "$.contents[0].request['@type']",
            "@type 'CommandRequest' must include CommandPayload",
        )],
    );
    check(
        v2(json!([{ "@type": "Command", "name": "c", "commandType": "eventually" }])),
        &[(
            "$.contents[0].commandType",
            "commandType must be synchronous or asynchronous",
        )],
    );
    check(
        v3(json!([{ "@type": "Command", "name": "c", "commandType": "synchronous" }])),
        &[(
            "$.contents[0].commandType",
            "commandType was removed in DTDL v3",
        )],
    );
    check(
        v3(
            json!([{ "@type": "Command", "name": "c", "response": { "@type": "CommandPayload", "name": "r", "schema": "string" } }]),
        ),
        &[(
            "$.contents[0].response['@type']",
            "@type 'CommandPayload' must include CommandResponse",
        )],
    );
}

#[test]
fn relationships_check_multiplicity_target_and_properties() {
    check(
        v2(json!([{
            "@type": "Relationship",
            "name": "r",
            "target": "room",
            "minMultiplicity": 1,
            "maxMultiplicity": 501,
            "properties": [
                { "@type": "Property", "name": "p", "schema": "string" },
                { "@type": "Property", "name": "p", "schema": "string" },
                { "@type": "Telemetry", "name": "t", "schema": "string" }
            ]
        }])),
        &[
            (
                "$.contents[0].target",
                "invalid DTMI 'room': a DTMI starts with 'dtmi:'",
            ),
            ("$.contents[0].minMultiplicity", "minMultiplicity must be 0"),
            (
                "$.contents[0].maxMultiplicity",
                "maxMultiplicity must be an integer from 1 to 500",
            ),
            (
                "$.contents[0].properties[1].name",
                "duplicate name 'p', also at $.contents[0].properties[0]",
            ),
            (
                "$.contents[0].properties[2]['@type']",
                "a Relationship's properties are Properties; @type is 'Telemetry'",
            ),
        ],
    );
}

#[test]
fn components_resolve_in_the_document_and_do_not_nest() {
    check(v2(json!([{ "@type": "Component", "name": "c", "schema": "dtmi:com:example:Missing;1" }])), &[(
        "$.contents[0].schema",
        "the Component schema refers to 'dtmi:com:example:Missing;1', which no Interface in the document defines",
    )]);
    check(
        v2(json!([{ "@type": "Component", "name": "c" }])),
        &[(
            "$.contents[0]",
            "missing schema; a Component's schema is an Interface or its DTMI",
        )],
    );
    check(
        v2(json!([{ "@type": "Component", "name": "c", "schema": 1 }])),
        &[(
            "$.contents[0].schema",
            "the Component schema is an Interface or its DTMI, found a number",
        )],
    );
    let inline_with_nested = v2(json!([{
        "@type": "Component",
        "name": "outer",
        "schema": {
            "@id": "dtmi:com:example:Outer;1",
            "@type": "Interface",
            "contents": [
                { "@type": "Component", "name": "inner", "schema": "dtmi:com:example:Thermostat;1" }
            ]
        }
    }]));
    let document = json!([inline_with_nested, thermostat()]);
    check(document, &[(
        "$[0].contents[0].schema.contents[0]",
        "Component 'inner' is inside the Interface of Component 'outer'; DTDL does not allow nested Components",
    )]);
    // The root as its own component: a cycle.
    check(
        v2(json!([{ "@type": "Component", "name": "me", "schema": "dtmi:com:example:Test;1" }])),
        &[(
            "$.contents[0].schema",
            "'dtmi:com:example:Test;1' refers back to itself, directly or through other Interfaces",
        )],
    );
    // Problems inside a referenced Interface are reported once, where it is defined.
    let mut broken = thermostat();
    broken["contents"][0]["unit"] = json!("celsius");
    let mut controller = temperature_controller();
    controller[1] = broken;
    check(controller, &[(
        "$[1].contents[0].unit",
        "unit 'celsius' is not a TemperatureUnit; expected one of degreeCelsius, degreeFahrenheit, kelvin",
    )]);
}

#[test]
fn extends_is_checked() {
    let base = |id: &str, extends: Value| {
        json!({ "@context": "dtmi:dtdl:context;2", "@id": id, "@type": "Interface", "extends": extends,
                "contents": [{ "@type": "Property", "name": id.split(':').nth(3).unwrap().split(';').next().unwrap(), "schema": "string" }] })
    };
    check(
        json!([
            base("dtmi:com:example:A;1", json!("dtmi:com:example:B;1")),
            base("dtmi:com:example:B;1", json!("dtmi:com:example:A;1"))
        ]),
        &[(
            "$[1].extends",
            "'dtmi:com:example:A;1' refers back to itself, directly or through other Interfaces",
        )],
    );
    check(json!([base("dtmi:com:example:A;1", json!(["dtmi:com:example:B;1", "dtmi:com:example:C;1", "dtmi:com:example:D;1"]))]), &[
        ("$[0].extends", "an Interface extends at most 2 Interfaces in DTDL v2, found 3"),
        ("$[0].extends[0]", "extends refers to 'dtmi:com:example:B;1', which no Interface in the document defines"),
        ("$[0].extends[1]", "extends refers to 'dtmi:com:example:C;1', which no Interface in the document defines"),
        ("$[0].extends[2]", "extends refers to 'dtmi:com:example:D;1', which no Interface in the document defines"),
    ]);
    let mut child = base("dtmi:com:example:A;1", json!("dtmi:com:example:B;1"));
    child["contents"][0]["name"] = json!("B");
    check(
        json!([child, base("dtmi:com:example:B;1", json!([]))]),
        &[(
            "$[0].extends",
            "duplicate name 'B': $[0].contents[0] is also inherited from $[1].contents[0]",
        )],
    );
    // A chain of 12 Interfaces: A0 extends A1 extends ... A11.
    let chain: Vec<Value> = (0..12)
        .map(|i| {
            let extends = if i < 11 {
                json!(format!("dtmi:com:example:A{};1", i + 1))
            } else {
                json!([])
            };
            base(&format!("dtmi:com:example:A{i};1"), extends)
        })
        .collect();
    check(
        json!(chain),
        &[("$[0].extends", "extends nests more than 10 levels deep")],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let document = json!({
        "@context": "dtmi:dtdl:context;2",
        "@id": "dtmi:com:example:Broken;1",
        "@type": "Interface",
        "contents": [
            { "@type": "Telemetry", "name": "ok", "schema": "double" },
            { "name": "noType", "schema": "double" },
            { "@type": "Telemetry", "name": "bad name", "schema": "double" },
            { "@type": "Property", "name": "ok", "schema": "string" },
            { "@type": "Telemetry", "name": "obj", "schema": { "@type": "Object", "fields": [{ "name": "f", "schema": "nope" }] } }
        ]
    });
    check(document, &[
        ("$.contents[1]", "missing @type"),
        ("$.contents[2].name", "'bad name' is not a DTDL name: start with a letter, use only letters, digits and underscores, and end with a letter or digit"),
        ("$.contents[3].name", "duplicate name 'ok', also at $.contents[0]"),
        ("$.contents[4].schema.fields[0].schema", "unknown schema 'nope'; expected boolean, date, dateTime, double, duration, float, integer, long, string, time, a geospatial schema, the DTMI of a schema in the document, or an Array, Enum, Map or Object"),
    ]);
    let err =
        DeviceModel::parse(&json!({ "@context": "dtmi:dtdl:context;2", "@type": "Interface" }))
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the capability model is not valid DTDL: $: missing @id; an Interface needs a DTMI"
    );
}

// -------------------------------------------------------------------------------------------
// Values against schemas.

#[test]
fn primitive_values() {
    type Case = (&'static str, Value, &'static [(&'static str, &'static str)]);
    let cases: &[Case] = &[
        ("boolean", json!(true), &[]),
        ("boolean", json!("true"), &[("$", "expected a boolean, found 'true'")]),
        ("integer", json!(21), &[]),
        ("integer", json!(21.0), &[]),
        ("integer", json!(-2147483648_i64), &[]),
        ("integer", json!(2147483648_i64), &[("$", "expected an integer (32-bit), found 2147483648")]),
        ("integer", json!(21.5), &[("$", "expected an integer (32-bit), found 21.5")]),
        ("long", json!(9223372036854775807_i64), &[]),
        ("long", json!(9223372036854775808_u64), &[("$", "expected a long (64-bit integer), found 9223372036854775808")]),
        ("double", json!(1e300), &[]),
        ("double", json!(null), &[("$", "expected a double, found null")]),
        ("float", json!(3.4e38), &[]),
        ("float", json!(3.5e38), &[("$", "expected a float (a number within single-precision range), found 3.5e+38")]),
        ("string", json!(""), &[]),
        ("string", json!(["a"]), &[("$", "expected a string, found an array")]),
        ("date", json!("2024-02-29"), &[]),
        ("date", json!("2023-02-29"), &[("$", "expected a date (RFC 3339 full-date, e.g. 2024-05-31), found '2023-02-29'")]),
        ("date", json!("2024-13-01"), &[("$", "expected a date (RFC 3339 full-date, e.g. 2024-05-31), found '2024-13-01'")]),
        ("dateTime", json!("2021-06-13T13:00:00Z"), &[]),
        ("dateTime", json!("2021-06-13T13:00:00.123+02:00"), &[]),
        ("dateTime", json!("2021-06-13T13:00:00"), &[("$", "expected a dateTime (RFC 3339, e.g. 2024-05-31T12:00:00Z), found '2021-06-13T13:00:00'")]),
        ("dateTime", json!("2021-06-13T25:00:00Z"), &[("$", "expected a dateTime (RFC 3339, e.g. 2024-05-31T12:00:00Z), found '2021-06-13T25:00:00Z'")]),
        ("time", json!("12:30:00"), &[]),
        ("time", json!("12:30:00.5Z"), &[]),
        ("time", json!("12:30"), &[("$", "expected a time (RFC 3339, e.g. 12:30:00), found '12:30'")]),
        ("duration", json!("PT15M"), &[]),
        ("duration", json!("P1Y2M3W4DT5H6M7.5S"), &[]),
        ("duration", json!("P2W"), &[]),
        ("duration", json!("P"), &[("$", "expected a duration (ISO 8601, e.g. PT15M), found 'P'")]),
        ("duration", json!("PT"), &[("$", "expected a duration (ISO 8601, e.g. PT15M), found 'PT'")]),
        ("duration", json!("P1H"), &[("$", "expected a duration (ISO 8601, e.g. PT15M), found 'P1H'")]),
        ("duration", json!("PT5S3M"), &[("$", "expected a duration (ISO 8601, e.g. PT15M), found 'PT5S3M'")]),
        ("duration", json!("PT1.5M3S"), &[("$", "expected a duration (ISO 8601, e.g. PT15M), found 'PT1.5M3S'")]),
        ("duration", json!(900), &[("$", "expected a duration (ISO 8601, e.g. PT15M), found 900")]),
    ];
    for (primitive, value, expected) in cases {
        check_value(&schema(json!(primitive)), value.clone(), expected);
    }
}

#[test]
fn complex_values_report_paths_inside_the_value() {
    let report = schema(json!({
        "@type": "Object",
        "fields": [
            { "name": "maxTemp", "schema": "double" },
            { "name": "when", "schema": "dateTime" },
            { "name": "tags", "schema": { "@type": "Array", "elementSchema": "string" } },
            { "name": "levels", "schema": { "@type": "Map", "mapKey": { "name": "k", "schema": "string" }, "mapValue": { "name": "v", "schema": "integer" } } },
            { "name": "mode", "schema": { "@type": "Enum", "valueSchema": "integer", "enumValues": [
                { "name": "off", "enumValue": 0 }, { "name": "on", "enumValue": 1 }
            ] } }
        ]
    }));
    check_value(
        &report,
        json!({ "maxTemp": 21.5, "tags": ["a"], "levels": { "x": 1 }, "mode": 1 }),
        &[],
    );
    check_value(
        &report,
        json!({ "maxTemp": "hot", "when": "yesterday", "tags": ["a", 2], "levels": { "x": 1, "odd key": 1.5 }, "mode": 2, "extra": 1 }),
        &[
            (
                "$.extra",
                "unknown field 'extra'; the Object has maxTemp, when, tags, levels, mode",
            ),
            (
                "$.levels['odd key']",
                "expected an integer (32-bit), found 1.5",
            ),
            ("$.maxTemp", "expected a double, found 'hot'"),
            (
                "$.mode",
                "expected one of the Enum's integer values 0 (off), 1 (on), found 2",
            ),
            ("$.tags[1]", "expected a string, found 2"),
            (
                "$.when",
                "expected a dateTime (RFC 3339, e.g. 2024-05-31T12:00:00Z), found 'yesterday'",
            ),
        ],
    );
    check_value(
        &report,
        json!([1]),
        &[("$", "expected an object, found an array")],
    );
    let states = schema(
        json!({ "@type": "Enum", "valueSchema": "string", "enumValues": [{ "name": "full", "enumValue": "FULL" }] }),
    );
    check_value(&states, json!("FULL"), &[]);
    check_value(
        &states,
        json!("full"),
        &[(
            "$",
            "expected one of the Enum's string values 'FULL' (full), found 'full'",
        )],
    );
}

#[test]
fn iot_central_and_geospatial_values() {
    let geopoint = schema(json!("geopoint"));
    check_value(&geopoint, json!({ "lat": 47.6, "lon": -122.1 }), &[]);
    check_value(
        &geopoint,
        json!({ "lat": 47.6, "lon": -122.1, "alt": 10 }),
        &[],
    );
    check_value(
        &geopoint,
        json!({ "lat": 91, "lng": 0 }),
        &[
            ("$.lat", "lat must be between -90 and 90, found 91"),
            ("$", "missing member 'lon'"),
            (
                "$.lng",
                "unknown member 'lng' in a geopoint {\"lat\", \"lon\", \"alt\"}",
            ),
        ],
    );
    let vector = schema(json!("vector"));
    check_value(&vector, json!({ "x": 1, "y": 2, "z": 3 }), &[]);
    check_value(
        &vector,
        json!({ "x": 1, "y": "2" }),
        &[
            ("$.y", "expected a number, found '2'"),
            ("$", "missing member 'z'"),
        ],
    );
    check_value(
        &schema(json!("point")),
        json!({ "type": "Point", "coordinates": [-122.1, 47.6] }),
        &[],
    );
    check_value(
        &schema(json!("point")),
        json!({ "type": "Polygon", "coordinates": [1] }),
        &[
            ("$.type", "expected \"Point\", found 'Polygon'"),
            (
                "$.coordinates",
                "a position is [longitude, latitude] or [longitude, latitude, altitude]",
            ),
        ],
    );
    let square = json!([[0, 0], [1, 0], [1, 1], [0, 0]]);
    check_value(
        &schema(json!("polygon")),
        json!({ "type": "Polygon", "coordinates": [square] }),
        &[],
    );
    check_value(
        &schema(json!("polygon")),
        json!({ "type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]] }),
        &[(
            "$.coordinates[0]",
            "a linear ring ends with the position it starts with",
        )],
    );
    check_value(
        &schema(json!("lineString")),
        json!({ "type": "LineString", "coordinates": [[0, 0]] }),
        &[("$.coordinates", "expected at least 2 positions, found 1")],
    );
    check_value(
        &schema(json!("multiPolygon")),
        json!({ "type": "MultiPolygon", "coordinates": [[square], [[[0, 0]]]] }),
        &[(
            "$.coordinates[1][0]",
            "expected at least 4 positions, found 1",
        )],
    );
}

#[test]
fn command_payloads_of_the_public_models_validate() {
    let model = parse_ok(&temperature_controller());
    let since = &model
        .command(Some("thermostat1"), "getMaxMinReport")
        .unwrap()
        .request
        .as_ref()
        .unwrap()
        .schema;
    check_value(since, json!("2024-05-31T08:00:00Z"), &[]);
    check_value(
        since,
        json!(5),
        &[(
            "$",
            "expected a dateTime (RFC 3339, e.g. 2024-05-31T12:00:00Z), found 5",
        )],
    );
    let delay = &model
        .command(None, "reboot")
        .unwrap()
        .request
        .as_ref()
        .unwrap()
        .schema;
    check_value(delay, json!(10), &[]);
    let target = &model
        .property(Some("thermostat2"), "targetTemperature")
        .unwrap()
        .schema;
    check_value(target, json!(21.5), &[]);
    check_value(
        target,
        json!("21.5"),
        &[("$", "expected a double, found '21.5'")],
    );
}

#[test]
fn a_shared_interface_may_be_repeated_inline_but_not_redefined() {
    let component = |name: &str, interface: Value| json!({ "@type": "Component", "name": name, "schema": interface });
    let mut inline_thermostat = thermostat();
    inline_thermostat
        .as_object_mut()
        .unwrap()
        .remove("@context");
    let model = parse_ok(&v2(json!([
        component("thermostat1", inline_thermostat.clone()),
        component("thermostat2", inline_thermostat.clone())
    ])));
    assert!(model
        .telemetry(Some("thermostat2"), "temperature")
        .is_some());

    let mut changed = inline_thermostat.clone();
    changed["displayName"] = json!("Another thermostat");
    check(
        v2(json!([
            component("thermostat1", inline_thermostat),
            component("thermostat2", changed)
        ])),
        &[(
            "$.contents[1].schema['@id']",
            "duplicate @id 'dtmi:com:example:Thermostat;1', also at $.contents[0].schema",
        )],
    );
}

#[test]
fn hostile_nesting_stays_bounded() {
    // Complex schemas: parsing stops at the first level too deep, one problem.
    let problems = DeviceModel::parse(&v2(
        json!([{ "@type": "Telemetry", "name": "t", "schema": nested_objects(100) }]),
    ))
    .unwrap_err()
    .problems;
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].message,
        "complex schemas nest at most 5 levels deep"
    );

    // Components inside components, 30 deep, each inline.
    let mut interface =
        json!({ "@id": "dtmi:com:example:Leaf;1", "@type": "Interface", "contents": [] });
    for i in 0..30 {
        interface = json!({
            "@id": format!("dtmi:com:example:Level{i};1"),
            "@type": "Interface",
            "contents": [{ "@type": "Component", "name": "inner", "schema": interface }]
        });
    }
    interface["@context"] = json!("dtmi:dtdl:context;2");
    let problems = DeviceModel::parse(&interface).unwrap_err().problems;
    assert!(!problems.is_empty());
    assert!(problems
        .iter()
        .all(|p| p.message.contains("nested Components") || p.message.contains("levels deep")));
}
