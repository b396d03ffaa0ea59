//! The OpenAPI document at `/api/openapi.json` describes exactly what Gyre serves: its
//! (method, path) set equals gyre-domain's route table `auth::ROUTES` (a route served but
//! undocumented, or documented but not served, fails here), each operation declares the
//! permission and security the table requires, and every documented route really answers.

use std::collections::BTreeSet;

use gyre_domain::auth::{Requirement, ROUTES};
use serde_json::{json, Value};

use crate::{expect_error, Gyre};

/// The methods an OpenAPI path item may hold, in upper case as HTTP sends them.
const METHODS: [&str; 8] = [
    "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE",
];

/// A path template with every parameter segment (`:name` or `{name}`) written `{}`, so Spin's
/// and OpenAPI's spellings compare.
fn normalise(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            let is_param =
                segment.starts_with(':') || (segment.starts_with('{') && segment.ends_with('}'));
            if is_param {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn fetch_document(gyre: &Gyre) -> Value {
    let response = gyre
        .anonymous()
        .get("/api/openapi.json?api-version=2022-07-31");
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "{:?}",
        response.header("content-type")
    );
    response.json()
}

/// The server prefix the document's paths are relative to (`/api`).
fn base_path(document: &Value) -> String {
    document["servers"][0]["url"]
        .as_str()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string()
}

/// (method, full path template as in the document) for every operation.
fn documented(document: &Value) -> Vec<(String, String)> {
    let base = base_path(document);
    let paths = document["paths"].as_object().expect("`paths` is an object");
    let mut operations = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for key in item.keys() {
            let method = key.to_ascii_uppercase();
            if METHODS.contains(&method.as_str()) {
                operations.push((method, format!("{base}{path}")));
            }
        }
    }
    operations
}

#[test]
fn the_document_lists_exactly_the_served_routes() {
    let gyre = Gyre::start();
    let document = fetch_document(&gyre);
    assert!(
        document["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3."),
        "OpenAPI 3"
    );
    assert_eq!(base_path(&document), "/api");

    let documented: BTreeSet<(String, String)> = documented(&document)
        .into_iter()
        .map(|(method, path)| (method, normalise(&path)))
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|route| (route.method.as_str().to_string(), normalise(route.template)))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but undocumented: {undocumented:#?}"
    );
    assert!(
        not_served.is_empty(),
        "documented but not served: {not_served:#?}"
    );
    assert_eq!(documented.len(), ROUTES.len(), "one operation per route");
}

#[test]
fn each_operation_declares_its_security_and_permission() {
    let gyre = Gyre::start();
    let document = fetch_document(&gyre);
    let scheme = &document["components"]["securitySchemes"]["SharedAccessSignature"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "Authorization");
    assert_eq!(
        document["security"],
        json!([{ "SharedAccessSignature": [] }])
    );
    let error = &document["components"]["schemas"]["ErrorDetails"]["properties"];
    for field in ["code", "message", "requestId", "time"] {
        assert!(error[field].is_object(), "the error shape has `{field}`");
    }

    let base = base_path(&document);
    for route in ROUTES {
        let (path, item) = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(path, _)| normalise(&format!("{base}{path}")) == normalise(route.template))
            .unwrap_or_else(|| panic!("{} is documented", route.template));
        let operation = &item[route.method.as_str().to_ascii_lowercase()];
        let label = format!("{} {path}", route.method);
        assert!(operation["operationId"].is_string(), "{label}: operationId");
        assert!(
            operation["responses"]["default"].is_object(),
            "{label}: default error response"
        );
        match route.requirement {
            Requirement::Public => {
                assert_eq!(operation["security"], json!([]), "{label}: public");
            }
            Requirement::Permission(permission) => {
                assert!(
                    operation.get("security").is_none(),
                    "{label}: inherits the token scheme"
                );
                assert_eq!(operation["x-gyre-permission"], permission.name(), "{label}");
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{label}: documents 401"
                );
                assert!(
                    operation["responses"]["403"].is_object(),
                    "{label}: documents 403"
                );
            }
        }
        // Every `{name}` in the path is declared as a path parameter.
        let n_params = path
            .split('/')
            .filter(|segment| segment.starts_with('{'))
            .count();
        let declared = item["parameters"].as_array().map_or(0, |params| {
            params.iter().filter(|param| param["in"] == "path").count()
        });
        assert_eq!(declared, n_params, "{label}: path parameters");
        // Every `$ref` resolves.
        check_refs(&document, operation, &label);
    }
}

/// Asserts every `#/components/...` reference under `value` names something that exists.
fn check_refs(document: &Value, value: &Value, label: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let pointer = reference.strip_prefix('#').expect("a local reference");
                let target = document.pointer(pointer);
                assert!(target.is_some(), "{label}: dangling {reference}");
                check_refs(document, target.unwrap(), label);
            }
            for (key, child) in map {
                if key != "$ref" {
                    check_refs(document, child, label);
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| check_refs(document, item, label)),
        _ => {}
    }
}

/// The message the component gives a path no route serves (gyre-component's
/// `route_not_found` and `authorized` both say "no resource at <path>").
fn is_unknown_route(response: &gyre_tests::HttpResponse) -> bool {
    response.status == 405
        || (response.status == 404
            && response.json()["error"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("no resource at")))
}

#[test]
fn every_documented_route_is_served() {
    let gyre = Gyre::start();
    let document = fetch_document(&gyre);
    let admin = gyre.admin();
    let operations = documented(&document);
    assert!(!operations.is_empty());
    // Every failure at once: a missing route family shows up as one list.
    let mut failures = Vec::new();
    for (method, template) in operations {
        let path: String = template
            .split('/')
            .map(|segment| match segment {
                "{deviceTemplateId}" => "dtmi:gyre:openapiProbe;1",
                segment if segment.starts_with('{') => "openapi-probe",
                segment => segment,
            })
            .collect::<Vec<_>>()
            .join("/");
        let response = match method.as_str() {
            "PUT" | "PATCH" | "POST" => admin.request(
                &method,
                &path,
                &[("content-type", "application/json")],
                b"{}",
            ),
            _ => admin.request(&method, &path, &[], b""),
        };
        if is_unknown_route(&response) {
            failures.push(format!(
                "{method} {path}: documented but not served ({})",
                response.status
            ));
        } else if response.status >= 500 {
            failures.push(format!(
                "{method} {path}: {} {}",
                response.status, response.body
            ));
        } else if response.status >= 400 {
            expect_error(&response, response.status);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn an_unknown_route_is_recognisable_as_such() {
    // The check above relies on telling "no such route" from "no such resource"; prove both.
    let gyre = Gyre::start();
    let admin = gyre.admin();
    let unknown = admin.get("/api/devices/openapi-probe/modules");
    assert_eq!(expect_error(&unknown, 404), "NotFound");
    assert!(is_unknown_route(&unknown), "{}", unknown.body);
    let missing = admin.get("/api/apiTokens/openapi-probe");
    assert_eq!(expect_error(&missing, 404), "NotFound");
    assert!(!is_unknown_route(&missing), "{}", missing.body);
}
