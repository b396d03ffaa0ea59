//! Security, route by route: every row of gyre-domain's `auth::ROUTES` refuses a missing,
//! malformed, expired, revoked or forged token with 401 and a token whose roles lack the row's
//! permission with 403, in IoT Central's error shape and before any data is touched. Then an
//! administrator's day with API tokens and roles: create (the token shown once), list and get
//! (never shown), conflict, revoke, expiry, and bad ids and bodies.

use std::time::Duration;

use gyre_domain::auth::{Method, Requirement, Role, Route, BUILT_IN_ROLES, ROUTES};
use gyre_domain::time::Timestamp;
use gyre_tests::HttpResponse;
use serde_json::{json, Value};

use crate::{expect_error, now_millis, role_id, Client, Gyre};

/// The id every concrete path uses for its `:name` segments. Nothing with this id exists.
const PROBE_ID: &str = "security-probe";

/// `template` with each `:name` segment replaced by an id that route family accepts.
fn concrete_path(route: &Route) -> String {
    route
        .template
        .split('/')
        .map(|segment| match segment {
            ":device_template_id" => "dtmi:gyre:securityProbe;1",
            segment if segment.starts_with(':') => PROBE_ID,
            segment => segment,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A body that an administrator's request on `route` would accept (or at least that is well
/// formed), so a refusal cannot be blamed on the body.
fn body_for(route: &Route) -> Value {
    match route.template {
        "/api/apiTokens/:token_id" => json!({ "roles": [{ "role": role_id("operator") }] }),
        "/api/devices/:device_id" => json!({ "displayName": "Probe", "enabled": true }),
        "/api/devices/:device_id/attestation" => json!({ "type": "symmetricKey" }),
        "/api/devices/:device_id/properties" => json!({}),
        "/api/deviceGroups/:device_group_id" => {
            json!({ "displayName": "Probe", "filter": "SELECT * FROM devices" })
        }
        "/api/enrollmentGroups/:enrollment_group_id" => json!({
            "displayName": "Probe",
            "type": "iot",
            "attestation": { "type": "symmetricKey" },
        }),
        "/api/deviceTemplates/:device_template_id" => json!({
            "@type": ["ModelDefinition", "DeviceModel"],
            "displayName": "Probe",
            "capabilityModel": {
                "@id": "dtmi:gyre:securityProbe;1",
                "@type": "Interface",
                "@context": "dtmi:dtdl:context;2",
                "contents": [],
            },
        }),
        _ => json!({}),
    }
}

/// Sends `route`'s request as `client`.
fn call(client: &Client<'_>, route: &Route) -> HttpResponse {
    let path = concrete_path(route);
    match route.method {
        Method::Put => client.put(&path, body_for(route)),
        Method::Patch => client.patch(&path, body_for(route)),
        method => client.request(method.as_str(), &path, &[], b""),
    }
}

/// What every GET route shows an administrator: status and, on success, the body; error
/// bodies are compared by code since they carry a fresh request id and time.
fn snapshot(gyre: &Gyre) -> Vec<(String, u16, Value)> {
    let admin = gyre.admin();
    ROUTES
        .iter()
        .filter(|route| route.method == Method::Get && route.template != "/api/openapi.json")
        .map(|route| {
            let response = call(&admin, route);
            let seen = if response.status < 400 {
                response.json()
            } else {
                response.json()["error"]["code"].clone()
            };
            (concrete_path(route), response.status, seen)
        })
        .collect()
}

fn protected_routes() -> impl Iterator<Item = &'static Route> {
    ROUTES
        .iter()
        .filter(|route| matches!(route.requirement, Requirement::Permission(_)))
}

/// The base64 of 32 zero bytes, percent-encoded as in a token: a well-formed signature that
/// is nobody's.
const FORGED_SIG: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D";

/// `token` with one `field=value` pair replaced.
fn with_field(token: &str, field: &str, value: &str) -> String {
    let (scheme, fields) = token
        .split_once(' ')
        .expect("a SharedAccessSignature token");
    let fields: Vec<String> = fields
        .split('&')
        .map(|pair| {
            if pair.starts_with(&format!("{field}=")) {
                format!("{field}={value}")
            } else {
                pair.to_string()
            }
        })
        .collect();
    format!("{scheme} {}", fields.join("&"))
}

fn field<'a>(token: &'a str, field: &str) -> &'a str {
    token
        .split_once(' ')
        .expect("a SharedAccessSignature token")
        .1
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{field}=")))
        .expect("the field")
}

