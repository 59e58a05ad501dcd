//! Spin variables: `fermyon:spin/variables@2.0.0` and `wasi:config/store`.
//!
//! Two levels, as in Spin. The app declares variables in `[variables]`
//! (default, required, secret); providers from the runtime config
//! (`SPIN_VARIABLE_<NAME>` in the environment first, then any dotenv file)
//! give them values. A component sees only its own `[component.X.variables]`,
//! each a template such as `"https://{{ api_host }}/v1"` over app variables;
//! it cannot read an app variable it was not given.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{Result, bail};

use crate::bindings::fermyon::spin2_0_0::variables as spin_variables;
use crate::bindings::wasi::config::store as wasi_config;
use crate::manifest::Manifest;
use crate::runtime_config::{RuntimeConfig, VariableProviderConfig};

/// The resolved variables of an app: built once at load time.
#[derive(Debug)]
pub struct Variables {
    /// App variable values (`None`: declared without a value or default).
    app: BTreeMap<String, Option<String>>,
    /// Component id → (component variable → its template expanded, or the
    /// app variable it names that has no value). Expanded once here, since
    /// the values never change while the app runs: a read is a lookup (the
    /// gateway reads its settings on every request).
    components: HashMap<String, BTreeMap<String, Result<String, String>>>,
}

/// What one instance sees.
pub struct VariablesInstance {
    variables: Arc<Variables>,
    component_id: Arc<str>,
}

/// Why a variable has no value for a component.
#[derive(Debug, PartialEq)]
pub enum VariableError {
    InvalidName(String),
    Undefined(String),
}

impl Variables {
    /// Resolves every app variable from the providers and checks that each
    /// `required` one has a value and each template names a declared one.
    pub fn new(manifest: &Manifest, runtime_config: &RuntimeConfig) -> Result<Self> {
        let providers: Vec<HashMap<String, String>> =
            runtime_config.variable_providers.iter().map(load_provider).collect::<Result<_>>()?;

        let mut app = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, decl) in &manifest.variables {
            let provided = providers.iter().find_map(|p| p.get(name).cloned());
            let value = provided.or_else(|| decl.default.clone());
            if decl.required && value.is_none() {
                missing.push(format!("{name} (set SPIN_VARIABLE_{})", name.to_ascii_uppercase()));
            }
            app.insert(name.clone(), value);
        }
        if !missing.is_empty() {
            bail!("{}: required variables have no value: {}", manifest.file.display(), missing.join(", "));
        }

        Ok(Self::expanded(app, manifest.components.iter().map(|(id, c)| (id.clone(), c.variables.clone()))))
    }

    /// The app's values, with each component's templates (component id →
    /// variable → template) expanded over them.
    fn expanded(
        app: BTreeMap<String, Option<String>>,
        templates: impl IntoIterator<Item = (String, BTreeMap<String, String>)>,
    ) -> Self {
        let mut variables = Self { app, components: HashMap::new() };
        variables.components = templates
            .into_iter()
            .map(|(id, vars)| {
                let expanded = vars.iter().map(|(name, template)| (name.clone(), variables.expand(template))).collect();
                (id, expanded)
            })
            .collect();
        variables
    }

    /// The value of an app variable, for templates in the manifest itself
    /// (such as `allowed_outbound_hosts`).
    pub fn app_value(&self, name: &str) -> Option<&str> {
        self.app.get(name).and_then(|v| v.as_deref())
    }

    /// The value of component variable `name` for `component_id`.
    pub fn get(&self, component_id: &str, name: &str) -> Result<String, VariableError> {
        validate_name(name)?;
        let expanded = self
            .components
            .get(component_id)
            .and_then(|vars| vars.get(name))
            .ok_or_else(|| VariableError::Undefined(format!("no variable for {component_id:?}.{name:?}")))?;
        expanded.clone().map_err(|app_var| {
            VariableError::Undefined(format!("variable {name:?} uses app variable {app_var:?}, which has no value"))
        })
    }

    /// All component variables of `component_id` that have values.
    pub fn all(&self, component_id: &str) -> Vec<(String, String)> {
        let Some(vars) = self.components.get(component_id) else { return Vec::new() };
        vars.iter().filter_map(|(name, value)| Some((name.clone(), value.clone().ok()?))).collect()
    }

    pub fn instance(self: &Arc<Self>, component_id: &str) -> VariablesInstance {
        VariablesInstance { variables: self.clone(), component_id: component_id.into() }
    }

    /// Expands `{{ app_var }}` references (in component variables, and in
    /// manifest fields Spin allows templates in, such as a Redis trigger's
    /// address); on failure, the name of the variable without a value.
    pub fn expand(&self, template: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start..].find("}}") else { break };
            let name = rest[start + 2..start + len].trim();
            out.push_str(&rest[..start]);
            out.push_str(self.app_value(name).ok_or_else(|| name.to_string())?);
            rest = &rest[start + len + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Spin's rule for variable names: lower-case ASCII letters, digits and
/// single underscores, starting with a letter.
fn validate_name(name: &str) -> Result<(), VariableError> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_');
    if ok { Ok(()) } else { Err(VariableError::InvalidName(format!("{name:?} is not a valid variable name"))) }
}

