//! Accounts and authentication: who is calling.
//!
//! - Passwords are argon2id ([`secrets`]), computed on a bounded set of threads
//!   ([`hashing`]); logins are throttled per email ([`throttle`]): each attempt is counted,
//!   in one atomic statement, before its password is checked, so parallel guesses cannot
//!   check more passwords than the limit allows.
//! - A login creates a *session*: a short-lived JWT access token naming the session (`sid`)
//!   and a rotating refresh token stored hashed. Every use of an access token checks that its
//!   session is still live, so logout and password changes take effect at once everywhere.
//!   Reusing a refresh token that was already rotated revokes the session (token theft).
//! - API keys (`tdm_…`) belong to a user, are scoped to rooms and a role, and are stored
//!   hashed; share tokens (`shr_…`) grant read access to one room without an account.
//!
//! What a principal may do in a room is decided in `crate::access`.

pub mod hashing;
pub mod secrets;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, Statement,
};
use serde::{Deserialize, Serialize};

use crate::accounts::access_events::{AccessEvent, AccessEvents};
use crate::clock::Clock;
use crate::entity::{
    api_key, login_throttle, rotated_refresh_token, server_setting, session, share_link, user,
};
pub use hashing::HashingLimits;
use hashing::HashingPool;
use secrets::{API_KEY_PREFIX, SHARE_TOKEN_PREFIX, random_id, random_token, token_hash};
use throttle::LoginPolicy;

/// Authentication settings.
#[derive(Clone)]
pub struct AuthConfig {
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of a session (its refresh token) since the last refresh.
    pub refresh_token_ttl: Duration,
    /// Login throttling.
    pub login: LoginPolicy,
    /// HS256 signing secret; generated and stored in the database when absent.
    pub jwt_secret: Option<String>,
    /// Password hashing threads and admission.
    pub hashing: HashingLimits,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written out so that no secret reaches a log line: see `crate::redact`.
        f.debug_struct("AuthConfig")
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("login", &self.login)
            .field("jwt_secret", &crate::redact::Secret(&self.jwt_secret))
            .field("hashing", &self.hashing)
            .finish()
    }
}

/// A room role. Ordered: `Viewer < Commenter < Suggester < Editor < Owner`; each may do
/// what the ones before it may.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the document and awareness; cannot write it.
    Viewer,
    /// Reads, and comments over REST; cannot write the document.
    Commenter,
    /// Comments, and creates, changes and withdraws their own suggestions; cannot write the
    /// content.
    Suggester,
    /// Reads and writes the content, and suggests.
    Editor,
    /// Edits and manages the room.
    Owner,
}

impl Role {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Commenter => "commenter",
            Role::Suggester => "suggester",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Role::Viewer),
            "commenter" => Some(Role::Commenter),
            "suggester" => Some(Role::Suggester),
            "editor" => Some(Role::Editor),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    /// Whether a socket of this role may send document updates at all (each is still checked
    /// for where it writes).
    pub fn writes_document(self) -> bool {
        self >= Role::Suggester
    }
}

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Principal {
    /// A logged-in user, through one session.
    User {
        /// The account.
        user_id: String,
        /// The session the access token belongs to.
        session_id: String,
    },
    /// A service account key.
    ApiKey {
        /// The key's id.
        key_id: String,
        /// The user who created it; the key never exceeds their rights.
        user_id: String,
        /// The most the key may do.
        role: Role,
        /// Rooms the key may touch.
        rooms: Vec<String>,
    },
    /// A read-only share link.
    Share {
        /// The link's id.
        link_id: String,
        /// The one room it opens.
        room_id: String,
    },
}

impl Principal {
    /// The user behind this principal, if any.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Principal::User { user_id, .. } | Principal::ApiKey { user_id, .. } => Some(user_id),
            Principal::Share { .. } => None,
        }
    }
}

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials were sent.
    #[error("authentication required")]
    Missing,
    /// The credentials are not valid (unknown, revoked, malformed, wrong signature).
    #[error("invalid or revoked token")]
    InvalidToken,
    /// The access token or session has expired.
    #[error("token expired")]
    Expired,
    /// Wrong email or password.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many failed logins; try again later.
    #[error("too many failed logins; try again in {} seconds", .retry_after.as_secs().max(1))]
    Locked {
        /// How long until the lockout ends.
        retry_after: Duration,
    },
    /// The email is registered already.
    #[error("an account with this email exists")]
    EmailTaken,
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// Hashing failed (out of memory or a panic).
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// Every password-hashing slot stayed taken for the whole wait.
    #[error("the server is busy checking passwords; try again in {} seconds", .retry_after.as_secs().max(1))]
    Busy {
        /// When to try again.
        retry_after: Duration,
    },
}