#[test]
fn every_protected_route_refuses_bad_tokens_with_401_before_touching_data() {
    let gyre = Gyre::start();
    // A second administrator token: the forged variants below alter a real, valid token.
    let admin_token = gyre.create_token("second-admin", "administrator", None);
    let expiring = {
        let expiry = Timestamp::from_unix_millis(now_millis() + 3_000);
        let token = gyre.create_token("short-lived", "administrator", Some(&expiry.to_rfc3339()));
        assert_eq!(gyre.with_token(&token).get("/api/roles").status, 200);
        (token, expiry)
    };
    assert_eq!(gyre.with_token(&admin_token).get("/api/roles").status, 200);
    let revoked = gyre.create_token("revoked", "administrator", None);
    assert_eq!(gyre.admin().delete("/api/apiTokens/revoked").status, 204);

    let before = snapshot(&gyre);

    // Waits out the short-lived token; no clock control reaches a real host.
    let (expired, expiry) = expiring;
    while now_millis() <= expiry.unix_millis() + 50 {
        std::thread::sleep(Duration::from_millis(100));
    }

    let se = field(&admin_token, "se").to_string();
    let bad_tokens: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty", Some(String::new())),
        (
            "bearer",
            Some("Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.x".into()),
        ),
        ("scheme only", Some("SharedAccessSignature".into())),
        (
            "truncated",
            Some(admin_token[..admin_token.len() - 10].to_string()),
        ),
        (
            "junk",
            Some("SharedAccessSignature sr=a&sig=b&skn=c&se=d".into()),
        ),
        (
            "oversized",
            Some(format!("SharedAccessSignature sr={}", "a".repeat(5000))),
        ),
        (
            "injection",
            Some("SharedAccessSignature sr=a&sig=x&skn=' OR '1'='1&se=1".into()),
        ),
        ("expired", Some(expired)),
        ("revoked", Some(revoked)),
        (
            "wrong signature",
            Some(with_field(&admin_token, "sig", FORGED_SIG)),
        ),
        (
            "another application",
            Some(with_field(&admin_token, "sr", "another-app")),
        ),
        (
            "edited expiry",
            Some(with_field(
                &admin_token,
                "se",
                &(se.parse::<i64>().unwrap() + 1).to_string(),
            )),
        ),
        (
            "unknown id",
            Some(with_field(&admin_token, "skn", "never-issued")),
        ),
    ];

    let mut n_checked = 0;
    // Every failure at once, so one unprotected route family shows up as one list.
    let mut failures = Vec::new();
    for route in protected_routes() {
        for (kind, token) in &bad_tokens {
            let client = match token {
                None => gyre.anonymous(),
                Some(token) => gyre.with_token(token),
            };
            let response = call(&client, route);
            n_checked += 1;
            let label = format!("{} {} with a {kind} token", route.method, route.template);
            if response.status != 401 {
                let body: Value = serde_json::from_str(&response.body).unwrap_or_default();
                let code = &body["error"]["code"];
                failures.push(format!("{label}: {} {code}", response.status));
                continue;
            }
            assert_eq!(expect_error(&response, 401), "Unauthorized", "{label}");
            let message = response.json()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                !message.contains("sig=") && !message.contains(PROBE_ID),
                "{label}: the message reveals nothing: {message}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} refusals missing: {failures:#?}",
        failures.len()
    );
    assert_eq!(n_checked, protected_routes().count() * bad_tokens.len());
    assert_eq!(
        snapshot(&gyre),
        before,
        "a refused request changed something"
    );

    // The genuine token the forgeries were made from still works.
    assert_eq!(gyre.with_token(&admin_token).get("/api/roles").status, 200);
}

