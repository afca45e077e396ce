//! Talking to the language model: any OpenAI-compatible endpoint, with ordered fallbacks,
//! retries with backoff on transient failures, and a timeout.
//!
//! A request is tried on each endpoint in order. On one endpoint it is retried (with
//! exponential backoff) while the failure is transient (connection errors, timeouts, 429,
//! 5xx) and nothing has been streamed yet; once the first token has reached the caller, a
//! failure ends the answer instead (the caller cannot take streamed text back).

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, ChatCompletionStreamOptions, CreateChatCompletionRequest,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::warn;

/// One OpenAI-compatible endpoint.
#[derive(Clone)]
pub struct Endpoint {
    /// Base URL, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// Bearer key (may be empty for local servers).
    pub api_key: String,
    /// Model name.
    pub model: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key (nor a password or query the URL may carry).
        f.debug_struct("Endpoint")
            .field("base_url", &crate::redact::Url(&self.base_url))
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// The provider settings.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// Endpoints in the order they are tried.
    pub endpoints: Vec<Endpoint>,
    /// Per-attempt limit (connect to last token).
    pub timeout: Duration,
    /// Retries per endpoint on transient failures.
    pub max_retries: u32,
}

/// What a finished generation reports.
#[derive(Clone, Debug, Default)]
pub struct Completion {
    /// The whole answer.
    pub text: String,
    /// Tokens in the prompt, as the provider counted them (estimated if it did not say).
    pub prompt_tokens: u32,
    /// Tokens in the answer.
    pub completion_tokens: u32,
    /// The endpoint that answered.
    pub endpoint: String,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Every endpoint failed before answering.
    #[error("the AI provider is unavailable: {0}")]
    Unavailable(String),
    /// The answer broke off after it started.
    #[error("the AI answer was interrupted: {0}")]
    Interrupted(String),
}

/// A chat turn.
pub struct Prompt {
    /// Instructions.
    pub system: String,
    /// The question with its context.
    pub user: String,
}

/// An OpenAI-compatible model behind fallbacks. Cheap to clone.
#[derive(Clone)]
pub struct Provider {
    config: ProviderConfig,
    clients: Vec<Client<OpenAIConfig>>,
}

fn transient(err: &OpenAIError) -> bool {
    match err {
        OpenAIError::Reqwest(_) | OpenAIError::StreamError(_) => true,
        OpenAIError::ApiError(api) => {
            api.status_code.as_u16() == 429 || api.status_code.is_server_error()
        }
        _ => false,
    }
}

impl Provider {
    /// Builds clients for every endpoint.
    pub fn new(config: ProviderConfig) -> Self {
        let clients = config
            .endpoints
            .iter()
            .map(|e| {
                Client::with_config(
                    OpenAIConfig::new()
                        .with_api_base(e.base_url.trim_end_matches('/'))
                        .with_api_key(e.api_key.clone()),
                )
                // The default stack retries 429 and 5xx itself (three times, with backoff);
                // the bare transport leaves `max_retries` the only retry count.
                .with_http_service(ReqwestService::default())
            })
            .collect();
        Self { config, clients }
    }

    /// Streams an answer: each piece of text goes to `tokens` as it arrives.
    pub async fn stream(
        &self,
        prompt: &Prompt,
        tokens: &mpsc::Sender<String>,
    ) -> Result<Completion, ProviderError> {
        let mut failures = Vec::new();
        for (endpoint, client) in self.config.endpoints.iter().zip(&self.clients) {
            let mut backoff = Duration::from_millis(200);
            for attempt in 0..=self.config.max_retries {
                match tokio::time::timeout(
                    self.config.timeout,
                    self.attempt(endpoint, client, prompt, tokens),
                )
                .await
                {
                    Ok(Ok(completion)) => return Ok(completion),
                    Ok(Err(Attempt::Interrupted(reason))) => {
                        return Err(ProviderError::Interrupted(reason));
                    }
                    Ok(Err(Attempt::Failed { reason, retry })) => {
                        warn!(endpoint = %endpoint.base_url, attempt, %reason, "AI request failed");
                        failures.push(format!("{}: {reason}", endpoint.base_url));
                        if !retry {
                            break;
                        }
                    }
                    Err(_) => {
                        warn!(endpoint = %endpoint.base_url, attempt, "AI request timed out");
                        failures.push(format!("{}: timed out", endpoint.base_url));
                    }
                }
                if attempt < self.config.max_retries {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
        Err(ProviderError::Unavailable(failures.join("; ")))
    }

    async fn attempt(
        &self,
        endpoint: &Endpoint,
        client: &Client<OpenAIConfig>,
        prompt: &Prompt,
        tokens: &mpsc::Sender<String>,
    ) -> Result<Completion, Attempt> {
        let request = CreateChatCompletionRequest {
            model: endpoint.model.clone(),
            messages: vec![
                ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage::from(
                    prompt.system.as_str(),
                )),
                ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(
                    prompt.user.as_str(),
                )),
            ],
            stream: Some(true),
            stream_options: Some(ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut stream =
            client
                .chat()
                .create_stream(request)
                .await
                .map_err(|e| Attempt::Failed {
                    retry: transient(&e),
                    reason: e.to_string(),
                })?;
        let mut completion = Completion {
            endpoint: endpoint.base_url.clone(),
            ..Completion::default()
        };
        let mut usage_seen = false;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) if completion.text.is_empty() => {
                    return Err(Attempt::Failed {
                        retry: transient(&e),
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(Attempt::Interrupted(e.to_string())),
            };
            if let Some(usage) = chunk.usage {
                completion.prompt_tokens = usage.prompt_tokens;
                completion.completion_tokens = usage.completion_tokens;
                usage_seen = true;
            }
            for choice in chunk.choices {
                if let Some(piece) = choice.delta.content.filter(|p| !p.is_empty()) {
                    completion.text.push_str(&piece);
                    // A caller that went away does not stop the generation: the answer is
                    // still recorded.
                    let _ = tokens.send(piece).await;
                }
            }
        }
        if !usage_seen {
            completion.prompt_tokens =
                estimate_tokens(&prompt.system) + estimate_tokens(&prompt.user);
            completion.completion_tokens = estimate_tokens(&completion.text);
        }
        Ok(completion)
    }
}

enum Attempt {
    Failed { reason: String, retry: bool },
    Interrupted(String),
}

/// A rough token count (four characters per token), for budgets and providers that do not
/// report usage.
pub fn estimate_tokens(text: &str) -> u32 {
    (text.chars().count() as u32).div_ceil(4)
}