/// What a client receives after logging in or refreshing.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// Bearer token for `Authorization:` or `?token=`.
    pub access_token: String,
    /// Seconds until `access_token` expires.
    pub expires_in: u64,
    /// Single-use token for `POST /api/auth/refresh`.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    iat: i64,
    exp: i64,
}

struct AuthInner {
    db: DatabaseConnection,
    encoding: EncodingKey,
    decoding: DecodingKey,
    config: AuthConfig,
    clock: Clock,
    /// Where revocations this service makes on its own (a reused refresh token) are
    /// announced, so open sockets re-check; set once at start-up.
    revocations: std::sync::OnceLock<AccessEvents>,
    hashing: HashingPool,
    /// A hash of a random password with the parameters new hashes get: logins for unknown
    /// emails verify against it, so they cost what logins for real accounts cost.
    dummy_hash: String,
}

/// Whether the credential a socket was opened with still holds, read from the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialStatus {
    /// Usable until `expires_at` (milliseconds since the epoch, by [`Auth::now`]); `None`
    /// when it never expires.
    Live {
        /// When it stops being usable, unless renewed (a session's refresh moves it).
        expires_at: Option<i64>,
    },
    /// Revoked, deleted, or never existed.
    Revoked,
    /// Its lifetime is over.
    Expired,
}

/// Authentication service. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

const JWT_SECRET_SETTING: &str = "jwt_secret";

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Counts one login attempt for an email before its password is checked, in one statement
/// (so concurrent attempts are serialised by the row): a fresh window starts at 1, an attempt
/// within the window adds one, and the attempt that reaches the limit sets the lock. A locked
/// email's row is left alone and no row comes back. Placeholders: `$1` email, `$2` now, `$3`
/// the lock of a first attempt (when the limit is 1), `$4` the limit, `$5` the end of a lock
/// set now, `$6` the window in ms. Numbered placeholders work on SQLite and PostgreSQL alike;
/// columns of the existing row are qualified, as PostgreSQL requires.
const RESERVE_LOGIN_ATTEMPT: &str = "\
INSERT INTO login_throttle (email, failures, first_failure_at, locked_until) \
VALUES ($1, 1, $2, $3) \
ON CONFLICT (email) DO UPDATE SET \
  failures = CASE \
    WHEN login_throttle.locked_until IS NOT NULL OR $2 - login_throttle.first_failure_at >= $6 \
      THEN 1 \
    ELSE login_throttle.failures + 1 END, \
  first_failure_at = CASE \
    WHEN login_throttle.locked_until IS NOT NULL OR $2 - login_throttle.first_failure_at >= $6 \
      THEN $2 \
    ELSE login_throttle.first_failure_at END, \
  locked_until = CASE \
    WHEN login_throttle.locked_until IS NOT NULL OR $2 - login_throttle.first_failure_at >= $6 \
      THEN $3 \
    WHEN login_throttle.failures + 1 >= $4 THEN $5 \
    ELSE NULL END \
WHERE login_throttle.locked_until IS NULL OR login_throttle.locked_until <= $2 \
RETURNING failures, locked_until";

/// What counting an attempt decided.
enum Reservation {
    /// The password may be checked; `locked_until` is set when this attempt used the last
    /// one the window allows (a failure then answers "locked").
    Granted { locked_until: Option<i64> },
    /// The email is locked: its password is not checked at all.
    Locked { retry_after: Duration },
}

impl Auth {
    /// Loads (or creates, on first start) the signing secret.
    pub async fn init(
        db: DatabaseConnection,
        config: AuthConfig,
        clock: Clock,
    ) -> Result<Self, DbErr> {
        let secret = match &config.jwt_secret {
            Some(secret) => secret.clone(),
            None => {
                // Insert-if-absent, then read: nodes starting together agree on one secret.
                server_setting::Entity::insert(server_setting::ActiveModel {
                    key: Set(JWT_SECRET_SETTING.to_owned()),
                    value: Set(random_token("")),
                })
                .on_conflict(
                    OnConflict::column(server_setting::Column::Key)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&db)
                .await?;
                server_setting::Entity::find_by_id(JWT_SECRET_SETTING)
                    .one(&db)
                    .await?
                    .map(|s| s.value)
                    .ok_or_else(|| DbErr::RecordNotFound("jwt secret".into()))?
            }
        };
        let hashing = HashingPool::start(config.hashing)
            .map_err(|e| DbErr::Custom(format!("starting the password hashing threads: {e}")))?;
        let dummy_password = random_token("");
        let dummy_hash = hashing
            .admit()
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .run(move || secrets::hash_password(&dummy_password))
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .map_err(DbErr::Custom)?;
        Ok(Self {
            inner: Arc::new(AuthInner {
                encoding: EncodingKey::from_secret(secret.as_bytes()),
                decoding: DecodingKey::from_secret(secret.as_bytes()),
                db,
                config,
                clock,
                revocations: std::sync::OnceLock::new(),
                hashing,
                dummy_hash,
            }),
        })
    }

