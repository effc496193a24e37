//! Validation: raw file -> [`Config`], or every problem found (filled in by the config work).
use std::fmt;
use std::path::Path;

use super::Config;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, naming where it is: e.g. `connection 'dc1': local_subnets[0]: ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// The object: `connection 'dc1'`, `security group 'web' rule 2`, `gateway`...
    pub location: String,
    /// The field within it, as written in the file (may be empty).
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.field, self.message)
        }
    }
}

/// A valid configuration and the warnings found on the way.
#[derive(Clone, Debug)]
pub struct Checked {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    /// Every error found (warnings too), in file order.
    #[error("{} problem(s)", .0.len())]
    Invalid(Vec<Problem>),
}

/// Read and validate the file at `path`.
pub fn load(path: &Path) -> Result<Checked, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_str(&text, path)
}

/// Validate `text` as if read from `path` (which anchors relative PSK paths).
pub fn parse_str(_text: &str, _path: &Path) -> Result<Checked, ConfigError> {
    Err(ConfigError::Syntax("not implemented yet".into()))
}