#[test]
fn every_protected_route_refuses_roles_without_its_permission_with_403() {
    let gyre = Gyre::start();
    let tokens: Vec<(&Role, String)> = BUILT_IN_ROLES
        .iter()
        .map(|role| {
            let id = format!("{}-token", role.display_name.to_ascii_lowercase());
            (*role, gyre.create_token(&id, role.display_name, None))
        })
        .collect();
    let before = snapshot(&gyre);

    let mut n_refused = 0;
    let mut open_to_every_role = Vec::new();
    for route in protected_routes() {
        let Requirement::Permission(permission) = route.requirement else {
            unreachable!("protected_routes yields permission rows only")
        };
        let lacking: Vec<&(&Role, String)> = tokens
            .iter()
            .filter(|(role, _)| !role.allows(permission))
            .collect();
        if lacking.is_empty() {
            open_to_every_role.push(format!("{} {}", route.method, route.template));
        }
        for (role, token) in lacking {
            let response = call(&gyre.with_token(token), route);
            let label = format!(
                "{} {} as {}",
                route.method, route.template, role.display_name
            );
            assert_eq!(expect_error(&response, 403), "Forbidden", "{label}");
            let message = response.json()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                message.contains(permission.name()),
                "{label}: names the permission: {message}"
            );
            n_refused += 1;
        }
    }
    // Every built-in role may view and manage devices and groups, so no built-in role can be
    // refused those; each other row is refused to at least one role. The counts pin the table.
    assert_eq!(n_refused, 25, "refusals over rows refused to some role");
    assert_eq!(open_to_every_role.len(), 35, "{open_to_every_role:#?}");
    assert_eq!(
        snapshot(&gyre),
        before,
        "a refused request changed something"
    );
}

