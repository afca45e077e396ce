//! The ai wing: the AI assistant, a model behind an OpenAI-compatible API ([`provider`]),
//! and a peer that joins rooms like any client ([`peer`]), with its routes (`routes`: extract,
//! call, map), the chat turn they start (`chat`), the conversations as stored
//! (`conversations`), deciding on suggestions (`decisions`), the peer process's control
//! socket (`control_socket`), the suggestion schema ([`suggestion`]) and the commands a peer
//! takes ([`command`]). It owns the conversations, usage, rate limits and suggestions.
//! Invariant: the model is only called from this process, never from a peer; and a
//! suggestion reaches the document's text only after the gate found its anchored text intact
//! and took the checkpoint version.
//!
//! A chat request is handled as: build the prompt from the selection, the text around it and
//! an outline of the room's other files, within the token budget; count it against the
//! caller's rate limits; only then store the question (so a refused one leaves nothing);
//! wait for the room's turn (one generation per room at a time); stream the answer
//! while the peer shows "thinking" then "writing" with its cursor on the selection; when the
//! answer proposes code for the selection, the peer writes a suggestion into the document;
//! the exchange and its token usage are stored.
//!
//! The peer runs in this process (the default) or in a separate `tandem ai-peer` process
//! ([`process`]) that connects to the server's control WebSocket ([`control`], [`remote`]).
//! Either way the model is called here, in the server: the provider's keys, fallbacks,
//! retries, the rate limits, the conversations and the streaming stay in one place, and the
//! peer (wherever it runs) is only the assistant's presence in the room.

mod chat;
pub mod command;
pub mod control;
mod control_socket;
mod conversations;
mod decisions;
pub mod peer;
pub mod process;
pub mod provider;
pub mod remote;
pub(crate) mod routes;
pub mod suggestion;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseConnection, DbErr, EntityTrait};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::Auth;
use crate::entity::{room_member, user};
use control::PeerSecret;
use peer::PeerHandle;
use provider::{Prompt, Provider, ProviderConfig, estimate_tokens};
use suggestion::{AnchoredRange, FileRange, GateVerdict};

/// The account the assistant acts as (the accounts wing reserves it).
pub use crate::accounts::ASSISTANT_USER_ID;

/// Assistant settings.
#[derive(Clone, Debug)]
pub struct AiConfig {
    /// The model; `None` when no provider is configured.
    pub provider: Option<ProviderConfig>,
    /// Requests per user per minute; 0 refuses every request.
    pub per_minute: u32,
    /// Requests per user per day; 0 refuses every request.
    pub per_day: u32,
    /// Most prompt tokens (estimated) a request may use.
    pub context_tokens: u32,
    /// Where the assistant's peer runs.
    pub peer: PeerMode,
}

/// Where the assistant's peer runs.
#[derive(Clone, Debug)]
pub enum PeerMode {
    /// A task of the server, connecting to the server's own `/ws/{room}`.
    InProcess,
    /// A `tandem ai-peer` process that connects to `/api/ai/peer` with this secret.
    External(PeerSecret),
}

/// The code actions, or a free question.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Explain the selection.
    Explain,
    /// Look for bugs.
    FindBugs,
    /// Propose a better version of the selection.
    Refactor,
    /// Propose the selection with comments added.
    AddComments,
    /// Anything else.
    Free,
}

impl Action {
    fn instruction(self) -> &'static str {
        match self {
            Action::Explain => "Explain what the selected code does, clearly and briefly.",
            Action::FindBugs => {
                "Find bugs in the selected code. If you can fix them, give the corrected selection."
            }
            Action::Refactor => {
                "Refactor the selected code for clarity without changing behaviour."
            }
            Action::AddComments => {
                "Add helpful comments to the selected code without changing it otherwise."
            }
            Action::Free => "Answer the question about the code.",
        }
    }

    /// Whether the action's answer is expected to replace the selection.
    pub fn proposes_edit(self) -> bool {
        matches!(
            self,
            Action::Refactor | Action::AddComments | Action::FindBugs | Action::Free
        )
    }

    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Explain => "explain",
            Action::FindBugs => "find_bugs",
            Action::Refactor => "refactor",
            Action::AddComments => "add_comments",
            Action::Free => "free",
        }
    }
}

