//! Spin variables: application variables with defaults, `required` and `secret`, overridden by
//! `SPIN_VARIABLE_<NAME>`; component variables as `{{ name }}` templates over them.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use crate::manifest::AppManifest;

/// Resolved application variables. Values of secret ones are never printed: `Debug` hides them.
#[derive(Clone, Default)]
pub struct AppVariables {
    values: BTreeMap<String, String>,
    secret: Vec<String>,
}

impl std::fmt::Debug for AppVariables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in &self.values {
            if self.secret.contains(name) {
                map.entry(name, &"<secret>");
            } else {
                map.entry(name, value);
            }
        }
        map.finish()
    }
}

/// The environment variable that overrides application variable `name`.
pub fn env_name(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

impl AppVariables {
    /// Resolves every application variable, highest priority first: `SPIN_VARIABLE_<NAME>` from `env`,
    /// then `provided` (values `edgerag up` supplies, such as embedded stores' URLs and secrets),
    /// then the manifest's default. A required variable with no value stops start-up, naming all of them.
    pub fn resolve(
        manifest: &AppManifest,
        env: impl Fn(&str) -> Option<String>,
        provided: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        let mut secret = Vec::new();
        let mut missing = Vec::new();
        for (name, declared) in &manifest.variables {
            let name = name.as_str();
            let value = env(&env_name(name))
                .or_else(|| provided.get(name).cloned())
                .or_else(|| declared.default.clone());
            match value {
                Some(value) => {
                    values.insert(name.to_string(), value);
                }
                None if declared.required => missing.push(name.to_string()),
                None => {}
            }
            if declared.secret {
                secret.push(name.to_string());
            }
        }
        if !missing.is_empty() {
            let hints: Vec<String> = missing
                .iter()
                .map(|name| format!("`{name}` (set {})", env_name(name)))
                .collect();
            bail!(
                "required application variable(s) not set: {}",
                hints.join(", ")
            );
        }
        Ok(Self { values, secret })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Expands `{{ name }}` references in `template`. A reference to an undeclared or unset variable is
    /// an error, reported at start-up rather than when a guest first asks.
    pub fn expand(&self, template: &str) -> anyhow::Result<String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("unclosed `{{{{` in `{template}`"))?;
            let name = after[..end].trim();
            let value = self.values.get(name).with_context(|| {
                format!("`{template}` refers to variable `{name}`, which has no value")
            })?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A component's variables (`[component.x.variables]`) with their templates expanded.
    pub fn for_component(
        &self,
        declared: &BTreeMap<crate::manifest::SnakeId, String>,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        declared
            .iter()
            .map(|(name, template)| {
                self.expand(template)
                    .map(|value| (name.to_string(), value))
                    .with_context(|| format!("component variable `{name}`"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(variables: &str) -> AppManifest {
        crate::manifest::parse(&format!(
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n[variables]\n{variables}"
        ))
        .unwrap()
    }

    #[test]
    fn env_beats_provided_beats_default() {
        let m = manifest(
            "a = { default = \"da\" }\nb = { default = \"db\" }\nc = { default = \"dc\" }",
        );
        let provided = BTreeMap::from([
            ("b".to_string(), "pb".to_string()),
            ("a".to_string(), "pa".to_string()),
        ]);
        let env = |name: &str| (name == "SPIN_VARIABLE_A").then(|| "ea".to_string());
        let vars = AppVariables::resolve(&m, env, &provided).unwrap();
        assert_eq!(vars.get("a"), Some("ea"));
        assert_eq!(vars.get("b"), Some("pb"));
        assert_eq!(vars.get("c"), Some("dc"));
    }

    #[test]
    fn missing_required_variables_are_all_named() {
        let m = manifest("x = { required = true }\ny = { required = true, secret = true }");
        let error = AppVariables::resolve(&m, |_| None, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("`x` (set SPIN_VARIABLE_X)"), "{error}");
        assert!(error.contains("`y` (set SPIN_VARIABLE_Y)"), "{error}");
    }

    #[test]
    fn templates_expand_and_unknown_names_fail() {
        let m = manifest("host = { default = \"127.0.0.1\" }\nport = { default = \"5984\" }");
        let vars = AppVariables::resolve(&m, |_| None, &BTreeMap::new()).unwrap();
        assert_eq!(
            vars.expand("http://{{ host }}:{{port}}/db").unwrap(),
            "http://127.0.0.1:5984/db"
        );
        assert!(vars.expand("{{ nope }}").is_err());
        assert!(vars.expand("{{ host").is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let m = manifest("token = { default = \"hunter2\", secret = true }");
        let vars = AppVariables::resolve(&m, |_| None, &BTreeMap::new()).unwrap();
        assert!(!format!("{vars:?}").contains("hunter2"));
    }
}
