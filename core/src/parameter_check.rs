//! Where request parameters are checked against a plan's JSON Schema.
//!
//! Compiling a JSON Schema needs a full validator (regex engines, format checkers, the
//! meta-schemas): about 2 MB of WebAssembly, twice the rest of the provision component.
//! Most requests send no parameters, and the catalog compiler already recorded what each
//! schema says about `{}`, so the endpoint components do not carry the validator: they ask
//! the private `osb-parameters` component over Spin's local service chaining
//! ([`ChainedChecker`]) only when a request has parameters to check. Native tests and tools
//! check in process ([`InProcessChecker`]); both go through [`ParameterChecker`] so the
//! broker cannot tell them apart, and [`serve_parameter_check`] is the other end of the
//! chain, in the same crate as the client so the two cannot drift apart.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::OsbError;
use crate::http::{OsbRequest, OsbResponse};
use crate::outbound::{HttpClient, HttpRequest, LocalFuture};
use crate::schema::{ParameterSchema, SchemaError, SchemaViolation};

/// The component id of the checker in `spin.toml`.
pub const COMPONENT_ID: &str = "osb-parameters";

/// Where [`ChainedChecker`] sends its requests (Spin service chaining; the calling
/// component lists it in `allowed_outbound_hosts`).
pub const CHAINED_URL: &str = "http://osb-parameters.spin.internal/check";

/// Why parameters could not be checked at all (as opposed to being invalid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The plan's schema does not compile: the catalog compiler lets no such schema through,
    /// so this is a broken deployment, not a bad request.
    #[error("the parameters schema does not compile: {0}")]
    Schema(#[from] SchemaError),
    /// The checker could not be reached or answered something unexpected.
    #[error("the parameter checker is unavailable: {0}")]
    Unavailable(String),
}

/// Checks `parameters` against `schema`: the violations (empty when valid), up to
/// [`crate::schema::MAX_VIOLATIONS`].
pub trait ParameterChecker {
    /// See the trait.
    fn check<'a>(
        &'a self,
        schema: &'a Value,
        parameters: &'a Value,
    ) -> LocalFuture<'a, Result<Vec<SchemaViolation>, CheckError>>;
}

/// Compiles and checks in this process (native tests, tools, the `osb-parameters`
/// component itself).
pub struct InProcessChecker;

impl InProcessChecker {
    /// The synchronous check behind [`ParameterChecker::check`].
    pub fn check_now(
        schema: &Value,
        parameters: &Value,
    ) -> Result<Vec<SchemaViolation>, CheckError> {
        let compiled = ParameterSchema::compile(schema)?;
        Ok(compiled.validate(parameters).err().unwrap_or_default())
    }
}

impl ParameterChecker for InProcessChecker {
    fn check<'a>(
        &'a self,
        schema: &'a Value,
        parameters: &'a Value,
    ) -> LocalFuture<'a, Result<Vec<SchemaViolation>, CheckError>> {
        Box::pin(async move { Self::check_now(schema, parameters) })
    }
}

/// Asks the `osb-parameters` component over outbound HTTP (Spin service chaining).
pub struct ChainedChecker<'a> {
    http: &'a dyn HttpClient,
}

impl<'a> ChainedChecker<'a> {
    /// A checker that sends through `http` to [`CHAINED_URL`].
    pub fn new(http: &'a dyn HttpClient) -> Self {
        Self { http }
    }
}

/// What the calling component sends.
#[derive(Debug, Serialize, Deserialize)]
struct CheckRequest<'a> {
    #[serde(borrow)]
    schema: std::borrow::Cow<'a, Value>,
    #[serde(borrow)]
    parameters: std::borrow::Cow<'a, Value>,
}

/// What `osb-parameters` answers with status 200.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CheckAnswer {
    /// The schema compiled; these are the violations (none when valid).
    Violations(Vec<SchemaViolation>),
    /// The schema did not compile.
    SchemaError(String),
}

impl ParameterChecker for ChainedChecker<'_> {
    fn check<'a>(
        &'a self,
        schema: &'a Value,
        parameters: &'a Value,
    ) -> LocalFuture<'a, Result<Vec<SchemaViolation>, CheckError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&CheckRequest {
                schema: std::borrow::Cow::Borrowed(schema),
                parameters: std::borrow::Cow::Borrowed(parameters),
            })
            .map_err(|e| CheckError::Unavailable(e.to_string()))?;
            let response = self
                .http
                .send(HttpRequest::new("POST", CHAINED_URL).body("application/json", body))
                .await
                .map_err(|e| CheckError::Unavailable(format!("{CHAINED_URL}: {e}")))?;
            if response.status != 200 {
                return Err(CheckError::Unavailable(format!(
                    "{CHAINED_URL} answered {}: {}",
                    response.status,
                    response.text().chars().take(300).collect::<String>()
                )));
            }
            match serde_json::from_slice::<CheckAnswer>(&response.body) {
                Ok(CheckAnswer::Violations(violations)) => Ok(violations),
                Ok(CheckAnswer::SchemaError(message)) => {
                    Err(CheckError::Schema(SchemaError::new(message)))
                }
                Err(e) => Err(CheckError::Unavailable(format!(
                    "{CHAINED_URL} answered an unreadable body: {e}"
                ))),
            }
        })
    }
}

