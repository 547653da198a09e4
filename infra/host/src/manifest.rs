//! Spin application manifests (`spin_manifest_version = 2`): parsing with Spin's identifier rules and
//! error texts, normalisation of inline components and trigger ids, and the HTTP trigger's settings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A parsed manifest, field for field as Spin reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    pub spin_manifest_version: ManifestVersion,
    pub application: AppDetails,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<SnakeId, Variable>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trigger: BTreeMap<String, Vec<Trigger>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub component: BTreeMap<KebabId, Component>,
}

/// The only manifest version this loader reads: 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestVersion;

impl Serialize for ManifestVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(2)
    }
}

impl<'de> Deserialize<'de> for ManifestVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(deserializer)? {
            toml::Value::Integer(2) => Ok(Self),
            other => Err(de::Error::custom(format!(
                "invalid manifest version: {}",
                show_value(&other)
            ))),
        }
    }
}

fn show_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDetails {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trigger: BTreeMap<String, toml::Table>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool: BTreeMap<String, toml::Table>,
}

/// An application variable: a default, or required; secret ones are never logged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One entry of `[[trigger.<type>]]`. Trigger-specific settings (an HTTP route) stay in `config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentSpec>,
    #[serde(flatten)]
    pub config: toml::Table,
}

/// A trigger's component: the id of a `[component.<id>]`, or a component written inline.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ComponentSpec {
    Reference(KebabId),
    Inline(Box<Component>),
}

impl<'de> Deserialize<'de> for ComponentSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;
        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = ComponentSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a component id or an inline component table")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<ComponentSpec, E> {
                KebabId::try_from(value.to_string())
                    .map(ComponentSpec::Reference)
                    .map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ComponentSpec, A::Error> {
                Component::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|c| ComponentSpec::Inline(Box::new(c)))
            }
        }
        deserializer.deserialize_any(SpecVisitor)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub source: ComponentSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<SnakeId, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<toml::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_value_stores: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sqlite_databases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ai_models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<toml::Table>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool: BTreeMap<String, toml::Table>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub dependencies_inherit_configuration: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, ComponentDependency>,
}

/// A component dependency (`[component.x.dependencies]`). The host does not compose dependencies yet;
/// it reads them as Spin does and refuses to run a component that has any.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum ComponentDependency {
    Version(String),
    Package {
        version: String,
        registry: Option<String>,
        package: Option<String>,
        export: Option<String>,
        inherit_configuration: Option<toml::Value>,
    },
    Local {
        path: String,
        export: Option<String>,
        inherit_configuration: Option<toml::Value>,
    },
    Http {
        url: String,
        digest: String,
        export: Option<String>,
        inherit_configuration: Option<toml::Value>,
    },
}

/// Where a component's Wasm comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum ComponentSource {
    Local(String),
    Remote {
        url: String,
        digest: String,
    },
    Registry {
        registry: Option<String>,
        package: String,
        version: String,
    },
}

/// A kebab-case identifier (`my-component`), Spin's rule for component ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct KebabId(String);

/// A snake_case identifier (`api_key`), Spin's rule for variable names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct SnakeId(String);

fn check_id(id: &str, sep: char, other: char) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty".into());
    }
    if id.contains(other) {
        return Err(format!(
            "words must be separated with '{sep}', not '{other}'"
        ));
    }
    for word in id.split(sep) {
        let Some(first) = word.chars().next() else {
            return Err(format!("'{sep}'-separated words must not be empty"));
        };
        if !first.is_ascii_alphabetic() {
            return Err(format!(
                "'{sep}'-separated words must start with an ASCII letter; got '{first}'"
            ));
        }
        if let Some(bad) = word.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Err(format!(
                "'{sep}'-separated words may only contain alphanumeric ASCII; got '{bad}'"
            ));
        }
        if let Some(upper) = word.chars().find(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "'{sep}'-separated words must be lowercase; got '{upper}'"
            ));
        }
    }
    Ok(())
}