/// Reads one provider's values, keyed by lower-case variable name.
fn load_provider(provider: &VariableProviderConfig) -> Result<HashMap<String, String>> {
    let VariableProviderConfig::Env { prefix, dotenv_path } = provider;
    let prefix = format!("{prefix}_");
    let mut values = HashMap::new();
    // The dotenv file first, so the real environment overrides it.
    if let Some(path) = dotenv_path {
        let entries = dotenvy::from_path_iter(path)
            .map_err(|e| anyhow::anyhow!("reading variables from {}: {e}", path.display()))?;
        for entry in entries {
            let (key, value) = entry.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if let Some(name) = key.strip_prefix(&prefix) {
                values.insert(name.to_ascii_lowercase(), value);
            }
        }
    }
    for (key, value) in std::env::vars() {
        if let Some(name) = key.strip_prefix(&prefix) {
            values.insert(name.to_ascii_lowercase(), value);
        }
    }
    Ok(values)
}

impl spin_variables::Host for VariablesInstance {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, spin_variables::Error>> {
        Ok(self.variables.get(&self.component_id, &name).map_err(|e| match e {
            VariableError::InvalidName(m) => spin_variables::Error::InvalidName(m),
            VariableError::Undefined(m) => spin_variables::Error::Undefined(m),
        }))
    }
}

impl wasi_config::Host for VariablesInstance {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, wasi_config::Error>> {
        Ok(match self.variables.get(&self.component_id, &key) {
            Ok(value) => Ok(Some(value)),
            Err(VariableError::Undefined(_)) => Ok(None),
            Err(VariableError::InvalidName(m)) => Err(wasi_config::Error::Upstream(m)),
        })
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, wasi_config::Error>> {
        Ok(Ok(self.variables.all(&self.component_id)))
    }
}

/// Adds both variables interfaces to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<crate::state::InstanceState>) -> Result<()> {
    use wasmtime::component::HasSelf;
    spin_variables::add_to_linker::<_, HasSelf<VariablesInstance>>(linker, |s| &mut s.variables)?;
    wasi_config::add_to_linker::<_, HasSelf<VariablesInstance>>(linker, |s| &mut s.variables)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(app: &[(&str, Option<&str>)], component: &[(&str, &str)]) -> Variables {
        Variables::expanded(
            app.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect(),
            [("web".to_string(), component.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())],
        )
    }

    #[test]
    fn component_sees_its_templates_expanded() {
        let v = vars(&[("host", Some("api.test"))], &[("url", "https://{{ host }}/v1"), ("plain", "x")]);
        assert_eq!(v.get("web", "url").unwrap(), "https://api.test/v1");
        assert_eq!(v.get("web", "plain").unwrap(), "x");
    }

    #[test]
    fn app_variables_are_not_visible_without_a_component_variable() {
        let v = vars(&[("secret_key", Some("s3cr3t"))], &[]);
        assert!(matches!(v.get("web", "secret_key"), Err(VariableError::Undefined(_))));
        assert!(matches!(v.get("other", "secret_key"), Err(VariableError::Undefined(_))));
    }

    #[test]
    fn invalid_names_are_rejected() {
        let v = vars(&[], &[]);
        for bad in ["Upper", "1x", "a-b", "a__b", "a_", ""] {
            assert!(matches!(v.get("web", bad), Err(VariableError::InvalidName(_))), "{bad}");
        }
    }

    #[test]
    fn template_over_a_valueless_app_variable_is_undefined() {
        let v = vars(&[("host", None)], &[("url", "{{ host }}")]);
        assert!(matches!(v.get("web", "url"), Err(VariableError::Undefined(m)) if m.contains("host")));
        assert!(v.all("web").is_empty());
    }
}
