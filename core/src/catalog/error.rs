//! The one error of catalog loading: every problem found, each on its own line.

use std::fmt;

/// Where a problem is: the file, the field path inside it, and the line and column when the
/// YAML parser knows them (syntax and type errors; checks made after parsing know the path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as the loader named it (e.g. `catalog/services.yaml`), or the directory for
    /// problems with the directory itself.
    pub file: String,
    /// 1-based line and column, when known.
    pub position: Option<(u64, u64)>,
    /// Path to the field, e.g. `services[0].plans[1].id`; empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A catalog that cannot be served, with all its problems rather than the first, so that
/// `spin-osb catalog check` shows everything to fix in one run. `Display` prints one problem
/// per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CatalogError {
    problems: Vec<Problem>,
}

impl CatalogError {
    pub(crate) fn new(problems: Vec<Problem>) -> Self {
        CatalogError { problems }
    }

    /// The problems, in file order and, within a file, in document order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Collects problems for one file while validation walks it.
pub(crate) struct Problems<'a> {
    pub(crate) file: &'a str,
    pub(crate) out: &'a mut Vec<Problem>,
}

impl Problems<'_> {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Problem {
            file: self.file.to_owned(),
            position: None,
            path: path.into(),
            message: message.into(),
        });
    }
}
