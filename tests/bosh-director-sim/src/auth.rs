//! Who is calling (contract A.2): basic credentials in basic mode, UAA
//! bearer tokens in UAA mode, plus the UAA token endpoint itself.
//!
//! Tokens are JWT-shaped (`header.claims.signature`, base64url) so they look
//! like what UAA issues, but nothing verifies a signature: the simulator
//! remembers every token it issued with its expiry, and a token is valid
//! exactly while it is remembered and unexpired. `Simulator::expire_tokens`
//! ends them all at once.

use std::time::Instant;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;

use crate::config::AuthConfig;
use crate::http::{parse_form, Req, Resp, JSON};
use crate::ids;
use crate::model::AuthKind;
use crate::state::{SimState, TokenRecord};

/// The outcome of reading the `Authorization` header.
pub(crate) struct Identity {
    pub kind: AuthKind,
    /// The authenticated user (basic user name, or the UAA client id).
    pub user: Option<String>,
}

/// Split `Authorization` into a lower-cased scheme and its credentials.
fn scheme_and_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    Some((scheme.to_ascii_lowercase(), rest.trim().to_string()))
}

/// Decode `base64(user:password)`.
pub(crate) fn decode_basic(credentials: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(credentials.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The kind of credentials a request carries, valid or not.
pub(crate) fn kind(headers: &HeaderMap) -> AuthKind {
    match scheme_and_credentials(headers) {
        None => AuthKind::None,
        Some((scheme, _)) if scheme == "basic" => AuthKind::Basic,
        Some((scheme, _)) if scheme == "bearer" => AuthKind::Bearer,
        Some(_) => AuthKind::Other,
    }
}

pub(crate) fn identify(config: &AuthConfig, st: &SimState, headers: &HeaderMap) -> Identity {
    let Some((scheme, credentials)) = scheme_and_credentials(headers) else {
        return Identity {
            kind: AuthKind::None,
            user: None,
        };
    };
    match scheme.as_str() {
        "basic" => Identity {
            kind: AuthKind::Basic,
            user: match (config, decode_basic(&credentials)) {
                (AuthConfig::Basic { user, password }, Some((u, p)))
                    if u == *user && p == *password =>
                {
                    Some(u)
                }
                _ => None,
            },
        },
        "bearer" => Identity {
            kind: AuthKind::Bearer,
            user: match config {
                AuthConfig::Uaa { .. } => st
                    .tokens
                    .get(&credentials)
                    .filter(|t| t.expires_at > Instant::now())
                    .map(|t| t.client_id.clone()),
                AuthConfig::Basic { .. } => None,
            },
        },
        _ => Identity {
            kind: AuthKind::Other,
            user: None,
        },
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Resp {
    Resp::json(
        status,
        "application/json;charset=UTF-8",
        &json!({"error": error, "error_description": description}),
    )
}

/// `POST /uaa/oauth/token` with `grant_type=client_credentials`; the client
/// authenticates with basic auth (or `client_id`/`client_secret` in the
/// form, which UAA also accepts).
pub(crate) fn token_endpoint(config: &AuthConfig, st: &mut SimState, req: &Req) -> Resp {
    let AuthConfig::Uaa {
        client_id,
        client_secret,
        token_ttl,
    } = config
    else {
        return Resp::endpoint_not_found(&req.path);
    };
    if req.path.trim_end_matches('/') != "/uaa/oauth/token" {
        return oauth_error(StatusCode::NOT_FOUND, "not_found", "Not Found");
    }
    if req.method != Method::POST {
        return oauth_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("Request method '{}' is not supported", req.method),
        );
    }
    let mut form = parse_form(&String::from_utf8_lossy(&req.body));
    form.extend(req.query.iter().cloned());
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let presented = match scheme_and_credentials(&req.headers) {
        Some((scheme, creds)) if scheme == "basic" => decode_basic(&creds),
        _ => field("client_id").zip(field("client_secret")),
    };
    match presented {
        Some((id, secret)) if id == *client_id && secret == *client_secret => {}
        _ => {
            return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials")
                .with_header(
                    "www-authenticate",
                    "Basic realm=\"UAA/client\", error=\"unauthorized\", error_description=\"Bad credentials\"".to_string(),
                )
        }
    }
    match field("grant_type").as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Unsupported grant type: {other}"),
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "A grant type must be provided",
            )
        }
    }
    let now = Instant::now();
    let expires_at = now + *token_ttl;
    let jti = ids::hex(&ids::random_bytes::<16>());
    let iat = st.clock.epoch_secs(now);
    let exp = st.clock.epoch_secs(expires_at);
    let header = json!({"alg": "RS256", "kid": "bosh-director-sim", "typ": "JWT"});
    let claims = json!({
        "jti": jti, "sub": client_id, "client_id": client_id, "cid": client_id,
        "authorities": ["bosh.admin"], "scope": ["bosh.admin"],
        "grant_type": "client_credentials", "iat": iat, "exp": exp,
        "iss": "bosh-director-simulator/uaa/oauth/token", "aud": ["bosh"],
    });
    let token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(ids::random_bytes::<32>())
    );
    st.tokens.insert(
        token.clone(),
        TokenRecord {
            client_id: client_id.clone(),
            expires_at,
        },
    );
    st.token_grants += 1;
    Resp::json(
        StatusCode::OK,
        &format!("{JSON};charset=UTF-8"),
        &json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": token_ttl.as_secs(),
            "scope": "bosh.admin",
            "jti": jti,
        }),
    )
    .with_header("cache-control", "no-store".to_string())
    .with_header("pragma", "no-cache".to_string())
}
