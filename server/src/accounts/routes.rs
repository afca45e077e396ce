//! `/api/auth/*`, `/api/me` and `/api/api-keys`.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::store::{self, NewApiKey};
use crate::accounts::auth::TokenPair;
use crate::accounts::{API_KEY_PREFIX, ASSISTANT_NAME, AccessEvent, Role, random_token};
use crate::app::AppState;
use crate::entity::{api_key, user};
use crate::http::{ApiError, FieldErrors, SessionUser, check_name, validated};

/// An account as others may see it (never the password hash).
#[derive(Serialize, ToSchema)]
pub struct UserView {
    /// Account id.
    pub id: String,
    /// Login email.
    pub email: String,
    /// Name shown to others.
    pub display_name: String,
    /// Milliseconds since the epoch.
    pub created_at_ms: i64,
}

impl From<user::Model> for UserView {
    fn from(u: user::Model) -> Self {
        Self {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            created_at_ms: u.created_at,
        }
    }
}

/// Answer to register, login and refresh.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// The account (absent on refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserView>,
    /// The tokens.
    #[serde(flatten)]
    pub tokens: TokenPair,
}

/// `POST /api/auth/register` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    email: String,
    password: String,
    display_name: String,
}

/// `POST /api/auth/login` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

/// `POST /api/auth/refresh` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// `POST /api/auth/password` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

/// Counts a login, registration or refresh against the caller's address; extracted before
/// the body, so a client over its rate is answered 429 `rate_limited` (with `Retry-After`)
/// before anything else is read or computed.
pub struct AuthRateLimited;

impl FromRequest for AuthRateLimited {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let admitted = match req.app_data::<web::Data<AppState>>() {
            Some(state) => state
                .client_limits
                .check_auth(req.peer_addr())
                .map(|()| AuthRateLimited)
                .map_err(ApiError::from),
            None => Err(ApiError::internal(&"application state missing")),
        };
        std::future::ready(admitted)
    }
}

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 256;

fn check_password(fields: &mut FieldErrors, field: &'static str, password: &str) {
    let len = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&len) {
        fields.insert(
            field,
            format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        );
    }
}

fn check_email(fields: &mut FieldErrors, email: &str) {
    let email = email.trim();
    let plausible = email.len() <= 320
        && !email.contains(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        });
    if !plausible {
        fields.insert("email", "must be a valid email address".to_owned());
    }
}

/// Creates an account and logs in.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = SessionView), (status = 409), (status = 422), (status = 429), (status = 503)))]
pub async fn register(
    _rate: AuthRateLimited,
    state: web::Data<AppState>,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = FieldErrors::new();
    check_email(&mut fields, &body.email);
    check_password(&mut fields, "password", &body.password);
    check_name(&mut fields, "display_name", &body.display_name, 100);
    // Others tell the assistant by its name as well as by its (server-owned) awareness flag.
    if body
        .display_name
        .trim()
        .eq_ignore_ascii_case(ASSISTANT_NAME)
    {
        fields.insert(
            "display_name",
            "is reserved for the AI assistant".to_owned(),
        );
    }
    validated(fields)?;
    let (account, tokens) = state
        .auth
        .register(&body.email, &body.password, &body.display_name)
        .await?;
    Ok(HttpResponse::Created().json(SessionView {
        user: Some(account.into()),
        tokens,
    }))
}

/// Logs in with email and password. Repeated failures lock the email for a while (429
/// `login_locked` with `Retry-After`); too many requests from one address answer 429
/// `rate_limited`, and a server busy checking passwords 503 `server_busy`.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionView), (status = 401), (status = 429), (status = 503)))]
pub async fn login(
    _rate: AuthRateLimited,
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let (account, tokens) = state.auth.login(&body.email, &body.password).await?;
    Ok(HttpResponse::Ok().json(SessionView {
        user: Some(account.into()),
        tokens,
    }))
}

/// Exchanges a refresh token for new tokens (the refresh token rotates).
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = SessionView), (status = 401), (status = 429)))]
pub async fn refresh(
    _rate: AuthRateLimited,
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = state.auth.refresh(&body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(SessionView { user: None, tokens }))
}

/// Ends this session: its access and refresh tokens stop working everywhere, sockets
/// included.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", responses((status = 204), (status = 401)))]
pub async fn logout(
    state: web::Data<AppState>,
    caller: SessionUser,
) -> Result<HttpResponse, ApiError> {
    state.auth.logout(&caller.session_id).await?;
    state.events.publish(AccessEvent::SessionsRevoked {
        user_id: caller.user_id,
    });
    Ok(HttpResponse::NoContent().finish())
}

