//! The OSB request headers: API version, basic auth, originating and request identity.
//!
//! The gateway checks these once per request before any endpoint component runs.

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::error::OsbError;

/// Oldest `X-Broker-API-Version` accepted (Cloud Foundry still sends 2.15; 2.13 added
/// everything this broker's behaviour depends on, such as `maintenance_info`).
pub const MIN_MINOR: u32 = 13;
/// Newest version implemented.
pub const MAX_MINOR: u32 = 17;

/// A supported `X-Broker-API-Version` (`2.MINOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    /// Minor version; the major is always 2.
    pub minor: u32,
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "2.{}", self.minor)
    }
}

/// Checks `X-Broker-API-Version`; a missing or unsupported value is a 412 naming the range.
pub fn check_api_version(header: Option<&str>) -> Result<ApiVersion, OsbError> {
    let supported =
        format!("this broker supports X-Broker-API-Version 2.{MIN_MINOR} to 2.{MAX_MINOR}");
    let Some(value) = header.map(str::trim).filter(|v| !v.is_empty()) else {
        return Err(OsbError::precondition_failed(format!(
            "missing X-Broker-API-Version header: {supported}"
        )));
    };
    let parsed = value
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)));
    match parsed {
        Some((2, minor)) if (MIN_MINOR..=MAX_MINOR).contains(&minor) => Ok(ApiVersion { minor }),
        _ => Err(OsbError::precondition_failed(format!(
            "unsupported X-Broker-API-Version {value:?}: {supported}"
        ))),
    }
}

/// The shortest `broker_password` the broker serves with: an empty or very short password
/// would let anyone in (`curl -u broker: ...`) or fall to guessing.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Checks HTTP basic auth against the configured credentials in constant time.
///
/// The scheme name is case-insensitive (RFC 7617) and the decoded value must hold a `:`
/// (no colon is not "an empty password"). Both parts are compared as SHA-256 digests, so
/// the comparison takes the same time whatever was sent: timing reveals neither which part
/// was right nor how long the configured values are. A configured password shorter than
/// [`MIN_PASSWORD_CHARS`] admits no one (500, naming the variable to set).
pub fn check_basic_auth(
    header: Option<&str>,
    username: &str,
    password: &str,
) -> Result<(), OsbError> {
    check_credentials(header, username, password, "broker_password")
}

/// [`check_basic_auth`] against the credentials whose password is the Spin variable
/// `variable` (named in the message when it is too short).
pub fn check_credentials(
    header: Option<&str>,
    username: &str,
    password: &str,
    variable: &str,
) -> Result<(), OsbError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(OsbError::internal(format!(
            "the password (variable {variable}) is empty or shorter than \
             {MIN_PASSWORD_CHARS} characters; no one is admitted until it is set"
        )));
    }
    let Some((user, pass)) = header.and_then(basic_credentials) else {
        return Err(OsbError::unauthorized());
    };
    let digest = |s: &str| sha2::Sha256::digest(s.as_bytes());
    let user_ok = digest(&user).ct_eq(&digest(username));
    let pass_ok = digest(&pass).ct_eq(&digest(password));
    if bool::from(user_ok & pass_ok) {
        Ok(())
    } else {
        Err(OsbError::unauthorized())
    }
}

/// `Basic BASE64(user:password)` → `(user, password)`; `None` for any other scheme or shape.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let decoded = String::from_utf8(bytes).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// `X-Broker-API-Originating-Identity: PLATFORM BASE64(JSON)`, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginatingIdentity {
    /// `cloudfoundry`, `kubernetes` or another platform name.
    pub platform: String,
    /// The decoded JSON object.
    pub value: Value,
}

