//! Configuration: file format -> typed config, parsed once. Errors name the file and key path.
//!
//! - `file`: the YAML format, each value typed at the serde boundary (`values`, `connstr`);
//! - `check`: what serde cannot check, and the split into [`ProcessConfig`] (upgrade-only) and
//!   [`ServiceConfig`] (reloadable), both in `typed`; `bounds`: the range of every number and
//!   duration, so nothing `-t` accepts can overflow, abort or panic at run time;
//! - `read`, `nesting`: bounded file reads and YAML nesting, checked before parsing.
//!
//! Depends on `signalr` (the rule names) only; everything above reads the typed config.

pub mod bounds;
mod check;
mod connstr;
mod file;
mod limits;
mod nesting;
pub mod read;
mod typed;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};

pub use check::{check_pool, endpoint_spec};
pub use connstr::ConnectionString;
pub use file::*;
pub use limits::{ClientLimits, Limits, DEFAULT_LISTENER_CONNECTIONS};
pub use nesting::MAX_NESTING;
pub use read::{read_bounded, MAX_CONFIG_BYTES, MAX_PEM_BYTES};
pub use typed::*;
pub use values::{AbsPath, Address, EndpointUrl, EnvName, HostName, Method, StripPrefix};

/// A configuration error: the file, the key path inside it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// Dotted key path such as `pools.signalr.endpoints[1].url` (empty for the whole file).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.path,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// A key path plus message, before the file name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    /// Dotted key path.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl PathError {
    /// Builds an error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        PathError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Attaches the file name.
    pub fn in_file(self, file: &Path) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            path: self.path,
            message: self.message,
        }
    }
}

/// Reads, parses and validates a configuration file (a regular file of at most
/// [`MAX_CONFIG_BYTES`]).
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let whole = |message: String| ConfigError {
        file: file.to_path_buf(),
        path: String::new(),
        message,
    };
    let bytes = read_bounded(file, MAX_CONFIG_BYTES).map_err(whole)?;
    let text = String::from_utf8(bytes).map_err(|e| whole(format!("not UTF-8: {e}")))?;
    parse_str(&text).map_err(|e| e.in_file(file))
}

/// Parses and validates configuration text. Text over [`MAX_CONFIG_BYTES`] or nested deeper
/// than [`MAX_NESTING`] is refused before the YAML parser sees it (its cost grows with depth).
pub fn parse_str(text: &str) -> Result<Config, PathError> {
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(PathError::new(
            "",
            format!("larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    nesting::check(text, MAX_NESTING).map_err(|m| PathError::new("", m))?;
    let de = serde_yaml::Deserializer::from_str(text);
    let file: File = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        // serde_yaml prefixes nested errors with its own (shorter) path: keep one path only.
        let message = match message.split_once(": ") {
            Some((p, rest)) if !p.contains(' ') && path.starts_with(p) => rest.to_string(),
            _ => message,
        };
        PathError::new(path, message)
    })?;
    check::check(file)
}

#[cfg(test)]
mod tests;
