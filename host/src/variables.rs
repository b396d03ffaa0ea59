//! Application variables and component variable templates, as Spin resolves them.
//!
//! `[variables]` declares application variables (a `default`, or `required = true`); the only
//! provider is the environment (`SPIN_VARIABLE_<NAME>`), as with `spin up`. Component variables
//! (`[component.x.variables]`) and `allowed_outbound_hosts` entries are templates over the
//! application variables (`"http://{{ host }}:{{ port }}"`). Everything is resolved once at load:
//! the environment does not change while the host runs, and a missing required variable stops
//! the start instead of failing a request later.

use std::collections::BTreeMap;

use crate::manifest::VariableDecl;

/// Spin's rule for variable names: lower-case ASCII letters, digits and single underscores,
/// starting with a letter.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('_')
        && !name.contains("__")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid variable name: use lower-case letters, digits and single underscores, \
             starting with a letter"
        ))
    }
}

/// Checks that every `{{ name }}` in `template` names a declared application variable.
pub fn check_template(
    template: &str,
    app_variables: &BTreeMap<String, VariableDecl>,
) -> Result<(), String> {
    for part in parse_template(template)? {
        if let TemplatePart::Variable(name) = part {
            if !app_variables.contains_key(name) {
                return Err(format!(
                    "`{{{{ {name} }}}}` names no application variable: declare it under [variables]"
                ));
            }
        }
    }
    Ok(())
}

/// Resolves every application variable from the provider, falling back to its default. Reports
/// every required variable the provider lacks.
pub fn resolve_app(
    decls: &BTreeMap<String, VariableDecl>,
    provider: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, decl) in decls {
        match provider(name).or_else(|| decl.default.clone()) {
            Some(value) => {
                values.insert(name.clone(), value);
            }
            None => problems.push(format!(
                "variable `{name}` is required but not set: export {}=<value>",
                env_name(name)
            )),
        }
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

/// The environment variable that provides application variable `name`.
pub fn env_name(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// The environment provider `spin up` uses.
pub fn from_environment(name: &str) -> Option<String> {
    std::env::var(env_name(name)).ok()
}

/// Expands a template already checked by [`check_template`] against resolved values.
pub fn render(template: &str, values: &BTreeMap<String, String>) -> String {
    let Ok(parts) = parse_template(template) else {
        return template.to_string();
    };
    parts
        .into_iter()
        .map(|part| match part {
            TemplatePart::Literal(text) => text,
            TemplatePart::Variable(name) => values.get(name).map(String::as_str).unwrap_or(""),
        })
        .collect()
}

/// A component's variables, resolved, as `fermyon:spin/variables` serves them.
#[derive(Debug, Default, Clone)]
pub struct ComponentVariables {
    values: BTreeMap<String, String>,
}

/// Why `get` failed, mirroring the WIT `variables.error` variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetError {
    InvalidName(String),
    Undefined(String),
}

impl ComponentVariables {
    pub fn resolve(
        templates: &BTreeMap<String, String>,
        app_values: &BTreeMap<String, String>,
    ) -> Self {
        let values = templates
            .iter()
            .map(|(name, template)| (name.clone(), render(template, app_values)))
            .collect();
        ComponentVariables { values }
    }

    pub fn get(&self, name: &str) -> Result<String, GetError> {
        if let Err(why) = check_name(name) {
            return Err(GetError::InvalidName(why));
        }
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| GetError::Undefined(format!("no variable for `{name}`")))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum TemplatePart<'a> {
    Literal(&'a str),
    Variable(&'a str),
}

fn parse_template(template: &str) -> Result<Vec<TemplatePart<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(TemplatePart::Literal(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed `{{{{` in `{template}`"))?;
        let name = after[..end].trim();
        check_name(name)?;
        parts.push(TemplatePart::Variable(name));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls(entries: &[(&str, Option<&str>)]) -> BTreeMap<String, VariableDecl> {
        entries
            .iter()
            .map(|(name, default)| {
                let decl = VariableDecl {
                    default: default.map(str::to_string),
                    required: default.is_none(),
                    secret: false,
                };
                (name.to_string(), decl)
            })
            .collect()
    }

    #[test]
    fn names_follow_spin() {
        for good in ["a", "api_key", "port2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "A", "2a", "a-b", "a__b", "a_", "_a"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_environment_wins_over_defaults_and_required_variables_must_be_set() {
        let decls = decls(&[
            ("host", Some("localhost")),
            ("port", Some("80")),
            ("token", None),
        ]);
        let provider = |name: &str| (name == "port").then(|| "8080".to_string());
        let problems = resolve_app(&decls, provider).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("SPIN_VARIABLE_TOKEN"), "{problems:?}");

        let provider = |name: &str| match name {
            "port" => Some("8080".to_string()),
            "token" => Some("t".to_string()),
            _ => None,
        };
        let values = resolve_app(&decls, provider).unwrap();
        assert_eq!(
            render("http://{{ host }}:{{port}}/x", &values),
            "http://localhost:8080/x"
        );
    }

    #[test]
    fn templates_must_name_declared_variables() {
        let decls = decls(&[("host", Some("h"))]);
        assert!(check_template("http://{{ host }}", &decls).is_ok());
        assert!(check_template("http://{{ other }}", &decls).is_err());
        assert!(check_template("http://{{ host", &decls).is_err());
        assert!(check_template("no templates", &decls).is_ok());
    }

    #[test]
    fn component_variables_answer_like_spin() {
        let app = BTreeMap::from([("name".to_string(), "world".to_string())]);
        let templates = BTreeMap::from([("greeting".to_string(), "hello {{ name }}".to_string())]);
        let vars = ComponentVariables::resolve(&templates, &app);
        assert_eq!(vars.get("greeting").unwrap(), "hello world");
        assert!(matches!(vars.get("nope"), Err(GetError::Undefined(_))));
        assert!(matches!(
            vars.get("Bad-Name"),
            Err(GetError::InvalidName(_))
        ));
    }
}
