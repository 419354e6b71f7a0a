//! The OpenAPI document of the REST API, served at `/api/v1/openapi.json`.

/// OpenAPI 3.0 (JSON).
pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_document_parses_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        let paths = doc["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/api/v1/health", &["get"][..]),
            ("/api/v1/validate", &["post"]),
            ("/api/v1/jobs", &["get", "post"]),
            ("/api/v1/jobs/{job}", &["get", "delete"]),
            ("/api/v1/jobs/{job}/stop", &["post"]),
            ("/api/v1/jobs/{job}/cancel", &["post"]),
            ("/api/v1/jobs/{job}/resume", &["post"]),
            ("/metrics", &["get"]),
            ("/api/v1/openapi.json", &["get"]),
            ("/api/v1/catalog", &["get", "post"]),
            ("/api/v1/catalog/{name}", &["delete"]),
            ("/api/v1/jobs/{job}/checkpoints", &["get"]),
            ("/api/v1/jobs/{job}/sinks/{sink}/rows", &["get"]),
        ] {
            for m in methods {
                assert!(paths[path][m].is_object(), "{m} {path} is not documented");
            }
        }
        // Every reference resolves.
        let text = super::DOCUMENT;
        for r in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }
}
