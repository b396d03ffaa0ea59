//! The one table of `/api` routes and the permission each requires ([`ROUTES`]), and the matcher
//! that finds a concrete request's row ([`required_permission`], [`match_route`]).
//!
//! Every route a component serves must have a row here, and a request whose route has no row is
//! refused (404) before anything else: the check fails closed. Templates use Spin's router syntax
//! (`:name` matches one non-empty path segment); paths are IoT Central's, case-sensitive.
//!
//! Decisions where IoT Central is silent (its OpenAPI file declares only AAD scopes):
//! - `PUT` creates, so it needs the area's *create* permission; `PATCH` needs *update*.
//! - `GET /deviceGroups/{id}/devices` needs `devices.view`: it returns devices.
//! - A device's `credentials` and `attestation` are device connectivity at instance level;
//!   enrollment groups are device connectivity at global level.
//!
//! Not owned here: which component serves a route (spin.toml) or how it is documented (OpenAPI).

use std::fmt;

use super::Permission;

/// An HTTP method, as the route table distinguishes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    /// HTTP methods are case-sensitive (RFC 9110 §9.1): `get` is not `GET`.
    pub fn parse(raw: &str) -> Option<Method> {
        Some(match raw {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route demands of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// No token needed: health and the OpenAPI document.
    Public,
    /// A valid token whose roles grant this permission.
    Permission(Permission),
}

/// One row of the route table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    /// Spin router syntax, e.g. `/api/devices/:device_id`.
    pub template: &'static str,
    pub requirement: Requirement,
}

const fn public(method: Method, template: &'static str) -> Route {
    Route {
        method,
        template,
        requirement: Requirement::Public,
    }
}

const fn needs(method: Method, template: &'static str, permission: Permission) -> Route {
    Route {
        method,
        template,
        requirement: Requirement::Permission(permission),
    }
}

/// Every `/api` route Gyre serves, with what it requires. No two rows match the same request.
#[rustfmt::skip]
pub const ROUTES: &[Route] = {
    use Method::{Delete, Get, Patch, Post, Put};
    use Permission::*;
    &[
        public(Get,   "/api/health"),
        public(Get,   "/api/openapi.json"),
        // API tokens.
        needs(Get,    "/api/apiTokens",                             ApiTokensView),
        needs(Get,    "/api/apiTokens/:token_id",                   ApiTokensView),
        needs(Put,    "/api/apiTokens/:token_id",                   ApiTokensCreate),
        needs(Delete, "/api/apiTokens/:token_id",                   ApiTokensDelete),
        // Device groups.
        needs(Get,    "/api/deviceGroups",                          DeviceGroupsView),
        needs(Get,    "/api/deviceGroups/:device_group_id",         DeviceGroupsView),
        needs(Put,    "/api/deviceGroups/:device_group_id",         DeviceGroupsCreate),
        needs(Patch,  "/api/deviceGroups/:device_group_id",         DeviceGroupsUpdate),
        needs(Delete, "/api/deviceGroups/:device_group_id",         DeviceGroupsDelete),
        needs(Get,    "/api/deviceGroups/:device_group_id/devices", DevicesView),
        // Device templates.
        needs(Get,    "/api/deviceTemplates",                       DeviceTemplatesView),
        needs(Get,    "/api/deviceTemplates/:device_template_id",   DeviceTemplatesView),
        needs(Put,    "/api/deviceTemplates/:device_template_id",   DeviceTemplatesManage),
        needs(Patch,  "/api/deviceTemplates/:device_template_id",   DeviceTemplatesManage),
        needs(Delete, "/api/deviceTemplates/:device_template_id",   DeviceTemplatesManage),
        // Devices.
        needs(Get,    "/api/devices",                               DevicesView),
        needs(Get,    "/api/devices/:device_id",                    DevicesView),
        needs(Put,    "/api/devices/:device_id",                    DevicesCreate),
        needs(Patch,  "/api/devices/:device_id",                    DevicesUpdate),
        needs(Delete, "/api/devices/:device_id",                    DevicesDelete),
        needs(Get,    "/api/devices/:device_id/attestation",        DeviceConnectivityReadInstance),
        needs(Put,    "/api/devices/:device_id/attestation",        DeviceConnectivityManageInstance),
        needs(Patch,  "/api/devices/:device_id/attestation",        DeviceConnectivityManageInstance),
        needs(Delete, "/api/devices/:device_id/attestation",        DeviceConnectivityManageInstance),
        needs(Get,    "/api/devices/:device_id/credentials",        DeviceConnectivityReadInstance),
        needs(Get,    "/api/devices/:device_id/properties",         DevicesView),
        needs(Put,    "/api/devices/:device_id/properties",         DevicesUpdate),
        needs(Patch,  "/api/devices/:device_id/properties",         DevicesUpdate),
        needs(Get,    "/api/devices/:device_id/components/:component_name/properties", DevicesView),
        needs(Put,    "/api/devices/:device_id/components/:component_name/properties", DevicesUpdate),
        needs(Patch,  "/api/devices/:device_id/components/:component_name/properties", DevicesUpdate),
        needs(Get,    "/api/devices/:device_id/commands/:command_name", DevicesView),
        needs(Post,   "/api/devices/:device_id/commands/:command_name", DevicesExecuteCommands),
        needs(Get,    "/api/devices/:device_id/components/:component_name/commands/:command_name", DevicesView),
        needs(Post,   "/api/devices/:device_id/components/:component_name/commands/:command_name", DevicesExecuteCommands),
        // Cloud-to-device messages: our addition; sending one is akin to running a command.
        needs(Get,    "/api/devices/:device_id/messages",           DevicesView),
        needs(Post,   "/api/devices/:device_id/messages",           DevicesExecuteCommands),
        // Telemetry (the query component): last known values, and history (our addition).
        needs(Get,    "/api/devices/:device_id/telemetry/:telemetry_name", DevicesView),
        needs(Get,    "/api/devices/:device_id/telemetry/:telemetry_name/history", DevicesView),
        needs(Get,    "/api/devices/:device_id/components/:component_name/telemetry/:telemetry_name", DevicesView),
        needs(Get,    "/api/devices/:device_id/components/:component_name/telemetry/:telemetry_name/history", DevicesView),
        // Enrollment groups.
        needs(Get,    "/api/enrollmentGroups",                      DeviceConnectivityReadGlobal),
        needs(Get,    "/api/enrollmentGroups/:enrollment_group_id", DeviceConnectivityReadGlobal),
        needs(Put,    "/api/enrollmentGroups/:enrollment_group_id", DeviceConnectivityManageGlobal),
        needs(Patch,  "/api/enrollmentGroups/:enrollment_group_id", DeviceConnectivityManageGlobal),
        needs(Delete, "/api/enrollmentGroups/:enrollment_group_id", DeviceConnectivityManageGlobal),
        // The query API: reading telemetry is viewing devices.
        needs(Post,   "/api/query",                                 DevicesView),
        // Roles (read-only, as in IoT Central).
        needs(Get,    "/api/roles",                                 RolesView),
        needs(Get,    "/api/roles/:role_id",                        RolesView),
    ]
};

/// What `method path` requires, or `None` when no route matches (answer 404 or 405, and never
/// serve it). `path` is the request path; a query string (`?api-version=...`) is ignored.
pub fn required_permission(method: Method, path: &str) -> Option<Requirement> {
    match_route(method, path).map(|route| route.requirement)
}

/// The row matching `method path`, e.g. to log the route template rather than the raw path.
pub fn match_route(method: Method, path: &str) -> Option<&'static Route> {
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    ROUTES
        .iter()
        .find(|route| route.method == method && template_matches(route.template, path))
}

