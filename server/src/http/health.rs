//! Liveness, readiness and metrics.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::app::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.shutdown.is_cancelled() {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "shutting_down"}));
    }
    let redis = match &state.cluster {
        Some(bus) => Some(if bus.ping().await { "ok" } else { "down" }),
        None => None,
    };
    match state.registry.storage().ping().await {
        // Without Redis a node still serves its own clients: degraded, not unavailable.
        Ok(()) if redis == Some("down") => {
            HttpResponse::Ok().json(json!({"status": "degraded", "store": "ok", "redis": "down"}))
        }
        Ok(()) => {
            HttpResponse::Ok().json(json!({"status": "ready", "store": "ok", "redis": redis}))
        }
        Err(err) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "store": err.to_string()})),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