impl TryFrom<String> for KebabId {
    type Error = String;
    fn try_from(id: String) -> Result<Self, String> {
        check_id(&id, '-', '_').map(|()| Self(id))
    }
}

impl TryFrom<String> for SnakeId {
    type Error = String;
    fn try_from(id: String) -> Result<Self, String> {
        check_id(&id, '_', '-').map(|()| Self(id))
    }
}

impl KebabId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl SnakeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KebabId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SnakeId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a manifest's text the way Spin does, without normalising it.
pub fn parse(text: &str) -> anyhow::Result<AppManifest> {
    #[derive(Deserialize)]
    struct VersionProbe {
        spin_manifest_version: Option<toml::Value>,
    }
    // Spin reads the version first so that a manifest of another version gets that one clear message
    // rather than a list of unknown fields.
    if let Ok(VersionProbe {
        spin_manifest_version: Some(version),
    }) = toml::from_str::<VersionProbe>(text)
        && version != toml::Value::Integer(2)
    {
        bail!("invalid manifest version: {}", show_value(&version));
    }
    let manifest: AppManifest = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (name, variable) in &manifest.variables {
        if variable.required && variable.default.is_some() {
            bail!("variable `{name}` is both required and has a default; choose one");
        }
    }
    Ok(manifest)
}

