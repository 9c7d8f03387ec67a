//! Spin's `{{ variable }}` templates, used in component variables and outbound host entries.

use anyhow::{bail, Result};

/// A parsed template: literal text interleaved with variable references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

impl Template {
    /// Parses `text`; `{{` must be closed by `}}` around a variable name.
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("unclosed `{{{{` in {text:?}");
            };
            let name = after[..end].trim();
            crate::manifest::check_snake_id(name)
                .map_err(|e| anyhow::anyhow!("invalid variable reference in {text:?}: {e}"))?;
            parts.push(Part::Variable(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// The variable names referenced.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable(v) => Some(v.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Substitutes variables through `lookup`.
    pub fn render(&self, mut lookup: impl FnMut(&str) -> Result<String>) -> Result<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Variable(v) => out.push_str(&lookup(v)?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_variables_interleave() {
        let t = Template::parse("https://{{ host }}:{{port}}/x").unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), vec!["host", "port"]);
        let out = t
            .render(|v| Ok(if v == "host" { "h".into() } else { "1".into() }))
            .unwrap();
        assert_eq!(out, "https://h:1/x");
    }

    #[test]
    fn unclosed_braces_are_an_error() {
        assert!(Template::parse("{{ x").is_err());
        assert!(Template::parse("{{ Bad-Name }}").is_err());
    }
}