/// Why a request cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// No provider configured.
    #[error("AI assistant not configured")]
    NotConfigured,
    /// Over the per-minute or per-day limit.
    #[error("AI request limit reached; try again in {} seconds", .0.as_secs().max(1))]
    RateLimited(Duration),
    /// The selection alone exceeds the budget.
    #[error("the selection is about {tokens} tokens; the limit is {budget}")]
    SelectionTooLarge {
        /// Estimated tokens of the selection.
        tokens: u32,
        /// The budget.
        budget: u32,
    },
    /// The file or range does not exist.
    #[error("{0}")]
    BadRange(String),
    /// The peer could not join the room.
    #[error("the assistant could not join the room")]
    PeerUnavailable,
    /// External mode, and no peer process is connected.
    #[error("the AI assistant's peer process is not connected")]
    PeerNotConnected,
    /// Database failure.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

struct AiInner {
    provider: Option<Provider>,
    config: AiConfig,
    auth: Auth,
    db: DatabaseConnection,
    registry: crdt_store::RoomRegistry,
    /// Each room's peer, joined once even when requests arrive together; a cell whose peer
    /// stopped is replaced by the next request.
    peers: DashMap<String, Arc<OnceCell<PeerHandle>>>,
    /// The peer process's control connection, in external mode.
    remote: Option<remote::RemotePeers>,
    /// Every task the assistant starts (in-process peers, control sessions, gate checks).
    tasks: TaskTracker,
    /// Cancelled when the server shuts down; every task above ends.
    stop: CancellationToken,
    /// One generation per room at a time.
    room_turns: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Requests waiting for their room's turn, for the status endpoint.
    waiting: DashMap<String, Arc<AtomicUsize>>,
    /// Requests per user per minute and per day, with the period; `None` for a limit of 0.
    rate_limits: [(Option<DefaultKeyedRateLimiter<String>>, Duration); 2],
    /// `ws://host:port` of this server, known once bound.
    ws_base: OnceLock<String>,
}

/// The assistant service. Cheap to clone.
#[derive(Clone)]
pub struct Ai {
    inner: Arc<AiInner>,
}

/// A limiter allowing `count` requests per key in each `period`; `None` for 0, which allows
/// none (rather than one, as a quota of at least one would).
fn limiter(count: u32, period: Duration) -> Option<DefaultKeyedRateLimiter<String>> {
    let count = NonZeroU32::new(count)?;
    let quota = Quota::with_period(period / count.get())
        .expect("non-zero period")
        .allow_burst(count);
    Some(RateLimiter::keyed(quota))
}

/// A prompt ready to send, with what the peer shows meanwhile.
pub struct PreparedRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// The selection (for the assistant's cursor).
    pub selection: Option<FileRange>,
    /// The selection pinned to its text when the question was asked.
    pub anchored: Option<AnchoredRange>,
    /// The action.
    pub action: Action,
}