impl AppManifest {
    /// Gives every trigger an id and moves inline components into `[component]`, as Spin does before
    /// running an application.
    pub fn normalize(&mut self) -> anyhow::Result<()> {
        let mut trigger_ids: Vec<String> = self
            .trigger
            .values()
            .flatten()
            .filter_map(|t| t.id.clone())
            .collect();
        for (kind, triggers) in &mut self.trigger {
            let mut counter = 1;
            for trigger in triggers.iter_mut().filter(|t| t.id.is_none()) {
                // The natural id when it is free; a component with several routes gets counter ids
                // for the others, as Spin's normalisation does.
                let natural = match &trigger.component {
                    Some(ComponentSpec::Reference(component)) => {
                        Some(format!("{component}-{kind}-trigger"))
                    }
                    _ => None,
                };
                let id = match natural {
                    Some(id) if !trigger_ids.contains(&id) => id,
                    _ => loop {
                        let candidate = format!("{kind}-trigger{counter}");
                        counter += 1;
                        if !trigger_ids.contains(&candidate) {
                            break candidate;
                        }
                    },
                };
                trigger_ids.push(id.clone());
                trigger.id = Some(id);
            }
        }

        let mut inline_counter = 1;
        for triggers in self.trigger.values_mut() {
            for trigger in triggers.iter_mut() {
                let trigger_id = trigger.id.clone().unwrap_or_default();
                if let Some(ComponentSpec::Inline(component)) = &trigger.component {
                    let component = component.clone();
                    let id = KebabId::try_from(format!("{trigger_id}-component"))
                        .map_err(|e| anyhow::anyhow!("trigger id `{trigger_id}`: {e}"))?;
                    if self.component.contains_key(&id) {
                        bail!("inline component `{id}` clashes with a declared component");
                    }
                    self.component.insert(id.clone(), *component);
                    trigger.component = Some(ComponentSpec::Reference(id));
                }
                for spec in trigger.components.values_mut() {
                    if let ComponentSpec::Inline(component) = spec {
                        let id = loop {
                            let candidate = KebabId(format!("inline-component{inline_counter}"));
                            inline_counter += 1;
                            if !self.component.contains_key(&candidate) {
                                break candidate;
                            }
                        };
                        self.component.insert(id.clone(), (**component).clone());
                        *spec = ComponentSpec::Reference(id);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where an HTTP trigger listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpRoute {
    /// A path pattern such as `/v1/search/...`.
    Path(String),
    /// `route = { private = true }`: reachable only by other components, never from outside.
    Private,
}

/// One `[[trigger.http]]`, resolved to its component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    pub id: String,
    pub route: HttpRoute,
    pub component: String,
}

/// A manifest ready to run: normalised, HTTP triggers checked, paths resolved against its directory.
#[derive(Debug, Clone)]
pub struct App {
    pub manifest: AppManifest,
    pub http: Vec<HttpTrigger>,
    /// The manifest's directory; component sources are relative to it.
    pub dir: PathBuf,
}

impl App {
    /// Reads, parses and normalises a manifest file, and checks what this host can run.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::from_text(&text, dir).with_context(|| format!("in manifest {}", path.display()))
    }

    pub fn from_text(text: &str, dir: PathBuf) -> anyhow::Result<Self> {
        let mut manifest = parse(text)?;
        manifest.normalize()?;
        let mut http = Vec::new();
        for (kind, triggers) in &manifest.trigger {
            if kind != "http" {
                bail!("trigger type `{kind}` is not supported by edgerag's host (only `http` is)");
            }
            for trigger in triggers {
                http.push(http_trigger(trigger, &manifest)?);
            }
        }
        Ok(Self {
            manifest,
            http,
            dir,
        })
    }

    /// The local Wasm file for a component.
    pub fn source_path(&self, component: &str) -> anyhow::Result<PathBuf> {
        let declared = self
            .manifest
            .component
            .iter()
            .find(|(id, _)| id.as_str() == component)
            .map(|(_, c)| c)
            .with_context(|| format!("no component `{component}`"))?;
        match &declared.source {
            ComponentSource::Local(path) => Ok(self.dir.join(path)),
            ComponentSource::Remote { url, .. } => bail!(
                "component `{component}` comes from {url}; edgerag's host runs local files only \
                 (download it and set `source` to the path)"
            ),
            ComponentSource::Registry { package, .. } => bail!(
                "component `{component}` comes from registry package {package}; edgerag's host runs \
                 local files only"
            ),
        }
    }

    pub fn component(&self, id: &str) -> Option<&Component> {
        self.manifest
            .component
            .iter()
            .find(|(k, _)| k.as_str() == id)
            .map(|(_, c)| c)
    }
}

fn http_trigger(trigger: &Trigger, manifest: &AppManifest) -> anyhow::Result<HttpTrigger> {
    let id = trigger.id.clone().unwrap_or_default();
    let component = match &trigger.component {
        Some(ComponentSpec::Reference(component)) => component.to_string(),
        _ => bail!("http trigger `{id}` needs exactly one `component`"),
    };
    if !manifest.component.keys().any(|k| k.as_str() == component) {
        bail!("http trigger `{id}` names component `{component}`, which is not declared");
    }
    if manifest
        .component
        .iter()
        .any(|(id, c)| id.as_str() == component && !c.dependencies.is_empty())
    {
        bail!(
            "component `{component}` has dependencies; edgerag's host does not compose component \
             dependencies (compose them at build time instead)"
        );
    }
    if !trigger.components.is_empty() {
        bail!("http trigger `{id}`: `components` is not valid for http triggers; use `component`");
    }
    let mut route = None;
    for (key, value) in &trigger.config {
        match (key.as_str(), value) {
            ("route", toml::Value::String(path)) => {
                if !path.starts_with('/') {
                    bail!("http trigger `{id}`: route `{path}` must start with '/'");
                }
                route = Some(HttpRoute::Path(path.clone()));
            }
            ("route", toml::Value::Table(table))
                if table.get("private") == Some(&toml::Value::Boolean(true))
                    && table.len() == 1 =>
            {
                route = Some(HttpRoute::Private);
            }
            ("route", other) => bail!(
                "http trigger `{id}`: route must be a path or {{ private = true }}, got {other}"
            ),
            ("executor", toml::Value::Table(table))
                if table.get("type") == Some(&toml::Value::String("spin".into())) => {}
            ("executor", other) => bail!(
                "http trigger `{id}`: executor {other} is not supported by edgerag's host \
                 (only the default `spin` executor is)"
            ),
            (other, _) => bail!("http trigger `{id}`: unknown setting `{other}`"),
        }
    }
    let route = route.with_context(|| format!("http trigger `{id}` has no `route`"))?;
    Ok(HttpTrigger {
        id,
        route,
        component,
    })
}
