//! `GET /v2/catalog`: the compiled body, byte for byte, with an ETag so platforms can skip
//! unchanged catalogs.

use crate::catalog::CatalogDocument;
use crate::http::{Body, OsbRequest, OsbResponse};

/// The answer to `GET /v2/catalog` for `document`: 304 when the platform's `If-None-Match`
/// names its ETag, else the body.
pub fn catalog_response(document: CatalogDocument, request: &OsbRequest) -> OsbResponse {
    let etag = document.etag;
    let matches = request.header("if-none-match").is_some_and(|header| {
        header
            .split(',')
            .map(str::trim)
            .any(|tag| tag == etag || tag == "*" || tag.trim_start_matches("W/") == etag)
    });
    if matches {
        return OsbResponse {
            status: 304,
            headers: vec![("ETag".into(), etag)],
            body: Body::None,
        };
    }
    OsbResponse::raw_json(200, document.body).with_header("ETag", etag)
}