impl Ai {
    /// Creates the service and the assistant's account. Its tasks end when `stop` is
    /// cancelled; [`Ai::stopped`] waits for them.
    pub async fn new(
        config: AiConfig,
        auth: Auth,
        db: DatabaseConnection,
        registry: crdt_store::RoomRegistry,
        stop: CancellationToken,
    ) -> Result<Self, DbErr> {
        user::Entity::insert(user::ActiveModel {
            id: Set(ASSISTANT_USER_ID.to_owned()),
            email: Set("assistant@tandem.invalid".to_owned()),
            display_name: Set(crate::accounts::ASSISTANT_NAME.to_owned()),
            // Not a PHC string: no password ever verifies against it.
            password_hash: Set("!".to_owned()),
            created_at: Set(auth.now()),
            password_changed_at: Set(auth.now()),
        })
        .on_conflict(OnConflict::column(user::Column::Id).do_nothing().to_owned())
        .exec_without_returning(&db)
        .await?;
        Ok(Self {
            inner: Arc::new(AiInner {
                provider: config.provider.clone().map(Provider::new),
                rate_limits: [
                    (config.per_minute, Duration::from_secs(60)),
                    (config.per_day, Duration::from_secs(86_400)),
                ]
                .map(|(count, period)| (limiter(count, period), period)),
                remote: match &config.peer {
                    PeerMode::InProcess => None,
                    PeerMode::External(secret) => Some(remote::RemotePeers::new(secret.clone())),
                },
                tasks: TaskTracker::new(),
                stop,
                config,
                auth,
                db,
                registry,
                peers: DashMap::new(),
                room_turns: DashMap::new(),
                waiting: DashMap::new(),
                ws_base: OnceLock::new(),
            }),
        })
    }

    /// Records where the peer connects (this server's own address).
    pub fn set_ws_base(&self, base: String) {
        let _ = self.inner.ws_base.set(base);
    }

    /// The model, or an error when none is configured.
    pub fn provider(&self) -> Result<&Provider, AiError> {
        self.inner.provider.as_ref().ok_or(AiError::NotConfigured)
    }

    /// Counts a request against `user`'s limits.
    pub fn check_rate(&self, user: &str) -> Result<(), AiError> {
        let key = user.to_owned();
        let now = DefaultClock::default().now();
        for (limiter, period) in &self.inner.rate_limits {
            let Some(limiter) = limiter else {
                // A limit of 0: no request is ever allowed; a whole period is as good a
                // `Retry-After` as any.
                return Err(AiError::RateLimited(*period));
            };
            if let Err(not_until) = limiter.check_key(&key) {
                return Err(AiError::RateLimited(not_until.wait_time_from(now)));
            }
        }
        Ok(())
    }

    /// The peer process's control connection slot, in external mode.
    pub fn remote(&self) -> Option<&remote::RemotePeers> {
        self.inner.remote.as_ref()
    }

    /// Where the peer runs.
    pub fn peer_mode(&self) -> &PeerMode {
        &self.inner.config.peer
    }

    /// Whether a peer can be reached now: always in-process, only while the peer process is
    /// connected in external mode.
    pub fn peer_reachable(&self) -> Result<(), AiError> {
        match &self.inner.remote {
            Some(remote) if remote.current().is_none() => Err(AiError::PeerNotConnected),
            _ => Ok(()),
        }
    }

    /// What a request reports when its peer went away before answering: in external mode the
    /// peer process is gone (or going).
    pub fn peer_lost(&self) -> AiError {
        match self.inner.remote {
            Some(_) => AiError::PeerNotConnected,
            None => AiError::PeerUnavailable,
        }
    }

