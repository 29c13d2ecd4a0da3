//! Configuration errors that say where: file, line and column.

use std::fmt;

/// One problem in a configuration file (or a warning about one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<embedded quickstart>` style name) the problem is in.
    pub file: String,
    /// 1-based line; 0 when the problem has no position (the file could not be read).
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl ConfigError {
    /// A problem at a position.
    pub fn at(file: &str, (line, column): (u64, u64), message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// Every problem found in a configuration, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
