//! Route table.

mod documents;
mod health;
mod ws;

use actix_web::{HttpRequest, error::JsonPayloadError, web};

use crate::error::ApiError;

/// Largest JSON request body accepted by the REST API.
const MAX_JSON_BODY: usize = 64 * 1024;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_JSON_BODY)
            .error_handler(json_error),
    )
    .app_data(
        web::QueryConfig::default().error_handler(|err, _| {
            ApiError::invalid(format!("invalid query string: {err}")).into()
        }),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::invalid(format!("invalid path: {err}")).into()),
    )
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(health::metrics))
    .route("/ws/{room}", web::get().to(ws::connect))
    .service(
        web::scope("/api/rooms/{room}")
            .route("/document", web::get().to(documents::document))
            .route("/versions", web::get().to(documents::list_versions))
            .route("/versions", web::post().to(documents::create_version))
            .route("/versions/{id}", web::get().to(documents::get_version))
            .route(
                "/versions/{id}/restore",
                web::post().to(documents::restore_version),
            ),
    )
    .default_service(web::to(|| async {
        Err::<actix_web::HttpResponse, _>(ApiError::not_found("no such route"))
    }));
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("JSON body larger than {MAX_JSON_BODY} bytes"),
            )
        }
        JsonPayloadError::ContentType => {
            ApiError::invalid("expected Content-Type: application/json")
        }
        other => ApiError::invalid(format!("invalid JSON body: {other}")),
    };
    api.into()
}
