//! Validated database names.
//!
//! A name is used as a directory name in the data dir and as a gossip value, so it is
//! restricted to `[A-Za-z_][A-Za-z0-9_]{0,63}`: safe on every filesystem, never a path
//! separator, never a comma (the gossip list separator).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted database name, in bytes.
pub const MAX_DATABASE_NAME_LEN: usize = 64;

/// A database name that passed validation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatabaseName(String);

/// Why a string is not a database name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseNameError {
    #[error("database name is empty")]
    Empty,
    #[error("database name {name:?} is longer than {MAX_DATABASE_NAME_LEN} characters")]
    TooLong { name: String },
    #[error("database name {name:?} must start with a letter or '_'")]
    BadFirstChar { name: String },
    #[error("database name {name:?} contains {bad:?}; only letters, digits and '_' are allowed")]
    BadChar { name: String, bad: char },
}

impl DatabaseName {
    /// Validates `name` against `[A-Za-z_][A-Za-z0-9_]{0,63}`.
    pub fn new(name: &str) -> Result<Self, DatabaseNameError> {
        let mut chars = name.chars();
        let first = chars.next().ok_or(DatabaseNameError::Empty)?;
        if !(first.is_ascii_alphabetic() || first == '_') {
            return Err(DatabaseNameError::BadFirstChar {
                name: name.to_string(),
            });
        }
        if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
            return Err(DatabaseNameError::BadChar {
                name: name.to_string(),
                bad,
            });
        }
        if name.len() > MAX_DATABASE_NAME_LEN {
            return Err(DatabaseNameError::TooLong {
                name: name.to_string(),
            });
        }
        Ok(DatabaseName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatabaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DatabaseName {
    type Error = DatabaseNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        DatabaseName::new(&value)
    }
}

impl From<DatabaseName> for String {
    fn from(name: DatabaseName) -> String {
        name.0
    }
}

impl std::str::FromStr for DatabaseName {
    type Err = DatabaseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatabaseName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for name in ["log1", "_x", "A_b_9", &"a".repeat(64)] {
            assert_eq!(DatabaseName::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn rejects_invalid_names() {
        assert_eq!(DatabaseName::new(""), Err(DatabaseNameError::Empty));
        assert!(matches!(
            DatabaseName::new("1abc"),
            Err(DatabaseNameError::BadFirstChar { .. })
        ));
        assert!(matches!(
            DatabaseName::new("a-b"),
            Err(DatabaseNameError::BadChar { bad: '-', .. })
        ));
        assert!(matches!(
            DatabaseName::new("../etc"),
            Err(DatabaseNameError::BadFirstChar { .. })
        ));
        assert!(matches!(
            DatabaseName::new(&"a".repeat(65)),
            Err(DatabaseNameError::TooLong { .. })
        ));
        assert!(matches!(
            DatabaseName::new("é"),
            Err(DatabaseNameError::BadFirstChar { .. })
        ));
    }
}
