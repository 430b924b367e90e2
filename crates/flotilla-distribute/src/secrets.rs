//! Secret references (`env:VAR`) and where their values come from at delivery time.
//!
//! Configuration holds only the reference; the value is looked up for each delivery, kept in a [`Secret`]
//! whose `Debug` is redacted, and scrubbed from any text a remote server sends back.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where secret values come from. The default, [`ProcessEnv`], reads environment variables; tests and
/// embedders can supply values directly with [`StaticSecrets`].
pub trait SecretSource: Send + Sync {
    /// The value of the variable `name`, if set.
    fn lookup(&self, name: &str) -> Option<String>;
}

/// Reads secrets from the process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl SecretSource for ProcessEnv {
    fn lookup(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Secrets given as a map (variable name → value). `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct StaticSecrets(pub BTreeMap<String, String>);

impl StaticSecrets {
    /// Builds the map from pairs.
    pub fn new<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
}

impl SecretSource for StaticSecrets {
    fn lookup(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl fmt::Debug for StaticSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A reference to a secret, written `env:VAR` in configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRef {
    variable: String,
}

impl SecretRef {
    /// Prefix of a reference in configuration.
    pub const PREFIX: &'static str = "env:";

    /// Parses `env:VAR`; `VAR` must look like an environment variable name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let variable = text.strip_prefix(Self::PREFIX).ok_or_else(|| {
            "secrets must be references like env:VAR, not literal values".to_owned()
        })?;
        let mut chars = variable.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            Ok(Self::named(variable))
        } else {
            Err(format!(
                "{variable:?} is not a valid environment variable name"
            ))
        }
    }

    /// A reference to the variable `variable`.
    pub fn named(variable: &str) -> Self {
        Self {
            variable: variable.to_owned(),
        }
    }

    /// The variable's name.
    pub fn variable(&self) -> &str {
        &self.variable
    }

    /// Looks the value up; `None` when unset or empty.
    pub fn resolve(&self, source: &dyn SecretSource) -> Option<Secret> {
        source
            .lookup(&self.variable)
            .filter(|value| !value.is_empty())
            .map(Secret)
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "env:{}", self.variable)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "env:{}", self.variable)
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A resolved secret value. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Replaces every occurrence of the secrets' values in `text` with `[redacted]`.
pub fn scrub(text: &str, secrets: &[Secret]) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret.expose(), "[redacted]")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_print_without_values() {
        let reference = SecretRef::parse("env:RECEIVER_TOKEN").unwrap();
        assert_eq!(reference.variable(), "RECEIVER_TOKEN");
        let secrets = StaticSecrets::new([("RECEIVER_TOKEN", "hunter2")]);
        let secret = reference.resolve(&secrets).unwrap();
        assert_eq!(secret.expose(), "hunter2");
        let shown = format!("{reference:?} {secret:?} {secrets:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn literal_values_and_bad_names_are_refused() {
        for text in ["hunter2", "env:", "env:1ABC", "env:A-B", "ENV:A"] {
            let err = SecretRef::parse(text).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn empty_values_count_as_missing() {
        let secrets = StaticSecrets::new([("EMPTY", "")]);
        assert!(SecretRef::named("EMPTY").resolve(&secrets).is_none());
        assert!(SecretRef::named("UNSET").resolve(&secrets).is_none());
    }

    #[test]
    fn scrub_removes_every_occurrence() {
        let secrets = [Secret("tok".into())];
        assert_eq!(scrub("a tok b tok", &secrets), "a [redacted] b [redacted]");
    }
}