/// Changes the password; every other session of the account is revoked.
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 401), (status = 422)))]
pub async fn change_password(
    state: web::Data<AppState>,
    caller: SessionUser,
    body: web::Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = FieldErrors::new();
    check_password(&mut fields, "new_password", &body.new_password);
    validated(fields)?;
    state
        .auth
        .change_password(
            &caller.user_id,
            &caller.session_id,
            &body.current_password,
            &body.new_password,
        )
        .await?;
    state.events.publish(AccessEvent::SessionsRevoked {
        user_id: caller.user_id,
    });
    Ok(HttpResponse::NoContent().finish())
}

/// The logged-in account.
#[utoipa::path(get, path = "/api/me", tag = "auth", responses((status = 200, body = UserView), (status = 401)))]
pub async fn me(state: web::Data<AppState>, caller: SessionUser) -> Result<HttpResponse, ApiError> {
    let account = store::account(state.db(), &caller.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("account no longer exists"))?;
    Ok(HttpResponse::Ok().json(UserView::from(account)))
}

/// `POST /api/api-keys` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    name: String,
    role: Role,
    rooms: Vec<String>,
}

/// An API key as listed (never the key itself).
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Key id.
    pub id: String,
    /// Label.
    pub name: String,
    /// First characters of the key, to recognise it.
    pub prefix: String,
    /// Most the key may do.
    pub role: Role,
    /// Rooms it may touch.
    pub rooms: Vec<String>,
    /// Milliseconds since the epoch.
    pub created_at_ms: i64,
    /// Last authentication with it.
    pub last_used_at_ms: Option<i64>,
    /// Set once revoked.
    pub revoked_at_ms: Option<i64>,
}

impl From<api_key::Model> for ApiKeyView {
    fn from(k: api_key::Model) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            role: Role::parse(&k.role).unwrap_or(Role::Viewer),
            rooms: serde_json::from_str(&k.rooms).unwrap_or_default(),
            created_at_ms: k.created_at,
            last_used_at_ms: k.last_used_at,
            revoked_at_ms: k.revoked_at,
        }
    }
}

/// A new key: the only time `key` is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// The secret to use as a bearer token. Not retrievable later.
    pub key: String,
    /// The stored description.
    #[serde(flatten)]
    pub api_key: ApiKeyView,
}

/// Creates an API key for scripts and bots, scoped to rooms (of the caller) and a role.
#[utoipa::path(post, path = "/api/api-keys", tag = "api-keys", request_body = CreateApiKeyRequest,
    responses((status = 201, body = CreatedApiKey), (status = 422)))]
pub async fn create_api_key(
    state: web::Data<AppState>,
    caller: SessionUser,
    body: web::Json<CreateApiKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = FieldErrors::new();
    check_name(&mut fields, "name", &body.name, 100);
    if body.rooms.is_empty() || body.rooms.len() > 100 {
        fields.insert("rooms", "list 1 to 100 rooms".to_owned());
    } else if !store::takes_part_in_all(state.db(), &caller.user_id, &body.rooms).await? {
        // A key may only name rooms its maker takes part in (and never exceeds the maker's
        // role there when used).
        fields.insert(
            "rooms",
            "every room must exist and you must be a participant".to_owned(),
        );
    }
    validated(fields)?;
    let key = random_token(API_KEY_PREFIX);
    let new = NewApiKey {
        name: &body.name,
        role: body.role,
        rooms: &body.rooms,
    };
    let model =
        store::create_api_key(state.db(), &caller.user_id, &key, new, state.auth.now()).await?;
    Ok(HttpResponse::Created().json(CreatedApiKey {
        key,
        api_key: model.into(),
    }))
}

/// The caller's API keys.
#[utoipa::path(get, path = "/api/api-keys", tag = "api-keys", responses((status = 200, body = [ApiKeyView])))]
pub async fn list_api_keys(
    state: web::Data<AppState>,
    caller: SessionUser,
) -> Result<HttpResponse, ApiError> {
    let keys: Vec<ApiKeyView> = store::api_keys(state.db(), &caller.user_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "api_keys": keys })))
}

/// Revokes one of the caller's API keys; sockets using it are closed.
#[utoipa::path(delete, path = "/api/api-keys/{key_id}", tag = "api-keys", responses((status = 204), (status = 404)))]
pub async fn revoke_api_key(
    state: web::Data<AppState>,
    caller: SessionUser,
    key_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let revoked =
        store::revoke_api_key(state.db(), &caller.user_id, &key_id, state.auth.now()).await?;
    if !revoked {
        return Err(ApiError::not_found("no such active API key"));
    }
    state.events.publish(AccessEvent::ApiKeyRevoked {
        key_id: key_id.into_inner(),
    });
    Ok(HttpResponse::NoContent().finish())
}
