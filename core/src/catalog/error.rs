//! The one error of catalog loading: every problem found, each on its own line.

use std::fmt;

use serde_json::Value;

use crate::template::{self, Scope};

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

/// Collects problems for one file while validation walks it (backends report theirs here).
pub struct Problems<'a> {
    pub(crate) file: &'a str,
    pub(crate) out: &'a mut Vec<Problem>,
}

impl Problems<'_> {
    /// Records that the field at `path` (`services[0].plans[1].backend.manifest`) is wrong.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Problem {
            file: self.file.to_owned(),
            position: None,
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Checks every string leaf of `value` (a credentials map) as a template of `scope`, each
/// problem at its own path.
pub fn check_template_leaves(
    value: &Value,
    path: &mut String,
    scope: Scope,
    problems: &mut Problems<'_>,
) {
    match value {
        Value::String(source) => {
            if let Err(error) = template::check_template(source, scope) {
                problems.push(path.clone(), format!("invalid template: {error}"));
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                check_template_leaves(item, path, scope, problems);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            // Sorted, so that problems come in the same order whatever map type serde_json
            // was built with (`preserve_order` keeps document order).
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (key, item) in entries {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                check_template_leaves(item, path, scope, problems);
                path.truncate(len);
            }
        }
        _ => {}
    }
}