    /// Tracks the assistant's tasks, so shutdown waits for them.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// Cancelled when the server shuts down.
    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.stop
    }

    /// Waits until every task the assistant started has ended (after the stop token given to
    /// [`Ai::new`] was cancelled).
    pub async fn stopped(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// The assistant's peer in `room`, joining (as an editor participant) if needed.
    pub async fn peer(&self, room: &str) -> Result<PeerHandle, AiError> {
        // A peer that stops at once (its socket refused) is tried once more, not forever.
        for _ in 0..2 {
            let cell = self.inner.peers.entry(room.to_owned()).or_default().clone();
            let handle = cell.get_or_try_init(|| self.join(room)).await?;
            if handle.is_alive() {
                return Ok(handle.clone());
            }
            // It stopped: the next caller joins again, unless someone already did.
            self.inner
                .peers
                .remove_if(room, |_, current| Arc::ptr_eq(current, &cell));
        }
        Err(AiError::PeerUnavailable)
    }

    /// Makes the assistant an editor of `room` and starts its peer there, in this process or
    /// in the peer process.
    async fn join(&self, room: &str) -> Result<PeerHandle, AiError> {
        let link = match &self.inner.remote {
            Some(remote) => {
                let link = remote.current().ok_or(AiError::PeerNotConnected)?;
                // A peer process that reconnected may still hold the room.
                if let Some(joined) = link.joined_room(room) {
                    return Ok(PeerHandle::remote(joined));
                }
                Some(link)
            }
            None => None,
        };
        room_member::Entity::insert(room_member::ActiveModel {
            room_id: Set(room.to_owned()),
            user_id: Set(ASSISTANT_USER_ID.to_owned()),
            role: Set(crate::accounts::Role::Editor.as_str().to_owned()),
            created_at: Set(self.inner.auth.now()),
        })
        .on_conflict(
            OnConflict::columns([room_member::Column::RoomId, room_member::Column::UserId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.inner.db)
        .await?;
        let token = self
            .inner
            .auth
            .service_token(ASSISTANT_USER_ID)
            .await
            .map_err(|_| AiError::PeerUnavailable)?;
        if let Some(link) = link {
            return link
                .join(room, token)
                .await
                .map(PeerHandle::remote)
                .ok_or(AiError::PeerNotConnected);
        }
        let base = self.inner.ws_base.get().ok_or(AiError::PeerUnavailable)?;
        let url = peer::room_url(base, room, &token);
        let ai = self.clone();
        let room_name = room.to_owned();
        let gate: command::AcceptGate = Arc::new(move |suggestion: String| {
            let ai = ai.clone();
            let room_name = room_name.clone();
            Box::pin(async move { ai.gate(&room_name, &suggestion).await })
        });
        Ok(peer::spawn(
            url,
            room.to_owned(),
            self.inner.auth.clock(),
            gate,
            &self.inner.tasks,
            self.inner.stop.child_token(),
        ))
    }

    /// Before a client-accepted suggestion is applied: the anchored text must be unchanged
    /// on the server's copy (the peer's replica may lag), and a checkpoint version is taken.
    pub async fn gate(&self, room: &str, suggestion: &str) -> GateVerdict {
        let registry = &self.inner.registry;
        let Ok(id) = crdt_store::RoomId::parse(room) else {
            return GateVerdict::Conflict;
        };
        let Ok(lease) = registry.lease(&id).await else {
            return GateVerdict::Conflict;
        };
        match suggestion::check_and_checkpoint(lease.room(), suggestion).await {
            Ok(Ok(())) => GateVerdict::Apply,
            // An unknown or changed suggestion is not applied; nor is one without its
            // checkpoint.
            Ok(Err(_)) | Err(_) => GateVerdict::Conflict,
        }
    }

    /// Waits for the room's turn; the guard releases it.
    pub async fn room_turn(&self, room: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let waiting = self
            .inner
            .waiting
            .entry(room.to_owned())
            .or_default()
            .clone();
        waiting.fetch_add(1, Ordering::Relaxed);
        let turn = self
            .inner
            .room_turns
            .entry(room.to_owned())
            .or_default()
            .clone();
        let guard = turn.lock_owned().await;
        waiting.fetch_sub(1, Ordering::Relaxed);
        guard
    }

    /// `(generating, queued)` for a room.
    pub fn room_status(&self, room: &str) -> (bool, usize) {
        let busy = self
            .inner
            .room_turns
            .get(room)
            .is_some_and(|turn| turn.try_lock().is_err());
        let queued = self
            .inner
            .waiting
            .get(room)
            .map_or(0, |w| w.load(Ordering::Relaxed));
        (busy, queued)
    }

    /// Builds the prompt for a request from the room's current document, and pins the
    /// selection to the text it covers now.
    pub async fn prepare(
        &self,
        room: &crdt_store::Room,
        message: &str,
        action: Action,
        file: Option<&str>,
        selection: Option<(u32, u32)>,
    ) -> Result<PreparedRequest, AiError> {
        let budget = self.inner.config.context_tokens;
        let files = room.files();
        let mut user_prompt = String::new();
        let mut selected_range = None;
        let mut anchored = None;
        if let Some(file) = file {
            let content = files
                .iter()
                .find(|(path, _)| path == file)
                .map(|(_, text)| text.clone())
                .ok_or_else(|| AiError::BadRange(format!("no file {file:?} in this room")))?;
            let units: Vec<u16> = content.encode_utf16().collect();
            let (start, end) = selection.unwrap_or((0, 0));
            if start > end || end as usize > units.len() {
                return Err(AiError::BadRange(format!(
                    "selection {start}..{end} is outside {file:?} ({} characters)",
                    units.len()
                )));
            }
            let selected = String::from_utf16_lossy(&units[start as usize..end as usize]);
            let tokens = estimate_tokens(&selected);
            if tokens > budget {
                return Err(AiError::SelectionTooLarge { tokens, budget });
            }
            // Surrounding text fills what the budget leaves, half before and half after.
            let spare_chars = ((budget - tokens) as usize * 4) / 2;
            let before_start = (start as usize).saturating_sub(spare_chars);
            let after_end = (end as usize + spare_chars).min(units.len());
            let before = String::from_utf16_lossy(&units[before_start..start as usize]);
            let after = String::from_utf16_lossy(&units[end as usize..after_end]);
            user_prompt.push_str(&format!("File: {file}\n"));
            if files.len() > 1 {
                user_prompt.push_str("Other files in the room:\n");
                for (path, text) in files.iter().filter(|(p, _)| p != file).take(50) {
                    user_prompt.push_str(&format!("- {path} ({} lines)\n", text.lines().count()));
                }
            }
            user_prompt.push_str(&format!(
                "\nCode before the selection:\n```\n{before}\n```\nSelected code:\n```\n{selected}\n```\nCode after the selection:\n```\n{after}\n```\n"
            ));
            if end > start {
                selected_range = Some(FileRange {
                    file: file.to_owned(),
                    start,
                    end,
                });
                anchored = Some(AnchoredRange::new(
                    file,
                    room.anchor(file, start, end).map_err(AiError::BadRange)?,
                ));
            }
        }
        user_prompt.push_str(&format!("\nRequest: {message}\n"));
        let system = format!(
            "You are the AI assistant of a collaborative code editor. {} When you propose new code for the selection, put exactly the replacement for the selected code in one fenced code block, then explain briefly.",
            action.instruction()
        );
        Ok(PreparedRequest {
            prompt: Prompt {
                system,
                user: user_prompt,
            },
            selection: selected_range,
            anchored,
            action,
        })
    }
}

/// The first fenced code block of an answer (its content without the fences), and the text
/// outside it as the explanation.
pub fn split_answer(answer: &str) -> Option<(String, String)> {
    let open = answer.find("```")?;
    let after_open = &answer[open + 3..];
    let body_start = after_open.find('\n')? + 1;
    let body = &after_open[body_start..];
    let close = body.find("```")?;
    let code = body[..close]
        .strip_suffix('\n')
        .unwrap_or(&body[..close])
        .to_owned();
    let explanation = format!("{}{}", &answer[..open], &body[close + 3..])
        .trim()
        .chars()
        .take(2000)
        .collect();
    Some((code, explanation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_split_into_code_and_explanation() {
        let (code, why) = split_answer("Here you go:\n```rust\nfn a() {}\n```\nShorter.").unwrap();
        assert_eq!(code, "fn a() {}");
        assert_eq!(why, "Here you go:\n\nShorter.");
        assert!(split_answer("no code here").is_none());
        assert!(split_answer("```rust\nunterminated").is_none());
    }
}
