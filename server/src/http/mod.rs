//! The HTTP edge: the route table and OpenAPI document, the middleware every response goes
//! through (security headers, CORS, head and body deadlines), the one JSON error shape
//! ([`ApiError`]), the caller extractors and the one extractor of room routes
//! ([`AuthorizedRoom`]), input validation every wing shares ([`input`]), per-client limits,
//! health and metrics endpoints, and the browser client's files. Invariant: every REST failure
//! leaves through [`ApiError`], no handler reads a credential except through [`caller`], and
//! every route under `/api/rooms/{room}` authorizes through [`AuthorizedRoom`]; this wing holds
//! no domain rule and no database or document work of its own.

mod authorized_room;
pub(crate) mod body_deadline;
pub(crate) mod caller;
pub mod error;
pub(crate) mod head_deadline;
mod health;
pub mod input;
pub mod limits;
pub mod web_client;

pub use authorized_room::{
    AuthorizedRoom, BadRequestIfInvalid, Editor, InvalidName, Load, Loaded, MinRole,
    NotFoundIfInvalid, Owner, RoomParam, Session, Unloaded, Viewer,
};
pub use caller::{Caller, RoomScope, SessionUser, bearer_token, existing_room_id, require_role};
pub use error::ApiError;
pub use input::{FieldErrors, check_name, field_error, read_body, validated};
pub use limits::{ClientLimits, ConnectionSlot, LimitError};

use actix_cors::Cors;
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, error::JsonPayloadError, web};
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::accounts::routes as accounts;
use crate::ai::routes as ai;
use crate::collab::{
    activity_routes as activity, comment_routes as comments, document_routes as documents,
    file_routes as files, notification_routes as notifications, webhook_routes as webhooks,
};
use crate::rooms::{
    invite_routes as invites, member_routes as members, room_routes as room,
    share_link_routes as share_links,
};
use crate::sync;

/// Largest JSON request body accepted by the REST API.
const MAX_JSON_BODY: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tandem",
        description = "Real-time collaborative editing server for Yjs documents. Authenticate with `Authorization: Bearer <token>` (an access token, an API key `tdm_…`, or a share token `shr_…`) or `?token=`.",
    ),
    paths(
        accounts::register, accounts::login, accounts::refresh, accounts::logout,
        accounts::change_password, accounts::me,
        accounts::create_api_key, accounts::list_api_keys, accounts::revoke_api_key,
        room::create_room, room::list_rooms, room::get_room, room::rename_room,
        room::delete_room, room::fork_room,
        members::list_members, members::set_member_role, members::remove_member, members::transfer_ownership,
        invites::create_invite, invites::list_invites, invites::revoke_invite, invites::accept_invite,
        share_links::create_share_link, share_links::list_share_links, share_links::revoke_share_link,
        share_links::current_share_link,
        documents::document, documents::list_versions, documents::create_version,
        documents::get_version, documents::restore_version,
        sync::connect,
        ai::chat, ai::list_conversations, ai::get_conversation, ai::regenerate, ai::status,
        ai::accept, ai::reject, ai::undo, ai::usage,
        activity::list_activity, members::add_member,
        comments::list_threads, comments::create_thread, comments::get_thread,
        comments::delete_thread, comments::reply, comments::edit_comment,
        comments::delete_comment, comments::resolve, comments::reopen,
        notifications::list_notifications, notifications::mark_read, notifications::mark_all_read,
        files::list_files, files::create_file, files::download_file, files::upload_file,
        files::rename_file, files::delete_file, files::export_room, room::import_room,
        webhooks::create_webhook, webhooks::list_webhooks, webhooks::delete_webhook,
        webhooks::list_deliveries,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []), ("query_token" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "query_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("token"))),
        );
    }
}

/// The OpenAPI 3 document of the REST API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(openapi())
}

async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(utoipa_redoc::Redoc::new(openapi()).to_html())
}

/// Headers every response carries.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add((
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=()",
        ))
        .add(("Cache-Control", "no-store"))
}

