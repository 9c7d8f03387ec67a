//! Manifest mode: a multi-document YAML template whose interpolated values are spliced
//! into the parsed tree as data, never re-parsed as YAML (see the module documentation of
//! [`crate::template`]).

use minijinja::value::ValueKind;
use minijinja::{ErrorKind, Output, State};
use serde_json::Value;

use super::environment::{describe, manifest_env};
use super::{TemplateContext, TemplateError};

/// Start and end of a manifest placeholder: private-use characters, valid inside any YAML
/// scalar, never produced by YAML syntax, and refused in template sources.
const MARK_START: char = '\u{E000}';
const MARK_END: char = '\u{E001}';

/// Renders a multi-document YAML template (a manifest) into its documents, with every
/// interpolated value inserted as data (see the module documentation). Documents that render
/// empty (e.g. wrapped in a false `{% if %}`) are dropped.
pub fn render_yaml_documents(
    source: &str,
    ctx: &TemplateContext,
) -> Result<Vec<Value>, TemplateError> {
    refuse_marks(source)?;
    let template = manifest_env()
        .template_from_str(source)
        .map_err(|e| describe(&e))?;
    let captured = template
        .render_captured(ctx.to_value())
        .map_err(|e| describe(&e))?;
    let values: Vec<minijinja::Value> = captured
        .state()
        .get_extension::<Placeholders>()
        .map(|p| p.0.clone())
        .unwrap_or_default();
    let text = captured.into_output();
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(&text, options)
        .map_err(|e| TemplateError::new(format!("rendered manifest is not valid YAML: {e}")))?;
    let splicer = Splicer { values: &values };
    documents
        .into_iter()
        .filter(|doc| !doc.is_null())
        .map(|doc| splicer.value(doc))
        .collect()
}

pub(super) fn refuse_marks(source: &str) -> Result<(), TemplateError> {
    if source.contains([MARK_START, MARK_END]) {
        return Err(TemplateError::new(
            "template contains the reserved characters U+E000/U+E001",
        ));
    }
    Ok(())
}

/// The values written as placeholders during one manifest render, in order.
#[derive(Default)]
struct Placeholders(Vec<minijinja::Value>);

/// Formatter of the manifest mode: literals for numbers, booleans and none; a placeholder
/// for anything that could carry YAML syntax.
pub(super) fn manifest_formatter(
    out: &mut Output,
    state: &mut State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    let literal = match value.kind() {
        ValueKind::Undefined => {
            return Err(minijinja::Error::new(
                ErrorKind::UndefinedError,
                "undefined value in output",
            ))
        }
        ValueKind::None => Some("null".to_owned()),
        ValueKind::Bool => Some(value.is_true().to_string()),
        ValueKind::Number => match f64::try_from(value.clone()) {
            Ok(number) if !number.is_finite() => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "cannot write a non-finite number into a manifest",
                ))
            }
            _ => Some(value.to_string()),
        },
        _ => None,
    };
    let text = match literal {
        Some(text) => text,
        None => {
            let placeholders = state.get_or_insert_extension(Placeholders::default());
            placeholders.0.push(value.clone());
            format!("{MARK_START}{}{MARK_END}", placeholders.0.len() - 1)
        }
    };
    out.write_str(&text)
        .map_err(|e| minijinja::Error::new(ErrorKind::WriteFailure, e.to_string()))
}

/// Replaces placeholders in a parsed manifest by their values.
struct Splicer<'a> {
    values: &'a [minijinja::Value],
}

enum Piece<'s> {
    Text(&'s str),
    Value(usize),
}

impl Splicer<'_> {
    fn value(&self, value: Value) -> Result<Value, TemplateError> {
        Ok(match value {
            Value::String(s) => self.string(&s)?,
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|v| self.value(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (key, item) in map {
                    let key = self.text(&key)?;
                    if out.contains_key(&key) {
                        return Err(TemplateError::new(format!(
                            "rendered manifest has the key `{key}` twice in one mapping"
                        )));
                    }
                    out.insert(key, self.value(item)?);
                }
                Value::Object(out)
            }
            other => other,
        })
    }

    /// A whole-scalar placeholder becomes the value with its type; otherwise text.
    fn string(&self, s: &str) -> Result<Value, TemplateError> {
        let pieces = self.pieces(s);
        if let [Piece::Value(index)] = pieces.as_slice() {
            return serde_json::to_value(&self.values[*index]).map_err(|e| {
                TemplateError::new(format!("a value cannot be written into a manifest: {e}"))
            });
        }
        self.join(&pieces).map(Value::String)
    }

    fn text(&self, s: &str) -> Result<String, TemplateError> {
        self.join(&self.pieces(s))
    }

    fn join(&self, pieces: &[Piece<'_>]) -> Result<String, TemplateError> {
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Value(index) => {
                    let value = &self.values[*index];
                    match value.as_str() {
                        Some(text) => out.push_str(text),
                        None => out.push_str(&serde_json::to_string(value).map_err(|e| {
                            TemplateError::new(format!(
                                "a value cannot be written into a manifest: {e}"
                            ))
                        })?),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Splits `s` at well-formed placeholders whose index exists; anything else is text.
    fn pieces<'s>(&self, s: &'s str) -> Vec<Piece<'s>> {
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find(MARK_START) {
            let after = &rest[start + MARK_START.len_utf8()..];
            let Some(end) = after.find(MARK_END) else {
                break;
            };
            match after[..end].parse::<usize>() {
                Ok(index) if index < self.values.len() => {
                    if start > 0 {
                        pieces.push(Piece::Text(&rest[..start]));
                    }
                    pieces.push(Piece::Value(index));
                }
                _ => pieces.push(Piece::Text(
                    &rest[..start + MARK_START.len_utf8() + end + MARK_END.len_utf8()],
                )),
            }
            rest = &after[end + MARK_END.len_utf8()..];
        }
        if !rest.is_empty() || pieces.is_empty() {
            pieces.push(Piece::Text(rest));
        }
        pieces
    }
}
