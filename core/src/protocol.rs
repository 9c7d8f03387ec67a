//! The OSB request headers: API version, basic auth, originating and request identity.
//!
//! The gateway checks these once per request before any endpoint component runs.

use base64::Engine as _;
use serde_json::Value;
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

/// Checks HTTP basic auth against the configured credentials in constant time.
///
/// Both the username and the password are compared without early exit, so timing does not
/// reveal which one (or how much of either) was right.
pub fn check_basic_auth(
    header: Option<&str>,
    username: &str,
    password: &str,
) -> Result<(), OsbError> {
    let decoded = header
        .and_then(|h| {
            h.trim()
                .strip_prefix("Basic ")
                .or_else(|| h.trim().strip_prefix("basic "))
        })
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some(decoded) = decoded else {
        return Err(OsbError::unauthorized());
    };
    let (user, pass) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    let user_ok = user.as_bytes().ct_eq(username.as_bytes());
    let pass_ok = pass.as_bytes().ct_eq(password.as_bytes());
    if bool::from(user_ok & pass_ok) {
        Ok(())
    } else {
        Err(OsbError::unauthorized())
    }
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

    #[test]
    fn basic_auth_accepts_only_the_exact_pair() {
        let header = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(check_basic_auth(Some(&header("admin:secret")), "admin", "secret").is_ok());
        assert_eq!(
            check_basic_auth(Some(&header("admin:wrong")), "admin", "secret")
                .unwrap_err()
                .status,
            401
        );
        assert!(check_basic_auth(Some(&header("admin:secretx")), "admin", "secret").is_err());
        assert!(check_basic_auth(Some(&header("admin")), "admin", "secret").is_err());
        assert!(check_basic_auth(None, "admin", "secret").is_err());
        assert!(check_basic_auth(Some("Bearer x"), "admin", "secret").is_err());
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
