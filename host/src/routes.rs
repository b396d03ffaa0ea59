//! HTTP route patterns and matching, as Spin's HTTP trigger does it.
//!
//! A route is exact (`/health`), has `:name` segments (`/devices/:id`), or ends in a `/...`
//! wildcard (`/api/...`); `route = { private = true }` makes a component reachable only through
//! service chaining. When several routes match a path, the most specific wins: segment by
//! segment, a literal beats a `:name` segment, which beats a wildcard; at the end, an exact route
//! beats a wildcard. Two routes that would match the same paths are a load error.

use std::collections::BTreeMap;

use crate::manifest::HttpTrigger;

/// A route as written in `[[trigger.http]] route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSpec {
    /// `route = { private = true }`: service chaining only.
    Private,
    Pattern(RoutePattern),
}

/// A parsed public route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// As written, for `spin-raw-component-route` and `spin-matched-route`.
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// What a request path matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// `spin-path-info`: the part of the path after the route's fixed part.
    pub path_info: String,
    /// `:name` segment values, for `spin-path-match-<name>`.
    pub params: BTreeMap<String, String>,
}

impl RouteSpec {
    pub fn from_toml(value: &toml::Value) -> Result<RouteSpec, String> {
        match value {
            toml::Value::String(raw) => RoutePattern::parse(raw).map(RouteSpec::Pattern),
            toml::Value::Table(table) => match table.get("private") {
                Some(toml::Value::Boolean(true)) if table.len() == 1 => Ok(RouteSpec::Private),
                _ => Err("a route table must be `{ private = true }`".into()),
            },
            _ => {
                Err("`route` must be a string such as \"/api/...\" or `{ private = true }`".into())
            }
        }
    }
}

impl RoutePattern {
    pub fn parse(raw: &str) -> Result<RoutePattern, String> {
        if !raw.starts_with('/') {
            return Err(format!("route `{raw}` must start with `/`"));
        }
        let mut parts: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
        let wildcard = parts.last() == Some(&"...");
        if wildcard {
            parts.pop();
        }
        let mut segments = Vec::with_capacity(parts.len());
        for part in parts {
            if part == "..." {
                return Err(format!("route `{raw}`: `...` may only end a route"));
            }
            if let Some(name) = part.strip_prefix(':') {
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(format!(
                        "route `{raw}`: `:{name}` is not a valid parameter name"
                    ));
                }
                segments.push(Segment::Param(name.to_string()));
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        Ok(RoutePattern {
            raw: raw.to_string(),
            segments,
            wildcard,
        })
    }

    /// The route as written in the manifest.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// `spin-component-route`: the route without its trailing wildcard.
    pub fn component_route(&self) -> String {
        let fixed = self.raw.trim_end_matches("...").trim_end_matches('/');
        fixed.to_string()
    }

    /// Matches a request path (without its query).
    pub fn matches(&self, path: &str) -> Option<RouteMatch> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if parts.len() < self.segments.len()
            || (!self.wildcard && parts.len() != self.segments.len())
        {
            return None;
        }
        let mut params = BTreeMap::new();
        for (segment, part) in self.segments.iter().zip(&parts) {
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    params.insert(name.clone(), part.to_string());
                }
            }
        }
        let rest = &parts[self.segments.len()..];
        let path_info = if rest.is_empty() {
            String::new()
        } else {
            format!("/{}", rest.join("/"))
        };
        Some(RouteMatch { path_info, params })
    }

    /// Orders routes by specificity: greater is more specific.
    fn specificity(&self) -> Vec<u8> {
        let mut key: Vec<u8> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 3,
                Segment::Param(_) => 2,
            })
            .collect();
        key.push(if self.wildcard { 0 } else { 1 });
        key
    }

    /// Two patterns conflict when they match exactly the same paths.
    fn shape(&self) -> (Vec<Option<&str>>, bool) {
        let segments = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(literal) => Some(literal.as_str()),
                Segment::Param(_) => None,
            })
            .collect();
        (segments, self.wildcard)
    }
}