/// The `osb-parameters` component: `POST /check` with `{"schema", "parameters"}`, answered
/// `{"violations": [...]}` or `{"schema_error": "..."}`. It has no public route; only
/// components that list it in `allowed_outbound_hosts` reach it.
pub fn serve_parameter_check(request: &OsbRequest) -> OsbResponse {
    if request.method != "POST" {
        return OsbError::method_not_allowed(
            format!(
                "{} {}: the parameter checker takes POST /check",
                request.method, request.path
            ),
            &["POST"],
        )
        .into();
    }
    let check: CheckRequest<'_> = match serde_json::from_slice(&request.body) {
        Ok(check) => check,
        Err(e) => {
            return OsbError::bad_request(format!("the check request is not valid JSON: {e}"))
                .into()
        }
    };
    let answer = match InProcessChecker::check_now(&check.schema, &check.parameters) {
        Ok(violations) => CheckAnswer::Violations(violations),
        Err(CheckError::Schema(e)) => CheckAnswer::SchemaError(e.to_string()),
        Err(CheckError::Unavailable(e)) => CheckAnswer::SchemaError(e),
    };
    match serde_json::to_value(&answer) {
        Ok(body) => OsbResponse::json(200, body),
        Err(e) => OsbError::internal(format!("cannot encode the check answer: {e}")).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::{HttpResponse, TransportError};
    use serde_json::json;

    /// Routes the chained checker's requests to [`serve_parameter_check`], as Spin would.
    struct Chain;

    impl HttpClient for Chain {
        fn send(
            &self,
            request: HttpRequest,
        ) -> LocalFuture<'_, Result<HttpResponse, TransportError>> {
            Box::pin(async move {
                assert_eq!(request.url, CHAINED_URL);
                let response = serve_parameter_check(&OsbRequest {
                    method: request.method,
                    path: "/check".into(),
                    query: Vec::new(),
                    headers: request.headers,
                    body: request.body,
                });
                Ok(HttpResponse {
                    status: response.status,
                    headers: Vec::new(),
                    body: response.body_bytes().unwrap_or_default(),
                })
            })
        }
    }

    fn schema() -> Value {
        json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object",
            "properties": { "size": { "type": "integer", "maximum": 3 } }
        })
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
    }

    #[test]
    fn the_chain_answers_exactly_what_the_process_would() {
        let chained = ChainedChecker::new(&Chain);
        for parameters in [
            json!({ "size": 5 }),
            json!({ "size": 2 }),
            json!({ "size": "x" }),
        ] {
            assert_eq!(
                block_on(chained.check(&schema(), &parameters)),
                block_on(InProcessChecker.check(&schema(), &parameters)),
            );
        }
        let violations = block_on(chained.check(&schema(), &json!({ "size": 5 }))).unwrap();
        assert_eq!(
            violations[0].to_string(),
            "parameters.size: 5 is greater than the maximum of 3"
        );
    }

    #[test]
    fn a_schema_that_does_not_compile_is_a_schema_error_across_the_chain() {
        let broken =
            json!({ "$schema": "http://json-schema.org/draft-04/schema#", "type": "strin" });
        let error = block_on(ChainedChecker::new(&Chain).check(&broken, &json!({}))).unwrap_err();
        assert!(matches!(error, CheckError::Schema(_)), "{error}");
        assert!(error.to_string().contains("strin"), "{error}");
    }

    #[test]
    fn an_unreachable_checker_is_unavailable_not_valid() {
        let error = block_on(
            ChainedChecker::new(&crate::outbound::NoHttp).check(&schema(), &json!({ "size": 1 })),
        )
        .unwrap_err();
        assert!(matches!(error, CheckError::Unavailable(_)), "{error}");
    }

    #[test]
    fn bad_requests_to_the_checker_are_osb_errors() {
        let get = serve_parameter_check(&OsbRequest {
            method: "GET".into(),
            path: "/check".into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
        });
        assert_eq!(get.status, 405);
        let garbage = serve_parameter_check(&OsbRequest {
            method: "POST".into(),
            path: "/check".into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: b"{".to_vec(),
        });
        assert_eq!(garbage.status, 400);
    }
}