impl OriginatingIdentity {
    /// Parses the header; a malformed value is a 400 (the spec fixes the format).
    pub fn parse(header: &str) -> Result<Self, OsbError> {
        let malformed = |why: &str| {
            OsbError::bad_request(format!(
                "malformed X-Broker-API-Originating-Identity: {why}"
            ))
        };
        let (platform, encoded) = header
            .trim()
            .split_once(' ')
            .ok_or_else(|| malformed("expected `PLATFORM BASE64-JSON`"))?;
        if platform.is_empty() {
            return Err(malformed("empty platform"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| malformed("value is not base64"))?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|_| malformed("value is not a JSON object"))?;
        if !value.is_object() {
            return Err(malformed("value is not a JSON object"));
        }
        Ok(Self {
            platform: platform.to_string(),
            value,
        })
    }

    /// The user as the profiles define it: Cloud Foundry's `user_id`, Kubernetes' `username`
    /// (with `uid`), or `unknown`. Used for audit logging.
    pub fn user(&self) -> String {
        let field = |name: &str| {
            self.value
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match self.platform.as_str() {
            "cloudfoundry" => field("user_id"),
            "kubernetes" => field("username").map(|u| match field("uid") {
                Some(uid) => format!("{u} (uid {uid})"),
                None => u,
            }),
            _ => field("user_id").or_else(|| field("username")),
        }
        .unwrap_or_else(|| "unknown".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_2_13_to_2_17_are_accepted() {
        for minor in 13..=17 {
            assert_eq!(
                check_api_version(Some(&format!("2.{minor}")))
                    .unwrap()
                    .minor,
                minor
            );
        }
    }

    #[test]
    fn missing_old_new_and_garbage_versions_are_412_naming_the_range() {
        for header in [
            None,
            Some(""),
            Some("2.12"),
            Some("2.18"),
            Some("3.0"),
            Some("two"),
        ] {
            let err = check_api_version(header).unwrap_err();
            assert_eq!(err.status, 412);
            assert!(
                err.description.contains("2.13 to 2.17"),
                "{}",
                err.description
            );
        }
    }

    /// `Basic BASE64(value)`.
    fn basic(value: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }

    #[test]
    fn basic_auth_accepts_only_the_exact_pair() {
        let header = basic;
        let pw = "secret-pw";
        assert!(check_basic_auth(Some(&header("admin:secret-pw")), "admin", pw).is_ok());
        assert_eq!(
            check_basic_auth(Some(&header("admin:wrong")), "admin", pw)
                .unwrap_err()
                .status,
            401
        );
        assert!(check_basic_auth(Some(&header("admin:secret-pwx")), "admin", pw).is_err());
        assert!(check_basic_auth(Some(&header("admin")), "admin", pw).is_err());
        assert!(check_basic_auth(None, "admin", pw).is_err());
        assert!(check_basic_auth(Some("Bearer x"), "admin", pw).is_err());
        // RFC 7617: the scheme name is case-insensitive.
        let token = base64::engine::general_purpose::STANDARD.encode("admin:secret-pw");
        for scheme in ["basic", "BASIC", "bAsIc"] {
            assert!(check_basic_auth(Some(&format!("{scheme} {token}")), "admin", pw).is_ok());
        }
    }

    #[test]
    fn a_value_without_a_colon_is_not_an_empty_password() {
        let header = basic("broker");
        // Even with a password configured as the empty string, which is refused anyway.
        assert_eq!(
            check_basic_auth(Some(&header), "broker", "")
                .unwrap_err()
                .status,
            500
        );
        assert_eq!(
            check_basic_auth(Some(&header), "broker", "long-enough")
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn empty_or_short_configured_passwords_admit_no_one() {
        let enc = basic;
        for password in ["", "short", "7chars!"] {
            let error = check_basic_auth(
                Some(&enc(&format!("broker:{password}"))),
                "broker",
                password,
            )
            .unwrap_err();
            assert_eq!(error.status, 500, "{password:?}");
            assert!(
                error.description.contains("broker_password"),
                "{}",
                error.description
            );
        }
        assert!(check_basic_auth(Some(&enc("broker:8chars!!")), "broker", "8chars!!").is_ok());
    }

    #[test]
    fn originating_identity_profiles_are_understood() {
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cf = OriginatingIdentity::parse(&format!(
            "cloudfoundry {}",
            enc(r#"{"user_id":"683ea748"}"#)
        ))
        .unwrap();
        assert_eq!(cf.user(), "683ea748");
        let k8s = OriginatingIdentity::parse(&format!(
            "kubernetes {}",
            enc(r#"{"username":"duke","uid":"c2d","groups":[]}"#)
        ))
        .unwrap();
        assert_eq!(k8s.user(), "duke (uid c2d)");
        assert_eq!(
            OriginatingIdentity::parse("cloudfoundry %%%")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            OriginatingIdentity::parse("justone").unwrap_err().status,
            400
        );
    }
}