#[test]
fn an_administrator_creates_lists_and_revokes_api_tokens() {
    let gyre = Gyre::start();
    let admin = gyre.admin();

    // Create: the token is in the response, once, in IoT Central's form.
    let created = admin.put(
        "/api/apiTokens/operator-token?api-version=2022-07-31",
        json!({ "roles": [{ "role": role_id("operator") }], "expiry": "2099-01-01T00:00:00Z" }),
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let created = created.json();
    let token = created["token"].as_str().expect("the token").to_string();
    assert!(token.starts_with("SharedAccessSignature sr="), "{token}");
    assert_eq!(field(&token, "skn"), "operator-token");
    assert_eq!(field(&token, "se"), "4070908800000");
    assert_eq!(created["id"], "operator-token");
    assert_eq!(created["expiry"], "2099-01-01T00:00:00.000Z");
    assert_eq!(created["roles"], json!([{ "role": role_id("operator") }]));

    // The operator can work, within its role.
    let operator = gyre.with_token(&token);
    assert_eq!(operator.get("/api/devices").status, 200);
    expect_error(&operator.get("/api/apiTokens"), 403);

    // Get and list never show the token.
    let got = admin.get("/api/apiTokens/operator-token");
    assert_eq!(got.status, 200, "{}", got.body);
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("token");
    assert_eq!(got.json(), expected);
    let listed = admin.get("/api/apiTokens");
    assert_eq!(listed.status, 200);
    assert!(
        !listed.body.contains("SharedAccessSignature"),
        "{}",
        listed.body
    );
    assert!(listed.json()["value"]
        .as_array()
        .unwrap()
        .contains(&expected));

    // An existing id is a conflict, and the first token keeps working.
    let again = admin.put(
        "/api/apiTokens/operator-token",
        json!({ "roles": [{ "role": role_id("administrator") }] }),
    );
    expect_error(&again, 409);
    assert_eq!(operator.get("/api/devices").status, 200);

    // Revoke: refused at once, and gone.
    assert_eq!(admin.delete("/api/apiTokens/operator-token").status, 204);
    expect_error(&operator.get("/api/devices"), 401);
    expect_error(&admin.get("/api/apiTokens/operator-token"), 404);
    expect_error(&admin.delete("/api/apiTokens/operator-token"), 404);
}

#[test]
fn api_tokens_page_in_id_order() {
    let gyre = Gyre::start();
    for id in ["page-c", "page-a", "page-b"] {
        gyre.create_token(id, "operator", None);
    }
    let admin = gyre.admin();
    let mut ids = Vec::new();
    let mut next = Some("/api/apiTokens?$top=2".to_string());
    let mut n_pages = 0;
    while let Some(url) = next {
        let path = url.split_once("://").map_or(url.as_str(), |(_, rest)| {
            &rest[rest.find('/').expect("a path")..]
        });
        let page = admin.get(path);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let page = page.json();
        let values = page["value"].as_array().unwrap();
        assert!(values.len() <= 2);
        ids.extend(
            values
                .iter()
                .map(|token| token["id"].as_str().unwrap().to_string()),
        );
        next = page["nextLink"].as_str().map(str::to_string);
        n_pages += 1;
        assert!(n_pages < 10, "paging does not end");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "id order");
    for id in ["page-a", "page-b", "page-c"] {
        assert!(ids.iter().any(|listed| listed == id), "{id} in {ids:?}");
    }
    expect_error(&admin.get("/api/apiTokens?$top=0"), 400);
    expect_error(&admin.get("/api/apiTokens?$skiptoken=a.b"), 400);
}

#[test]
fn bad_token_ids_and_bodies_are_400_and_create_nothing() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    let before = admin.get("/api/apiTokens").json();
    let operator = json!({ "roles": [{ "role": role_id("operator") }] });

    let long_id = "x".repeat(49);
    for id in [
        long_id.as_str(),
        "a.b",
        "a%20b",
        "%27%20OR%20%271%27%3D%271",
        "a;DROP%20TABLE%20api_tokens",
        "%C3%A9",
        "a%2Fb",
    ] {
        let path = format!("/api/apiTokens/{id}");
        assert_eq!(
            expect_error(&admin.put(&path, operator.clone()), 400),
            "BadRequest",
            "PUT {path}"
        );
        assert_eq!(
            expect_error(&admin.get(&path), 400),
            "BadRequest",
            "GET {path}"
        );
        assert_eq!(
            expect_error(&admin.delete(&path), 400),
            "BadRequest",
            "DELETE {path}"
        );
    }
    // The longest valid id is fine.
    assert_eq!(
        admin
            .put(
                &format!("/api/apiTokens/{}", "x".repeat(48)),
                operator.clone()
            )
            .status,
        200
    );
    assert_eq!(
        admin
            .delete(&format!("/api/apiTokens/{}", "x".repeat(48)))
            .status,
        204
    );

    let path = "/api/apiTokens/bad-body";
    let bad_bodies = [
        json!({}),
        json!({ "roles": [] }),
        json!({ "roles": "administrator" }),
        json!({ "roles": [{ "role": "administrator" }] }),
        json!({ "roles": [{ "role": "c495eb57-eb18-489e-9802-62c474e5645c" }] }),
        json!({ "roles": [{ "role": role_id("operator"), "organization": "seattle" }] }),
        json!({ "roles": [{ "role": role_id("operator") }], "expiry": "tomorrow" }),
        json!({ "roles": [{ "role": role_id("operator") }], "expiry": "2001-01-01T00:00:00Z" }),
        json!({ "roles": [{ "role": role_id("operator") }], "expiry": 42 }),
        json!([]),
    ];
    for body in bad_bodies {
        assert_eq!(
            expect_error(&admin.put(path, body.clone()), 400),
            "BadRequest",
            "{body}"
        );
    }
    let invalid_json = admin.request(
        "PUT",
        path,
        &[("content-type", "application/json")],
        b"{\"roles\": [",
    );
    expect_error(&invalid_json, 400);
    let text = admin.request("PUT", path, &[("content-type", "text/plain")], b"roles");
    expect_error(&text, 415);
    let oversized = vec![b' '; 2 << 20];
    let oversized = admin.request(
        "PUT",
        path,
        &[("content-type", "application/json")],
        &oversized,
    );
    assert!(
        matches!(oversized.status, 400 | 413),
        "{}",
        oversized.status
    );

    assert_eq!(
        admin.get("/api/apiTokens").json(),
        before,
        "nothing was created"
    );
}