/// CORS for the configured origins (`*` allows any; none allows no cross-origin calls).
pub fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allow_any_method()
        .allowed_headers(["authorization", "content-type"])
        .max_age(3600);
    for origin in origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
        cors = if origin == "*" {
            cors.allow_any_origin()
        } else {
            cors.allowed_origin(origin)
        };
    }
    cors
}

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
    .route("/ws/{room}", web::get().to(sync::connect))
    .route("/api/openapi.json", web::get().to(openapi_json))
    .route("/api/docs", web::get().to(docs))
    .service(
        web::scope("/api/auth")
            .route("/register", web::post().to(accounts::register))
            .route("/login", web::post().to(accounts::login))
            .route("/refresh", web::post().to(accounts::refresh))
            .route("/logout", web::post().to(accounts::logout))
            .route("/password", web::post().to(accounts::change_password)),
    )
    .route("/api/me", web::get().to(accounts::me))
    .route("/api/usage", web::get().to(ai::usage))
    .route("/api/ai/peer", web::get().to(ai::peer_control))
    .route(
        "/api/notifications",
        web::get().to(notifications::list_notifications),
    )
    .route(
        "/api/notifications/read-all",
        web::post().to(notifications::mark_all_read),
    )
    .route(
        "/api/notifications/{id}/read",
        web::post().to(notifications::mark_read),
    )
    .route("/api/api-keys", web::post().to(accounts::create_api_key))
    .route("/api/api-keys", web::get().to(accounts::list_api_keys))
    .route(
        "/api/api-keys/{key_id}",
        web::delete().to(accounts::revoke_api_key),
    )
    .route(
        "/api/invites/{token}/accept",
        web::post().to(invites::accept_invite),
    )
    .route("/api/import", web::post().to(room::import_room))
    .route(
        "/api/share-links/current",
        web::get().to(share_links::current_share_link),
    )
    .route("/api/rooms", web::post().to(room::create_room))
    .route("/api/rooms", web::get().to(room::list_rooms))
    .service(
        web::scope("/api/rooms/{room}")
            .route("", web::get().to(room::get_room))
            .route("", web::patch().to(room::rename_room))
            .route("", web::delete().to(room::delete_room))
            .route("/fork", web::post().to(room::fork_room))
            .route("/members", web::get().to(members::list_members))
            .route("/members", web::post().to(members::add_member))
            .route(
                "/members/{user_id}",
                web::put().to(members::set_member_role),
            )
            .route(
                "/members/{user_id}",
                web::delete().to(members::remove_member),
            )
            .route("/transfer", web::post().to(members::transfer_ownership))
            .route("/invites", web::post().to(invites::create_invite))
            .route("/invites", web::get().to(invites::list_invites))
            .route(
                "/invites/{invite_id}",
                web::delete().to(invites::revoke_invite),
            )
            .route(
                "/share-links",
                web::post().to(share_links::create_share_link),
            )
            .route("/share-links", web::get().to(share_links::list_share_links))
            .route(
                "/share-links/{link_id}",
                web::delete().to(share_links::revoke_share_link),
            )
            .route("/ai/chat", web::post().to(ai::chat))
            .route("/ai/status", web::get().to(ai::status))
            .route("/ai/undo", web::post().to(ai::undo))
            .route("/ai/conversations", web::get().to(ai::list_conversations))
            .route(
                "/ai/conversations/{conversation_id}",
                web::get().to(ai::get_conversation),
            )
            .route(
                "/ai/conversations/{conversation_id}/regenerate",
                web::post().to(ai::regenerate),
            )
            .route(
                "/suggestions/{suggestion_id}/accept",
                web::post().to(ai::accept),
            )
            .route(
                "/suggestions/{suggestion_id}/reject",
                web::post().to(ai::reject),
            )
            .route("/activity", web::get().to(activity::list_activity))
            .route("/comments", web::get().to(comments::list_threads))
            .route("/comments", web::post().to(comments::create_thread))
            .route("/comments/{thread}", web::get().to(comments::get_thread))
            .route(
                "/comments/{thread}",
                web::delete().to(comments::delete_thread),
            )
            .route(
                "/comments/{thread}/replies",
                web::post().to(comments::reply),
            )
            .route(
                "/comments/{thread}/replies/{comment}",
                web::patch().to(comments::edit_comment),
            )
            .route(
                "/comments/{thread}/replies/{comment}",
                web::delete().to(comments::delete_comment),
            )
            .route(
                "/comments/{thread}/resolve",
                web::post().to(comments::resolve),
            )
            .route(
                "/comments/{thread}/reopen",
                web::post().to(comments::reopen),
            )
            .route("/files", web::get().to(files::list_files))
            .route("/files", web::post().to(files::create_file))
            .route("/files/{path:.+}", web::get().to(files::download_file))
            .route("/files/{path:.+}", web::put().to(files::upload_file))
            .route("/files/{path:.+}", web::patch().to(files::rename_file))
            .route("/files/{path:.+}", web::delete().to(files::delete_file))
            .route("/export", web::get().to(files::export_room))
            .route("/webhooks", web::post().to(webhooks::create_webhook))
            .route("/webhooks", web::get().to(webhooks::list_webhooks))
            .route("/webhooks/{id}", web::delete().to(webhooks::delete_webhook))
            .route(
                "/webhooks/{id}/deliveries",
                web::get().to(webhooks::list_deliveries),
            )
            .route("/document", web::get().to(documents::document))
            .route("/versions", web::get().to(documents::list_versions))
            .route("/versions", web::post().to(documents::create_version))
            .route("/versions/{id}", web::get().to(documents::get_version))
            .route(
                "/versions/{id}/restore",
                web::post().to(documents::restore_version),
            ),
    )
    // Everything else is the browser client (its files, or index.html for its own routes);
    // API-like paths keep the JSON 404.
    .default_service(web::to(web_client::serve));
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
