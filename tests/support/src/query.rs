//! Query strings for the requests the tests send. Everything but RFC 3986's unreserved
//! characters is percent-encoded, so ids, JSON and odd test values reach the server intact.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Every byte but `A-Z a-z 0-9 - _ . ~`.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` percent-encoded (upper-case hex), e.g. `a b/ü` → `a%20b%2F%C3%BC`.
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// `k1=v1&k2=v2`, each name and value percent-encoded.
pub fn query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_characters_stay_as_they_are() {
        assert_eq!(enc("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(enc("a b/ü+&=%*"), "a%20b%2F%C3%BC%2B%26%3D%25%2A");
        assert_eq!(
            query(&[("op", "kv-set"), ("key", "a b"), ("value", "")]),
            "op=kv-set&key=a%20b&value="
        );
    }
}