#[test]
fn roles_are_read_only_and_shaped_like_iot_centrals() {
    let gyre = Gyre::start();
    let admin = gyre.admin();
    let listed = admin.get("/api/roles?api-version=2022-07-31");
    assert_eq!(listed.status, 200, "{}", listed.body);
    let expected: Vec<Value> = BUILT_IN_ROLES
        .iter()
        .map(|role| json!({ "id": role.id, "displayName": role.display_name }))
        .collect();
    assert_eq!(listed.json(), json!({ "value": expected }));
    assert_eq!(
        expected
            .iter()
            .map(|role| role["displayName"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Administrator", "Builder", "Operator"]
    );

    let first = admin.get("/api/roles?$top=2").json();
    assert_eq!(first["value"], json!(expected[..2]));
    let next = first["nextLink"].as_str().expect("a next page");
    let next_path = &next[next.find("/api/").unwrap()..];
    assert_eq!(
        admin.get(next_path).json(),
        json!({ "value": [expected[2]] })
    );

    for role in BUILT_IN_ROLES {
        let got = admin.get(&format!("/api/roles/{}", role.id));
        assert_eq!(got.status, 200);
        assert_eq!(
            got.json(),
            json!({ "id": role.id, "displayName": role.display_name })
        );
    }
    // Ids compare case-insensitively, as GUIDs do.
    let upper = admin.get(&format!(
        "/api/roles/{}",
        role_id("operator").to_ascii_uppercase()
    ));
    assert_eq!(upper.json()["displayName"], "Operator");
    expect_error(&admin.get("/api/roles/operator"), 400);
    expect_error(
        &admin.get("/api/roles/c495eb57-eb18-489e-9802-62c474e5645c"),
        404,
    );
    // Read-only: no route to change a role.
    let put = admin.put(
        &format!("/api/roles/{}", role_id("operator")),
        json!({ "displayName": "x" }),
    );
    assert!(matches!(put.status, 404 | 405), "{}", put.status);
    expect_error(&put, put.status);
}

#[test]
fn token_creation_and_revocation_are_audited() {
    let gyre = Gyre::start();
    gyre.create_token("audited", "operator", None);
    assert_eq!(gyre.admin().delete("/api/apiTokens/audited").status, 204);
    // Refused and failed requests leave no trace.
    expect_error(&gyre.admin().delete("/api/apiTokens/audited"), 404);
    expect_error(&gyre.anonymous().delete("/api/apiTokens/audited"), 401);

    let db = gyre.host().app().state_dir().join("sqlite_db.db");
    let connection =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the state database");
    let mut statement = connection
        .prepare(
            "SELECT actor, action, resource_type, resource_id, at FROM audit_log \
             WHERE resource_id = 'audited' ORDER BY seq",
        )
        .unwrap();
    let rows: Vec<(String, String, String, String, i64)> = statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let actions: Vec<&str> = rows.iter().map(|row| row.1.as_str()).collect();
    assert_eq!(actions, ["create", "delete"]);
    for (actor, _, resource_type, _, at) in &rows {
        assert!(actor.starts_with("apiToken:"), "{actor}");
        assert_eq!(resource_type, "apiToken");
        assert!((now_millis() - at).abs() < 60_000, "recorded now: {at}");
    }
}
