use serde_json::json;

use super::*;

/// The public thermostat (`getMaxMinReport` with a `dateTime` request) as the root, and as
/// component `thermostat1` of a controller that also has a root `reboot` without a request.
fn controller() -> DeviceModel {
    let thermostat: Json =
        serde_json::from_str(include_str!("../dtdl/fixtures/thermostat.json")).unwrap();
    let model = json!([
        {
            "@context": "dtmi:dtdl:context;2",
            "@id": "dtmi:com:example:Controller;1",
            "@type": "Interface",
            "contents": [
                {"@type": "Command", "name": "reboot"},
                {"@type": "Component", "name": "thermostat1", "schema": "dtmi:com:example:Thermostat;1"}
            ]
        },
        thermostat
    ]);
    DeviceModel::parse(&model).expect("a valid model")
}

fn body(value: Json) -> CommandBody {
    serde_json::from_value(value).expect("a command body")
}

fn root(name: &str) -> CommandTarget {
    CommandTarget {
        component: None,
        name: name.to_owned(),
    }
}

fn in_thermostat(name: &str) -> CommandTarget {
    CommandTarget {
        component: Some("thermostat1".to_owned()),
        name: name.to_owned(),
    }
}

#[test]
fn a_component_command_is_called_by_its_wire_name_with_default_timeouts() {
    let model = controller();
    let invocation = prepare(
        Some(&model),
        in_thermostat("getMaxMinReport"),
        &body(json!({"request": "2026-01-01T00:00:00Z"})),
    )
    .unwrap();
    assert_eq!(
        invocation.target.method_name(),
        "thermostat1*getMaxMinReport"
    );
    assert_eq!(invocation.request, json!("2026-01-01T00:00:00Z"));
    assert_eq!(invocation.connection_timeout, 0);
    assert_eq!(invocation.response_timeout, 30);
    let reboot = prepare(
        Some(&model),
        root("reboot"),
        &body(json!({"responseTimeout": 5, "connectionTimeout": 30})),
    )
    .unwrap();
    assert_eq!(reboot.target.method_name(), "reboot");
    assert_eq!(reboot.request, Json::Null);
    assert_eq!(
        (reboot.connection_timeout, reboot.response_timeout),
        (30, 5)
    );
}

#[test]
fn commands_the_template_lacks_are_not_found() {
    let model = controller();
    let empty = CommandBody::default();
    let cases = [
        (None, root("reboot"), CommandError::NoTemplate),
        (
            Some(&model),
            root("getMaxMinReport"),
            CommandError::UnknownCommand {
                component: None,
                name: "getMaxMinReport".into(),
            },
        ),
        (
            Some(&model),
            in_thermostat("reboot"),
            CommandError::UnknownCommand {
                component: Some("thermostat1".into()),
                name: "reboot".into(),
            },
        ),
        (
            Some(&model),
            CommandTarget {
                component: Some("nope".into()),
                name: "reboot".into(),
            },
            CommandError::UnknownComponent("nope".into()),
        ),
        (
            Some(&model),
            root("thermostat1"),
            CommandError::UnknownCommand {
                component: None,
                name: "thermostat1".into(),
            },
        ),
    ];
    for (model, target, expected) in cases {
        let error = prepare(model, target.clone(), &empty).unwrap_err();
        assert_eq!(error, expected, "{target:?}");
        assert!(error.is_not_found());
    }
}

#[test]
fn timeouts_outside_iot_centrals_ranges_are_refused() {
    let model = controller();
    for (field, value) in [
        ("connectionTimeout", -1),
        ("connectionTimeout", 31),
        ("responseTimeout", 4),
        ("responseTimeout", 31),
        ("responseTimeout", 1_i64 << 40),
    ] {
        let error =
            prepare(Some(&model), root("reboot"), &body(json!({ field: value }))).unwrap_err();
        assert!(
            matches!(error, CommandError::BadTimeout { field: f, .. } if f == field),
            "{field}={value}: {error}"
        );
        assert!(!error.is_not_found());
        assert!(error.to_string().contains(field), "{error}");
    }
    assert!(serde_json::from_value::<CommandBody>(json!({"responseTimeout": 5.5})).is_err());
    assert!(serde_json::from_value::<CommandBody>(json!({"timeout": 5})).is_err());
}

#[test]
fn the_request_must_fit_the_commands_request_schema() {
    let model = controller();
    let error = prepare(
        Some(&model),
        in_thermostat("getMaxMinReport"),
        &body(json!({"request": "yesterday"})),
    )
    .unwrap_err();
    assert!(matches!(error, CommandError::InvalidRequest(_)), "{error}");
    assert!(
        error.to_string().contains("$.request"),
        "the path is named: {error}"
    );
    assert_eq!(
        prepare(
            Some(&model),
            in_thermostat("getMaxMinReport"),
            &CommandBody::default()
        ),
        Err(CommandError::MissingRequest("getMaxMinReport".into()))
    );
    assert_eq!(
        prepare(
            Some(&model),
            root("reboot"),
            &body(json!({"request": {"delay": 1}}))
        ),
        Err(CommandError::UnexpectedRequest("reboot".into()))
    );
    // What a client read back may be posted again: the read-only fields are ignored.
    let echoed = body(
        json!({"id": "x", "response": {}, "responseCode": 200, "request": "2026-01-01T00:00:00Z"}),
    );
    assert!(prepare(Some(&model), in_thermostat("getMaxMinReport"), &echoed).is_ok());
}

#[test]
fn history_records_show_the_devices_answer_or_the_failures_status() {
    let model = controller();
    let invocation = prepare(Some(&model), root("reboot"), &CommandBody::default()).unwrap();
    let at = Timestamp::from_unix_millis(0);
    let answered = CommandRecord::new(
        "c1".into(),
        "d1",
        invocation.clone(),
        Outcome::Responded {
            status: 200,
            payload: json!({"ok": true}),
        },
        at,
    );
    let wire = serde_json::to_value(answered.to_wire()).unwrap();
    assert_eq!(
        wire,
        json!({"id": "c1", "connectionTimeout": 0, "responseTimeout": 30, "response": {"ok": true}, "responseCode": 200})
    );
    assert_eq!(answered.event_body()["outcome"], "responded");
    assert_eq!(answered.outcome.failure(), None);

    for (outcome, status, code) in [
        (Outcome::NotConnected, 404, "DeviceNotOnline"),
        (Outcome::TimedOut, 504, "GatewayTimeout"),
        (Outcome::Unavailable, 503, "ServiceUnavailable"),
        (Outcome::BadGateway, 502, "BadGateway"),
    ] {
        let failure = outcome.failure().unwrap();
        assert_eq!((failure.status, failure.code), (status, code));
        let record = CommandRecord::new("c2".into(), "d1", invocation.clone(), outcome, at);
        let wire = record.to_wire();
        assert_eq!(wire.response_code, i64::from(status));
        assert_eq!(wire.response, None);
    }
}