/// Reports every pair of triggers whose routes match the same paths.
pub fn check_conflicts(triggers: &[HttpTrigger]) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let patterns: Vec<(&str, &RoutePattern)> = triggers
        .iter()
        .filter_map(|t| match &t.route {
            RouteSpec::Pattern(p) => Some((t.component.as_str(), p)),
            RouteSpec::Private => None,
        })
        .collect();
    for (idx, (component, pattern)) in patterns.iter().enumerate() {
        for (other_component, other) in &patterns[..idx] {
            if pattern.shape() == other.shape() {
                problems.push(format!(
                    "route `{}` of component `{component}` conflicts with route `{}` of component \
                     `{other_component}`: give one of them another route",
                    pattern.raw, other.raw
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The public routes of an application, ready to match requests.
#[derive(Debug)]
pub struct Router<T> {
    routes: Vec<(RoutePattern, T)>,
}

impl<T> Router<T> {
    pub fn new(routes: Vec<(RoutePattern, T)>) -> Router<T> {
        Router { routes }
    }

    /// The most specific route matching `path`.
    pub fn route(&self, path: &str) -> Option<(&RoutePattern, &T, RouteMatch)> {
        self.routes
            .iter()
            .filter_map(|(pattern, target)| pattern.matches(path).map(|m| (pattern, target, m)))
            .max_by(|a, b| a.0.specificity().cmp(&b.0.specificity()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &(RoutePattern, T)> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[&str]) -> Router<String> {
        Router::new(
            routes
                .iter()
                .map(|r| (RoutePattern::parse(r).unwrap(), r.to_string()))
                .collect(),
        )
    }

    /// `(routes, request path, expected winner, expected path-info)`; `None` for a 404.
    fn check(routes: &[&str], path: &str, expected: Option<(&str, &str)>) {
        let router = router(routes);
        let got = router
            .route(path)
            .map(|(_, target, m)| (target.clone(), m.path_info));
        let expected = expected.map(|(t, info)| (t.to_string(), info.to_string()));
        assert_eq!(got, expected, "routes {routes:?}, path {path}");
    }

    #[test]
    fn matching_follows_spin() {
        check(&["/hello"], "/hello", Some(("/hello", "")));
        check(&["/hello"], "/hello/", Some(("/hello", "")));
        check(&["/hello"], "/hello/x", None);
        check(&["/hello"], "/", None);
        check(&["/api/..."], "/api", Some(("/api/...", "")));
        check(&["/api/..."], "/api/health", Some(("/api/...", "/health")));
        check(&["/api/..."], "/api/a/b", Some(("/api/...", "/a/b")));
        check(&["/api/..."], "/apix", None);
        check(
            &["/..."],
            "/anything/at/all",
            Some(("/...", "/anything/at/all")),
        );
        check(&["/..."], "/", Some(("/...", "")));
        check(&["/devices/:id"], "/devices/d1", Some(("/devices/:id", "")));
        check(&["/devices/:id"], "/devices", None);
        check(
            &["/devices/:id/..."],
            "/devices/d1/twin",
            Some(("/devices/:id/...", "/twin")),
        );
    }

    #[test]
    fn the_most_specific_route_wins() {
        let routes = [
            "/...",
            "/api/...",
            "/api/health",
            "/api/:thing",
            "/api/devices/...",
        ];
        check(&routes, "/api/health", Some(("/api/health", "")));
        check(&routes, "/api/other", Some(("/api/:thing", "")));
        check(
            &routes,
            "/api/devices/d1",
            Some(("/api/devices/...", "/d1")),
        );
        check(&routes, "/api/a/b", Some(("/api/...", "/a/b")));
        check(&routes, "/static/x", Some(("/...", "/static/x")));
        check(&["/a/b/...", "/a/:x"], "/a/b", Some(("/a/b/...", "")));
    }

    #[test]
    fn named_segments_are_captured() {
        let pattern = RoutePattern::parse("/devices/:device_id/commands/:name").unwrap();
        let m = pattern.matches("/devices/d-1/commands/reboot").unwrap();
        assert_eq!(m.params["device_id"], "d-1");
        assert_eq!(m.params["name"], "reboot");
    }

    #[test]
    fn component_route_drops_the_wildcard() {
        assert_eq!(
            RoutePattern::parse("/api/...").unwrap().component_route(),
            "/api"
        );
        assert_eq!(RoutePattern::parse("/...").unwrap().component_route(), "");
        assert_eq!(
            RoutePattern::parse("/hello").unwrap().component_route(),
            "/hello"
        );
    }

    #[test]
    fn bad_routes_are_refused() {
        assert!(RoutePattern::parse("api").is_err());
        assert!(RoutePattern::parse("/a/.../b").is_err());
        assert!(RoutePattern::parse("/a/:").is_err());
        assert!(RouteSpec::from_toml(&toml::Value::Integer(1)).is_err());
    }

    #[test]
    fn routes_matching_the_same_paths_conflict() {
        let trigger = |component: &str, route: &str| HttpTrigger {
            component: component.into(),
            route: RouteSpec::Pattern(RoutePattern::parse(route).unwrap()),
        };
        assert!(check_conflicts(&[trigger("a", "/x/..."), trigger("b", "/x")]).is_ok());
        assert!(check_conflicts(&[trigger("a", "/x/:id"), trigger("b", "/x/:name")]).is_err());
        let problems =
            check_conflicts(&[trigger("a", "/x"), trigger("b", "/x/"), trigger("c", "/y")])
                .unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("`b`") && problems[0].contains("`a`"),
            "{problems:?}"
        );
    }
}
