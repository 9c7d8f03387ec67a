//! `GET /v2/catalog`, with an ETag so platforms can skip unchanged catalogs.

use crate::http::{OsbRequest, OsbResponse};

use super::Broker;

impl Broker<'_> {
    pub(super) fn catalog_endpoint(&self, request: &OsbRequest) -> OsbResponse {
        let etag = self.catalog.etag();
        let matches = request.header("if-none-match").is_some_and(|header| {
            header
                .split(',')
                .map(str::trim)
                .any(|tag| tag == etag || tag == "*" || tag.trim_start_matches("W/") == etag)
        });
        if matches {
            return OsbResponse {
                status: 304,
                headers: vec![("ETag".into(), etag.to_string())],
                body: None,
            };
        }
        OsbResponse::json(200, self.catalog.to_osb_json()).with_header("ETag", etag)
    }
}