    /// Announces on `events` the revocations this service decides by itself (a rotated
    /// refresh token presented again), as the routes do for logout and password changes.
    pub fn announce_revocations_on(&self, events: AccessEvents) {
        let _ = self.inner.revocations.set(events);
    }

    /// Now, by this service's clock.
    pub fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    /// The clock this service reads.
    pub fn clock(&self) -> Clock {
        self.inner.clock.clone()
    }

    /// An access token for a service account (the AI assistant): a new session whose refresh
    /// token is never handed out.
    pub async fn service_token(&self, user_id: &str) -> Result<String, AuthError> {
        Ok(self.start_session(user_id).await?.access_token)
    }

    fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// Creates an account and logs it in.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        display_name: &str,
    ) -> Result<(user::Model, TokenPair), AuthError> {
        let email = email.trim().to_lowercase();
        if user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(self.db())
            .await?
            .is_some()
        {
            return Err(AuthError::EmailTaken);
        }
        let password = password.to_owned();
        let hash = self
            .inner
            .hashing
            .admit()
            .await?
            .run(move || secrets::hash_password(&password))
            .await?
            .map_err(AuthError::Hashing)?;
        let now = self.now();
        let model = user::ActiveModel {
            id: Set(random_id()),
            email: Set(email),
            display_name: Set(display_name.trim().to_owned()),
            password_hash: Set(hash),
            created_at: Set(now),
            password_changed_at: Set(now),
        }
        .insert(self.db())
        .await
        .map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => AuthError::EmailTaken,
            _ => AuthError::Database(e),
        })?;
        let tokens = self.start_session(&model.id).await?;
        Ok((model, tokens))
    }

    /// Checks a password, with throttling per email: the attempt is counted before the
    /// password is checked, and a locked email's password is not checked at all. A success
    /// clears the count.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
    ) -> Result<(user::Model, TokenPair), AuthError> {
        let email = email.trim().to_lowercase();
        // A turn at hashing first: a request turned away busy has not used an attempt.
        let turn = self.inner.hashing.admit().await?;
        let now = self.now();
        let locked_until = match self.reserve_login_attempt(&email, now).await? {
            Reservation::Granted { locked_until } => locked_until,
            Reservation::Locked { retry_after } => return Err(AuthError::Locked { retry_after }),
        };
        let account = user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(self.db())
            .await?;
        // Unknown emails are verified against a hash with the same parameters, so timing
        // does not tell which emails have accounts.
        let phc = account.as_ref().map_or_else(
            || self.inner.dummy_hash.clone(),
            |u| u.password_hash.clone(),
        );
        let password = password.to_owned();
        let valid = turn
            .run(move || secrets::verify_password(&password, &phc))
            .await?;
        match account {
            Some(account) if valid => {
                login_throttle::Entity::delete_by_id(&email)
                    .exec(self.db())
                    .await?;
                let tokens = self.start_session(&account.id).await?;
                Ok((account, tokens))
            }
            _ => match locked_until {
                Some(until) if until > now => Err(AuthError::Locked {
                    retry_after: Duration::from_millis((until - now) as u64),
                }),
                _ => Err(AuthError::InvalidCredentials),
            },
        }
    }

    /// Counts one login attempt for `email` at `now` (see [`RESERVE_LOGIN_ATTEMPT`]).
    async fn reserve_login_attempt(&self, email: &str, now: i64) -> Result<Reservation, AuthError> {
        let policy: LoginPolicy = self.inner.config.login;
        let lock_end = now.saturating_add(ms(policy.lockout));
        let first_lock = (policy.max_failures <= 1).then_some(lock_end);
        let backend = self.db().get_database_backend();
        let row = self
            .db()
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                RESERVE_LOGIN_ATTEMPT,
                [
                    email.into(),
                    now.into(),
                    first_lock.into(),
                    i32::try_from(policy.max_failures)
                        .unwrap_or(i32::MAX)
                        .into(),
                    lock_end.into(),
                    ms(policy.window).into(),
                ],
            ))
            .await?;
        if let Some(row) = row {
            return Ok(Reservation::Granted {
                locked_until: row.try_get::<Option<i64>>("", "locked_until")?,
            });
        }
        // No row came back: the email is locked. Read until when, for `Retry-After`.
        let until = login_throttle::Entity::find_by_id(email)
            .one(self.db())
            .await?
            .and_then(|t| t.locked_until)
            .unwrap_or(lock_end);
        Ok(Reservation::Locked {
            retry_after: Duration::from_millis(until.saturating_sub(now).max(1) as u64),
        })
    }

    async fn start_session(&self, user_id: &str) -> Result<TokenPair, AuthError> {
        let now = self.now();
        let refresh = random_token("");
        let session = session::ActiveModel {
            id: Set(random_id()),
            user_id: Set(user_id.to_owned()),
            refresh_hash: Set(token_hash(&refresh)),
            previous_refresh_hash: Set(None),
            created_at: Set(now),
            expires_at: Set(now.saturating_add(ms(self.inner.config.refresh_token_ttl))),
            revoked_at: Set(None),
        }
        .insert(self.db())
        .await?;
        self.token_pair(user_id, &session.id, refresh)
    }

    fn token_pair(
        &self,
        user_id: &str,
        session_id: &str,
        refresh: String,
    ) -> Result<TokenPair, AuthError> {
        let now = self.now();
        let ttl = self.inner.config.access_token_ttl;
        let claims = Claims {
            sub: user_id.to_owned(),
            sid: session_id.to_owned(),
            iat: now / 1000,
            exp: now.saturating_add(ms(ttl)) / 1000,
        };
        let access_token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )
        .map_err(|e| AuthError::Hashing(e.to_string()))?;
        Ok(TokenPair {
            access_token,
            expires_in: ttl.as_secs(),
            refresh_token: refresh,
            token_type: "Bearer",
        })
    }

    /// Exchanges a refresh token for a new pair; the old refresh token stops working. Using
    /// an already-rotated refresh token again revokes the whole session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, AuthError> {
        let now = self.now();
        let hash = token_hash(refresh_token);
        let Some(current) = session::Entity::find()
            .filter(session::Column::RefreshHash.eq(&hash))
            .one(self.db())
            .await?
        else {
            // A rotated token presented again: someone else may hold the newer one, so the
            // whole session ends.
            if let Some(rotated) = rotated_refresh_token::Entity::find_by_id(&hash)
                .one(self.db())
                .await?
            {
                self.logout(&rotated.session_id).await?;
                // The thief's open sockets must end too, on every node, not only their
                // next REST call.
                let owner = session::Entity::find_by_id(&rotated.session_id)
                    .one(self.db())
                    .await?;
                if let (Some(owner), Some(events)) = (owner, self.inner.revocations.get()) {
                    events.publish(AccessEvent::SessionsRevoked {
                        user_id: owner.user_id,
                    });
                }
            }
            return Err(AuthError::InvalidToken);
        };
        if current.revoked_at.is_some() {
            return Err(AuthError::InvalidToken);
        }
        if current.expires_at <= now {
            return Err(AuthError::Expired);
        }
        let next = random_token("");
        let rotated = session::Entity::update_many()
            .col_expr(session::Column::RefreshHash, Expr::value(token_hash(&next)))
            .col_expr(
                session::Column::ExpiresAt,
                Expr::value(now.saturating_add(ms(self.inner.config.refresh_token_ttl))),
            )
            .filter(session::Column::Id.eq(&current.id))
            .filter(session::Column::RefreshHash.eq(&hash))
            .exec(self.db())
            .await?;
        if rotated.rows_affected != 1 {
            // Two refreshes raced with one token: only one may win.
            return Err(AuthError::InvalidToken);
        }
        rotated_refresh_token::ActiveModel {
            token_hash: Set(hash),
            session_id: Set(current.id.clone()),
            rotated_at: Set(now),
        }
        .insert(self.db())
        .await?;
        self.token_pair(&current.user_id, &current.id, next)
    }

    /// Revokes one session.
    pub async fn logout(&self, session_id: &str) -> Result<(), AuthError> {
        session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(self.now()))
            .filter(session::Column::Id.eq(session_id))
            .filter(session::Column::RevokedAt.is_null())
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Changes a password and revokes every other session of the user.
    pub async fn change_password(
        &self,
        user_id: &str,
        keep_session: &str,
        current: &str,
        new: &str,
    ) -> Result<(), AuthError> {
        let account = user::Entity::find_by_id(user_id)
            .one(self.db())
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let (current, phc) = (current.to_owned(), account.password_hash.clone());
        let new = new.to_owned();
        // One turn for both: check the current password, and only then hash the new one.
        let hash = self
            .inner
            .hashing
            .admit()
            .await?
            .run(move || {
                secrets::verify_password(&current, &phc).then(|| secrets::hash_password(&new))
            })
            .await?
            .ok_or(AuthError::InvalidCredentials)?
            .map_err(AuthError::Hashing)?;
        let now = self.now();
        user::Entity::update_many()
            .col_expr(user::Column::PasswordHash, Expr::value(hash))
            .col_expr(user::Column::PasswordChangedAt, Expr::value(now))
            .filter(user::Column::Id.eq(user_id))
            .exec(self.db())
            .await?;
        session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(now))
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::Id.ne(keep_session))
            .filter(session::Column::RevokedAt.is_null())
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Resolves a bearer token of any kind.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let now = self.now();
        if token.starts_with(API_KEY_PREFIX) {
            let key = api_key::Entity::find()
                .filter(api_key::Column::KeyHash.eq(token_hash(token)))
                .one(self.db())
                .await?
                .filter(|k| k.revoked_at.is_none())
                .ok_or(AuthError::InvalidToken)?;
            api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
                .filter(api_key::Column::Id.eq(&key.id))
                .exec(self.db())
                .await?;
            return Ok(Principal::ApiKey {
                role: Role::parse(&key.role).unwrap_or(Role::Viewer),
                rooms: serde_json::from_str(&key.rooms).unwrap_or_default(),
                key_id: key.id,
                user_id: key.user_id,
            });
        }
        if token.starts_with(SHARE_TOKEN_PREFIX) {
            let link = share_link::Entity::find()
                .filter(share_link::Column::TokenHash.eq(token_hash(token)))
                .one(self.db())
                .await?
                .filter(|l| l.revoked_at.is_none())
                .ok_or(AuthError::InvalidToken)?;
            if link.expires_at.is_some_and(|at| at <= now) {
                return Err(AuthError::Expired);
            }
            return Ok(Principal::Share {
                link_id: link.id,
                room_id: link.room_id,
            });
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked below against this service's clock.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "sub"].into_iter().map(String::from).collect();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &validation)
            .map_err(|_| AuthError::InvalidToken)?
            .claims;
        if claims.exp.saturating_mul(1000) <= now {
            return Err(AuthError::Expired);
        }
        let session = session::Entity::find_by_id(&claims.sid)
            .one(self.db())
            .await?
            .filter(|s| s.revoked_at.is_none() && s.user_id == claims.sub)
            .ok_or(AuthError::InvalidToken)?;
        // A session not refreshed within its lifetime has ended, even if an access token
        // it issued has not.
        if session.expires_at <= now {
            return Err(AuthError::Expired);
        }
        Ok(Principal::User {
            user_id: claims.sub,
            session_id: claims.sid,
        })
    }

    /// Whether the credential behind `principal` still holds, and until when: what an open
    /// socket re-reads after an access event, at its credential's expiry, and periodically.
    /// Read-only (unlike [`Auth::authenticate`], which records an API key's last use).
    pub async fn credential_status(
        &self,
        principal: &Principal,
    ) -> Result<CredentialStatus, DbErr> {
        let now = self.now();
        let lifetime = |revoked: bool, expires_at: Option<i64>| match expires_at {
            _ if revoked => CredentialStatus::Revoked,
            Some(at) if at <= now => CredentialStatus::Expired,
            expires_at => CredentialStatus::Live { expires_at },
        };
        Ok(match principal {
            Principal::User {
                user_id,
                session_id,
            } => match session::Entity::find_by_id(session_id)
                .one(self.db())
                .await?
            {
                Some(s) if &s.user_id == user_id => {
                    lifetime(s.revoked_at.is_some(), Some(s.expires_at))
                }
                _ => CredentialStatus::Revoked,
            },
            // API keys have no lifetime: they hold until revoked.
            Principal::ApiKey { key_id, .. } => {
                match api_key::Entity::find_by_id(key_id).one(self.db()).await? {
                    Some(k) => lifetime(k.revoked_at.is_some(), None),
                    None => CredentialStatus::Revoked,
                }
            }
            Principal::Share { link_id, .. } => {
                match share_link::Entity::find_by_id(link_id)
                    .one(self.db())
                    .await?
                {
                    Some(l) => lifetime(l.revoked_at.is_some(), l.expires_at),
                    None => CredentialStatus::Revoked,
                }
            }
        })
    }
}