/// Whether `path` fits `template` segment by segment. A `:name` segment matches one non-empty
/// segment other than `.` and `..`, so a path a server might normalise differently never
/// matches a parameter.
fn template_matches(template: &str, path: &str) -> bool {
    let Some(path) = path.strip_prefix('/') else {
        return false;
    };
    let Some(template) = template.strip_prefix('/') else {
        return false;
    };
    let mut path_segments = path.split('/');
    for template_segment in template.split('/') {
        let Some(path_segment) = path_segments.next() else {
            return false;
        };
        let matches = if template_segment.starts_with(':') {
            !matches!(path_segment, "" | "." | "..")
        } else {
            template_segment == path_segment
        };
        if !matches {
            return false;
        }
    }
    path_segments.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{authorize, RoleAssignment, ADMINISTRATOR, BUILDER, OPERATOR};

    /// Checks that `method path` matches a row requiring `requirement` (`public` or a permission
    /// name) and which built-in roles pass it: `passes` is `A`, `B`, `O` (administrator,
    /// builder, operator) or `-` for a role that is refused. Returns the matched row.
    fn check(method: &str, path: &str, requirement: &str, passes: &str) -> &'static Route {
        let method = Method::parse(method).unwrap();
        let route =
            match_route(method, path).unwrap_or_else(|| panic!("{method} {path} matches no route"));
        let expected = match requirement {
            "public" => Requirement::Public,
            name => Requirement::Permission(Permission::from_name(name).unwrap()),
        };
        assert_eq!(route.requirement, expected, "{method} {path}");
        assert_eq!(required_permission(method, path), Some(expected));
        let pass = |role, letter| {
            let passed = authorize(&[RoleAssignment::app_wide(role)], expected).is_ok();
            if passed {
                letter
            } else {
                '-'
            }
        };
        let actual: String = [
            pass(&ADMINISTRATOR, 'A'),
            pass(&BUILDER, 'B'),
            pass(&OPERATOR, 'O'),
        ]
        .into_iter()
        .collect();
        assert_eq!(actual, passes, "{method} {path}: roles that pass");
        route
    }

    fn check_none(method: &str, path: &str) {
        let method = Method::parse(method).unwrap();
        assert_eq!(required_permission(method, path), None, "{method} {path}");
    }

    /// One case per row of [`ROUTES`], with a concrete path, the permission, and which built-in
    /// roles pass.
    #[test]
    fn every_route_requires_its_permission() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, &str)] = &[
            ("GET",    "/api/health",                     "public",                              "ABO"),
            ("GET",    "/api/openapi.json",               "public",                              "ABO"),
            ("GET",    "/api/apiTokens",                  "api-tokens.view",                     "A--"),
            ("GET",    "/api/apiTokens/t1",               "api-tokens.view",                     "A--"),
            ("PUT",    "/api/apiTokens/t1",               "api-tokens.create",                   "A--"),
            ("DELETE", "/api/apiTokens/t1",               "api-tokens.delete",                   "A--"),
            ("GET",    "/api/deviceGroups",               "device-groups.view",                  "ABO"),
            ("GET",    "/api/deviceGroups/g1",            "device-groups.view",                  "ABO"),
            ("PUT",    "/api/deviceGroups/g1",            "device-groups.create",                "ABO"),
            ("PATCH",  "/api/deviceGroups/g1",            "device-groups.update",                "ABO"),
            ("DELETE", "/api/deviceGroups/g1",            "device-groups.delete",                "ABO"),
            ("GET",    "/api/deviceGroups/g1/devices",    "devices.view",                        "ABO"),
            ("GET",    "/api/deviceTemplates",            "device-templates.view",               "ABO"),
            ("GET",    "/api/deviceTemplates/dtmi:x:T;1", "device-templates.view",               "ABO"),
            ("PUT",    "/api/deviceTemplates/dtmi:x:T;1", "device-templates.manage",             "AB-"),
            ("PATCH",  "/api/deviceTemplates/dtmi:x:T;1", "device-templates.manage",             "AB-"),
            ("DELETE", "/api/deviceTemplates/dtmi:x:T;1", "device-templates.manage",             "AB-"),
            ("GET",    "/api/devices",                    "devices.view",                        "ABO"),
            ("GET",    "/api/devices/d1",                 "devices.view",                        "ABO"),
            ("PUT",    "/api/devices/d1",                 "devices.create",                      "ABO"),
            ("PATCH",  "/api/devices/d1",                 "devices.update",                      "ABO"),
            ("DELETE", "/api/devices/d1",                 "devices.delete",                      "ABO"),
            ("GET",    "/api/devices/d1/attestation",     "device-connectivity.read-instance",   "ABO"),
            ("PUT",    "/api/devices/d1/attestation",     "device-connectivity.manage-instance", "ABO"),
            ("PATCH",  "/api/devices/d1/attestation",     "device-connectivity.manage-instance", "ABO"),
            ("DELETE", "/api/devices/d1/attestation",     "device-connectivity.manage-instance", "ABO"),
            ("GET",    "/api/devices/d1/credentials",     "device-connectivity.read-instance",   "ABO"),
            ("GET",    "/api/devices/d1/properties",      "devices.view",                        "ABO"),
            ("PUT",    "/api/devices/d1/properties",      "devices.update",                      "ABO"),
            ("PATCH",  "/api/devices/d1/properties",      "devices.update",                      "ABO"),
            ("GET",    "/api/devices/d1/components/c1/properties",   "devices.view",             "ABO"),
            ("PUT",    "/api/devices/d1/components/c1/properties",   "devices.update",           "ABO"),
            ("PATCH",  "/api/devices/d1/components/c1/properties",   "devices.update",           "ABO"),
            ("GET",    "/api/devices/d1/commands/reboot", "devices.view",                        "ABO"),
            ("POST",   "/api/devices/d1/commands/reboot", "devices.execute-commands",            "ABO"),
            ("GET",    "/api/devices/d1/components/c1/commands/reboot",  "devices.view",             "ABO"),
            ("POST",   "/api/devices/d1/components/c1/commands/reboot",  "devices.execute-commands", "ABO"),
            ("GET",    "/api/devices/d1/messages",        "devices.view",                        "ABO"),
            ("POST",   "/api/devices/d1/messages",        "devices.execute-commands",            "ABO"),
            ("GET",    "/api/devices/d1/telemetry/temp",  "devices.view",                        "ABO"),
            ("GET",    "/api/devices/d1/telemetry/temp/history", "devices.view",                 "ABO"),
            ("GET",    "/api/devices/d1/components/c1/telemetry/temp", "devices.view",           "ABO"),
            ("GET",    "/api/devices/d1/components/c1/telemetry/temp/history", "devices.view",   "ABO"),
            ("POST",   "/api/query",                      "devices.view",                        "ABO"),
            ("GET",    "/api/enrollmentGroups",           "device-connectivity.read-global",     "A--"),
            ("GET",    "/api/enrollmentGroups/e1",        "device-connectivity.read-global",     "A--"),
            ("PUT",    "/api/enrollmentGroups/e1",        "device-connectivity.manage-global",   "A--"),
            ("PATCH",  "/api/enrollmentGroups/e1",        "device-connectivity.manage-global",   "A--"),
            ("DELETE", "/api/enrollmentGroups/e1",        "device-connectivity.manage-global",   "A--"),
            ("GET",    "/api/roles",                      "roles.view",                          "A--"),
            ("GET",    "/api/roles/r1",                   "roles.view",                          "A--"),
        ];
        let mut tested: Vec<(Method, &str)> = cases
            .iter()
            .map(|&(method, path, requirement, passes)| {
                let route = check(method, path, requirement, passes);
                (route.method, route.template)
            })
            .collect();
        // Every row has its case, so a row added without a test fails here.
        let mut rows: Vec<(Method, &str)> = ROUTES
            .iter()
            .map(|route| (route.method, route.template))
            .collect();
        tested.sort_unstable();
        rows.sort_unstable();
        assert_eq!(tested, rows);
    }

    #[test]
    fn no_two_rows_match_the_same_request() {
        for route in ROUTES {
            let concrete: Vec<&str> = route
                .template
                .split('/')
                .map(|segment| {
                    if segment.starts_with(':') {
                        "x"
                    } else {
                        segment
                    }
                })
                .collect();
            let path = concrete.join("/");
            let matching: Vec<&Route> = ROUTES
                .iter()
                .filter(|other| {
                    other.method == route.method && template_matches(other.template, &path)
                })
                .collect();
            assert_eq!(matching, [route], "{} {path}", route.method);
        }
    }

    #[test]
    fn the_query_string_is_ignored() {
        let route = check(
            "GET",
            "/api/devices/d1?api-version=2022-07-31",
            "devices.view",
            "ABO",
        );
        assert_eq!(route.template, "/api/devices/:device_id");
        let route = check("GET", "/api/health?", "public", "ABO");
        assert_eq!(route.template, "/api/health");
    }

    #[test]
    fn parameters_match_one_encoded_segment() {
        let route = check("GET", "/api/devices/a%2Fb", "devices.view", "ABO");
        assert_eq!(route.template, "/api/devices/:device_id");
        let route = check("DELETE", "/api/devices/-_-.x~", "devices.delete", "ABO");
        assert_eq!(route.template, "/api/devices/:device_id");
    }

    #[test]
    fn unknown_routes_and_methods_match_nothing() {
        check_none("GET", "/api");
        check_none("GET", "/api/");
        check_none("GET", "/api/devices/");
        check_none("GET", "/api/devices//credentials");
        check_none("GET", "/api/devices/d1/");
        check_none("GET", "/api/devices/d1/commands");
        check_none("PUT", "/api/devices/d1/commands/reboot");
        check_none("DELETE", "/api/devices/d1/messages");
        check_none("GET", "/api/devices/./credentials");
        check_none("DELETE", "/api/devices/..");
        check_none("GET", "/api/devices/.");
        check_none("GET", "/api/Devices");
        check_none("GET", "api/devices");
        check_none("GET", "");
        check_none("GET", "/");
        check_none("GET", "/health");
        check_none("POST", "/api/devices");
        check_none("PUT", "/api/devices");
        check_none("PATCH", "/api/apiTokens/t1");
        check_none("PUT", "/api/roles/ca310b8d-2f4a-44e0-a36e-957c202cd8d4");
        check_none("HEAD", "/api/health");
        check_none("POST", "/api/health");
        check_none("GET", "/api/users");
        assert_eq!(Method::parse("get"), None);
        assert_eq!(Method::parse("BREW"), None);
    }
}
