//! The LLM stand-in: a scripted OpenAI-compatible chat completions server on loopback.
//!
//! Tests point Tandem's AI provider at [`LlmStandIn::base_url`], queue the answers they want
//! with [`LlmStandIn::push`] and read back what Tandem asked with [`LlmStandIn::requests`].
//! It speaks just enough HTTP/1.1 for that (one request per connection, then
//! `Connection: close`) and the OpenAI wire format of `POST /v1/chat/completions`, streamed
//! (server-sent events) or not, plus `GET /v1/models`.
//!
//! Each chat request takes the next scripted reply in push order; when none is queued it gets
//! the default reply. Recording the request and taking its reply happen under one lock, so
//! the n-th entry of [`LlmStandIn::requests`] is the request that got the n-th reply.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long [`LlmStandIn::wait_requests`] waits before failing the test.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes of request line plus headers (and, separately, of chunk-size lines) we read.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most bytes of request body we accept; prompts in tests are far smaller.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The one model `GET /v1/models` lists, and the model answers name when a request names none.
const STAND_IN_MODEL: &str = "stand-in";

/// What the stand-in answers while no reply is queued, until [`LlmStandIn::set_default`].
const DEFAULT_ANSWER: &str = "stand-in reply";

/// How the stand-in answers one chat completions request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptedReply {
    /// Answer with these content pieces. A request with `"stream": true` gets them as
    /// server-sent events: one `chat.completion.chunk` per piece (the first also carrying
    /// `"role": "assistant"`), a chunk with `"finish_reason": "stop"`, a usage chunk when the
    /// request has `"stream_options": {"include_usage": true}`, then `data: [DONE]`.
    /// Any other request gets one `chat.completion` with the pieces concatenated, and `usage`.
    ///
    /// Usage counts a quarter of the characters in the request's message contents as prompt
    /// tokens (at least one) and each piece as one completion token.
    Text {
        /// The answer, in the pieces a stream delivers.
        pieces: Vec<String>,
        /// Pause between two streamed pieces.
        delay_between: Duration,
        /// Pause before the first piece. A stream sends its response headers first, as a real
        /// provider does; an unstreamed answer waits as long as the stream would have taken
        /// to finish before it answers at all.
        delay_before: Duration,
    },
    /// Answer with this HTTP status and an OpenAI-style error body
    /// `{"error": {"message", "type", "param", "code"}}`.
    Error {
        /// HTTP status code, e.g. 429 or 503.
        status: u16,
        /// The error's `message`.
        message: String,
    },
    /// Read the request and never answer; the connection stays open until the client gives up
    /// or the stand-in is dropped.
    Hang,
}

impl ScriptedReply {
    /// The answer `pieces`, sent without delay.
    pub fn text(pieces: &[&str]) -> Self {
        Self::slow(pieces, Duration::ZERO, Duration::ZERO)
    }

    /// The answer `pieces`, the first after `before`, the others `between` apart.
    pub fn slow(pieces: &[&str], before: Duration, between: Duration) -> Self {
        Self::Text {
            pieces: pieces.iter().map(|piece| piece.to_string()).collect(),
            delay_between: between,
            delay_before: before,
        }
    }

    /// An error response with this status and message.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::Error {
            status,
            message: message.into(),
        }
    }
}

/// A scripted OpenAI-compatible server on a free loopback port; it stops when dropped.
pub struct LlmStandIn {
    address: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; it owns every connection task, so aborting it (on drop) ends them all.
    task: JoinHandle<()>,
}

/// State shared by the handle and the connection tasks.
struct Shared {
    /// Queued replies, the default reply and the recorded requests. A `std` mutex on purpose:
    /// it is held only to push, pop or copy, never across an `.await`.
    script: Mutex<Script>,
    /// How many chat requests have been recorded. Connection tasks send (while holding
    /// `script`, so the count never goes backwards); [`LlmStandIn::wait_requests`] waits on it.
    recorded: watch::Sender<usize>,
}

struct Script {
    queued: VecDeque<ScriptedReply>,
    default: ScriptedReply,
    requests: Vec<Value>,
}

impl Shared {
    /// Records `request` and takes the reply it gets; returns that reply and the request's
    /// position (1-based), which names the answer (`chatcmpl-stand-in-<position>`).
    fn record(&self, request: Value) -> (usize, ScriptedReply) {
        let mut script = self.script.lock().expect("script lock");
        let reply = match script.queued.pop_front() {
            Some(reply) => reply,
            None => script.default.clone(),
        };
        script.requests.push(request);
        let position = script.requests.len();
        self.recorded.send_replace(position);
        (position, reply)
    }
}

impl LlmStandIn {
    /// Binds `127.0.0.1:0` and starts serving. Until told otherwise every chat request is
    /// answered with the text `"stand-in reply"` in one piece.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the LLM stand-in")?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                queued: VecDeque::new(),
                default: ScriptedReply::text(&[DEFAULT_ANSWER]),
                requests: Vec::new(),
            }),
            recorded: watch::Sender::new(0),
        });
        let task = tokio::spawn(accept_connections(listener, shared.clone()));
        Ok(Self {
            address,
            shared,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL OpenAI clients expect.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Queues `reply` for the first chat request that has not yet taken one.
    pub fn push(&self, reply: ScriptedReply) {
        self.lock().queued.push_back(reply);
    }

    /// The reply chat requests get while nothing is queued.
    pub fn set_default(&self, reply: ScriptedReply) {
        self.lock().default = reply;
    }

    /// The body of every chat completions request received so far, in arrival order.
    /// Requests whose body is not JSON are answered 400 and not recorded.
    pub fn requests(&self) -> Vec<Value> {
        self.lock().requests.clone()
    }

    /// Resolves once at least `count` chat requests have been recorded; fails after 30 s.
    pub async fn wait_requests(&self, count: usize) -> Result<()> {
        let mut recorded = self.shared.recorded.subscribe();
        let reached = tokio::time::timeout(WAIT_TIMEOUT, recorded.wait_for(|n| *n >= count))
            .await
            // The sender lives in `self.shared`, so waiting fails only by timing out.
            .is_ok_and(|waited| waited.is_ok());
        if reached {
            return Ok(());
        }
        anyhow::bail!(
            "the LLM stand-in received {} chat requests in {WAIT_TIMEOUT:?}, expected {count}",
            *recorded.borrow()
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.shared.script.lock().expect("script lock")
    }
}

impl Drop for LlmStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_connections(listener: TcpListener, shared: Arc<Shared>) {
    // Dropping the set aborts its tasks: hanging connections end with the server.
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        // Streamed pieces are small writes; without this, Nagle's algorithm holds them back.
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(stream, shared.clone()));
    }
}

/// One parsed HTTP request.
struct HttpRequest {
    method: String,
    /// The request target without its query string.
    path: String,
    body: Vec<u8>,
}

/// Why no request could be read from a connection.
enum RequestError {
    /// The client closed or reset the connection: there is no one to answer.
    ClientGone,
    /// The bytes are not an HTTP/1.1 request we accept: answer 400 with this reason.
    Malformed(&'static str),
}

impl From<std::io::Error> for RequestError {
    fn from(_: std::io::Error) -> Self {
        Self::ClientGone
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut connection = BufReader::new(stream);
    // Write errors mean the client went away, which tests do on purpose (timeouts, cancels).
    let _ = match read_request(&mut connection).await {
        Ok(request) => route(&mut connection, request, &shared).await,
        Err(RequestError::ClientGone) => Ok(()),
        Err(RequestError::Malformed(reason)) => {
            write_error(connection.get_mut(), 400, reason).await
        }
    };
}

async fn route(
    connection: &mut BufReader<TcpStream>,
    request: HttpRequest,
    shared: &Shared,
) -> std::io::Result<()> {
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/v1/chat/completions" | "/chat/completions") => {
            answer_chat(connection, &request.body, shared).await
        }
        ("GET", "/v1/models" | "/models") => {
            let models = json!({
                "object": "list",
                "data": [{"id": STAND_IN_MODEL, "object": "model", "created": 0, "owned_by": "stand-in"}],
            });
            write_json(connection.get_mut(), 200, &models).await
        }
        _ => {
            let message = format!("no route for {} {}", request.method, request.path);
            write_error(connection.get_mut(), 404, &message).await
        }
    }
}

async fn answer_chat(
    connection: &mut BufReader<TcpStream>,
    body: &[u8],
    shared: &Shared,
) -> std::io::Result<()> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return write_error(connection.get_mut(), 400, "the request body is not JSON").await;
    };
    let (position, reply) = shared.record(request.clone());
    let (pieces, delay_before, delay_between) = match reply {
        ScriptedReply::Text {
            pieces,
            delay_between,
            delay_before,
        } => (pieces, delay_before, delay_between),
        ScriptedReply::Error { status, message } => {
            return write_error(connection.get_mut(), status, &message).await;
        }
        ScriptedReply::Hang => {
            // Keep reading so the task notices when the client gives up and closes.
            return tokio::io::copy(connection, &mut tokio::io::sink())
                .await
                .map(drop);
        }
    };
    let prompt_tokens = prompt_tokens(&request);
    let completion_tokens = pieces.len() as u64;
    let answer = Answer {
        id: format!("chatcmpl-stand-in-{position}"),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        model: request["model"]
            .as_str()
            .unwrap_or(STAND_IN_MODEL)
            .to_owned(),
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        },
    };
    let stream = connection.get_mut();
    if request["stream"].as_bool() != Some(true) {
        let pauses = u32::try_from(pieces.len().saturating_sub(1)).unwrap_or(u32::MAX);
        tokio::time::sleep(delay_before.saturating_add(delay_between.saturating_mul(pauses))).await;
        let completion = answer.completion(&pieces.concat());
        return write_response(stream, 200, "application/json", &completion).await;
    }

    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await?;
    tokio::time::sleep(delay_before).await;
    for (index, piece) in pieces.iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(delay_between).await;
        }
        let delta = Delta {
            role: (index == 0).then_some("assistant"),
            content: Some(piece),
        };
        write_event(
            stream,
            &answer.chunk(vec![ChunkChoice::new(delta, None)], None),
        )
        .await?;
    }
    let stop = ChunkChoice::new(Delta::default(), Some("stop"));
    write_event(stream, &answer.chunk(vec![stop], None)).await?;
    if request["stream_options"]["include_usage"].as_bool() == Some(true) {
        write_event(stream, &answer.chunk(Vec::new(), Some(answer.usage))).await?;
    }
    write_event(stream, b"[DONE]").await?;
    stream.write_all(b"0\r\n\r\n").await?;
    stream.shutdown().await
}

/// A quarter of the characters in the request's message contents, at least one. Content is
/// either a string or a list of parts, of which the `text` ones count.
fn prompt_tokens(request: &Value) -> u64 {
    let messages = request["messages"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let characters: usize = messages
        .iter()
        .map(|message| match &message["content"] {
            Value::String(text) => text.chars().count(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|part| part["text"].as_str())
                .map(|text| text.chars().count())
                .sum(),
            _ => 0,
        })
        .sum();
    (characters as u64 / 4).max(1)
}

/// What every object of one answer shares.
struct Answer {
    id: String,
    created: u64,
    model: String,
    usage: Usage,
}

impl Answer {
    fn completion(&self, content: &str) -> Vec<u8> {
        let completion = ChatCompletion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            choices: [MessageChoice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content,
                },
                finish_reason: "stop",
                logprobs: None,
            }],
            usage: self.usage,
        };
        serde_json::to_vec(&completion).expect("plain structs serialize")
    }

    fn chunk(&self, choices: Vec<ChunkChoice<'_>>, usage: Option<Usage>) -> Vec<u8> {
        let chunk = ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        serde_json::to_vec(&chunk).expect("plain structs serialize")
    }
}

// The wire objects are structs rather than `json!` values so that fields keep OpenAI's order.

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [MessageChoice<'a>; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct MessageChoice<'a> {
    index: u32,
    message: Message<'a>,
    finish_reason: &'static str,
    /// Always `null`: the stand-in has no log probabilities to give.
    logprobs: Option<()>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ChatCompletionChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
    logprobs: Option<()>,
}

impl<'a> ChunkChoice<'a> {
    fn new(delta: Delta<'a>, finish_reason: Option<&'static str>) -> Self {
        Self {
            index: 0,
            delta,
            finish_reason,
            logprobs: None,
        }
    }
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

#[derive(Serialize, Clone, Copy)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// Reads one request: request line, headers, and a body framed by `Content-Length` or
/// `Transfer-Encoding: chunked`. Every size is capped before anything is allocated for it.
async fn read_request<R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Result<HttpRequest, RequestError> {
    let mut head_budget = MAX_HEAD_BYTES;
    let request_line = read_line(reader, &mut head_budget).await?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(RequestError::Malformed("only HTTP/1.x is served"));
    }
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let method = method.to_owned();

    let mut content_length = None;
    let mut chunked = false;
    loop {
        let line = read_line(reader, &mut head_budget).await?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(RequestError::Malformed("malformed header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse::<usize>()
                .map_err(|_| RequestError::Malformed("malformed Content-Length"))?;
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides the framing; chunked must be last when present.
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        }
    }

    // Chunked framing wins over Content-Length when a request has both (RFC 9112, 6.3).
    let body = if chunked {
        read_chunked_body(reader).await?
    } else {
        let length = content_length.unwrap_or(0);
        if length > MAX_BODY_BYTES {
            return Err(RequestError::Malformed("request body too large"));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        body
    };
    Ok(HttpRequest { method, path, body })
}

async fn read_chunked_body<R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Result<Vec<u8>, RequestError> {
    let mut framing_budget = MAX_HEAD_BYTES;
    let mut body = Vec::new();
    loop {
        let size_line = read_line(reader, &mut framing_budget).await?;
        let size_digits = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_digits, 16)
            .map_err(|_| RequestError::Malformed("malformed chunk size"))?;
        if size == 0 {
            // Trailer fields, if any, up to the empty line that ends the message.
            while !read_line(reader, &mut framing_budget).await?.is_empty() {}
            return Ok(body);
        }
        let end = body
            .len()
            .checked_add(size)
            .filter(|end| *end <= MAX_BODY_BYTES)
            .ok_or(RequestError::Malformed("request body too large"))?;
        let start = body.len();
        body.resize(end, 0);
        reader.read_exact(&mut body[start..]).await?;
        if !read_line(reader, &mut framing_budget).await?.is_empty() {
            return Err(RequestError::Malformed("chunk not followed by CRLF"));
        }
    }
}

/// Reads one line, without its line ending, spending at most `budget` bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    budget: &mut usize,
) -> Result<String, RequestError> {
    let limit = *budget;
    if limit == 0 {
        return Err(RequestError::Malformed("request head too large"));
    }
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(limit as u64)
        .read_until(b'\n', &mut line)
        .await?;
    *budget -= read;
    if line.last() != Some(&b'\n') {
        return Err(if read == limit {
            RequestError::Malformed("request head too large")
        } else {
            RequestError::ClientGone
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| RequestError::Malformed("request head is not UTF-8"))
}

/// Sends `data: <data>\n\n` as one chunk of a chunked response body.
async fn write_event(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    let event_length = "data: ".len() + data.len() + "\n\n".len();
    let mut frame = format!("{event_length:x}\r\ndata: ").into_bytes();
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\n\n\r\n");
    stream.write_all(&frame).await
}

/// An OpenAI-style error body; `type` and `code` follow what OpenAI sends for `status`.
async fn write_error(stream: &mut TcpStream, status: u16, message: &str) -> std::io::Result<()> {
    let (kind, code) = match status {
        401 => ("invalid_request_error", "invalid_api_key"),
        404 => ("invalid_request_error", "not_found"),
        429 => ("requests", "rate_limit_exceeded"),
        500..=599 => ("server_error", "server_error"),
        _ => ("invalid_request_error", "invalid_request"),
    };
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    write_json(stream, status, &body).await
}

async fn write_json(stream: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let body = serde_json::to_vec(body).expect("JSON values serialize");
    write_response(stream, status, "application/json", &body).await
}

async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        reason_phrase(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        // Clients read the code; the phrase is only for people.
        _ => "Scripted Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = anyhow::Result<()>;

    fn chat_request(stream: bool, include_usage: bool) -> Value {
        let mut request = json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Say hi"}]},
            ],
        });
        if stream {
            request["stream"] = json!(true);
        }
        if include_usage {
            request["stream_options"] = json!({"include_usage": true});
        }
        request
    }

    async fn post(stand_in: &LlmStandIn, body: &Value) -> Result<reqwest::Response> {
        let url = format!("{}/chat/completions", stand_in.base_url());
        Ok(reqwest::Client::new().post(url).json(body).send().await?)
    }

    /// The text of the answer a plain (unstreamed) request gets.
    async fn answer_text(stand_in: &LlmStandIn) -> Result<String> {
        let completion: Value = post(stand_in, &chat_request(false, false))
            .await?
            .json()
            .await?;
        Ok(completion["choices"][0]["message"]["content"]
            .as_str()
            .context("no content")?
            .to_owned())
    }

    /// The `created` stamp of the first event of an SSE body.
    fn first_created(body: &str) -> Result<u64> {
        let first = body
            .strip_prefix("data: ")
            .and_then(|rest| rest.split("\n\n").next())
            .context("no first event")?;
        serde_json::from_str::<Value>(first)?["created"]
            .as_u64()
            .context("no created")
    }

    #[tokio::test]
    async fn an_unstreamed_request_gets_one_completion_with_usage() -> TestResult {
        let stand_in = LlmStandIn::start().await?;
        stand_in.push(ScriptedReply::text(&["Hel", "lo"]));
        let response = post(&stand_in, &chat_request(false, false)).await?;
        assert_eq!(response.status(), 200);
        let body = response.text().await?;
        let created = serde_json::from_str::<Value>(&body)?["created"]
            .as_u64()
            .context("no created")?;
        // "Be brief." and "Say hi" are 15 characters: 3 prompt tokens.
        let expected = format!(
            r#"{{"id":"chatcmpl-stand-in-1","object":"chat.completion","created":{created},"model":"gpt-test","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello"}},"finish_reason":"stop","logprobs":null}}],"usage":{{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}}}"#
        );
        assert_eq!(body, expected);
        Ok(())
    }

    #[tokio::test]
    async fn a_streamed_request_gets_one_event_per_piece_then_stop_usage_and_done() -> TestResult {
        let stand_in = LlmStandIn::start().await?;
        stand_in.push(ScriptedReply::text(&["Hel", "lo"]));
        let response = post(&stand_in, &chat_request(true, true)).await?;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        let body = response.text().await?;
        let created = first_created(&body)?;
        let head = format!(
            r#"{{"id":"chatcmpl-stand-in-1","object":"chat.completion.chunk","created":{created},"model":"gpt-test""#
        );
        let expected = [
            format!(
                r#"data: {head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":"Hel"}},"finish_reason":null,"logprobs":null}}]}}"#
            ),
            format!(
                r#"data: {head},"choices":[{{"index":0,"delta":{{"content":"lo"}},"finish_reason":null,"logprobs":null}}]}}"#
            ),
            format!(
                r#"data: {head},"choices":[{{"index":0,"delta":{{}},"finish_reason":"stop","logprobs":null}}]}}"#
            ),
            format!(
                r#"data: {head},"choices":[],"usage":{{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}}}"#
            ),
            "data: [DONE]".to_owned(),
        ];
        assert_eq!(body, expected.map(|event| event + "\n\n").concat());
        Ok(())
    }

    #[tokio::test]
    async fn a_stream_without_include_usage_has_no_usage_event() -> TestResult {
        let stand_in = LlmStandIn::start().await?;
        stand_in.push(ScriptedReply::text(&["Hi"]));
        let body = post(&stand_in, &chat_request(true, false))
            .await?
            .text()
            .await?;
        let events: Vec<Value> = body
            .split_terminator("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        assert_eq!(events.len(), 2, "{body}");
        assert!(events.iter().all(|event| event.get("usage").is_none()));
        assert!(body.ends_with("data: [DONE]\n\n"));
        Ok(())
    }

    #[tokio::test]
    async fn an_error_reply_carries_its_status_and_an_openai_error_body() -> TestResult {
        let stand_in = LlmStandIn::start().await?;
        let cases = [
            (false, 429, "requests", "rate_limit_exceeded"),
            (true, 503, "server_error", "server_error"),
            (false, 401, "invalid_request_error", "invalid_api_key"),
        ];
        for (stream, status, kind, code) in cases {
            stand_in.push(ScriptedReply::error(status, "scripted failure"));
            let response = post(&stand_in, &chat_request(stream, false)).await?;
            assert_eq!(response.status(), status);
            let body: Value = response.json().await?;
            let error =
                json!({"message": "scripted failure", "type": kind, "param": null, "code": code});
            assert_eq!(body, json!({ "error": error }));
        }
        Ok(())
    }

    #[tokio::test]
    async fn scripted_replies_are_taken_in_push_order_then_the_default() -> TestResult {
        let stand_in = LlmStandIn::start().await?;
        stand_in.push(ScriptedReply::text(&["first"]));
        stand_in.push(ScriptedReply::text(&["sec", "ond"]));
        assert_eq!(answer_text(&stand_in).await?, "first");
        assert_eq!(answer_text(&stand_in).await?, "second");
        assert_eq!(answer_text(&stand_in).await?, DEFAULT_ANSWER);
        stand_in.set_default(ScriptedReply::text(&["new default"]));
        assert_eq!(answer_text(&stand_in).await?, "new default");
        assert_eq!(answer_text(&stand_in).await?, "new default");
        Ok(())
    }

    #[tokio::test]
    async fn requests_are_recorded_and_waited_for() -> TestResult {
        let stand_in = LlmStandIn::start().await?;
        stand_in.wait_requests(0).await?;
        let posts = (0..3).map(|n| {
            let body = json!({"model": "m", "messages": [{"role": "user", "content": format!("question {n}")}]});
            let stand_in = &stand_in;
            async move { post(stand_in, &body).await }
        });
        let (responses, waited) = tokio::join!(
            futures_util::future::join_all(posts),
            stand_in.wait_requests(3)
        );
        waited?;
        for response in responses {
            assert_eq!(response?.status(), 200);
        }
        let mut questions: Vec<String> = stand_in
            .requests()
            .iter()
            .map(|request| {
                request["messages"][0]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        questions.sort();
        assert_eq!(questions, ["question 0", "question 1", "question 2"]);
        Ok(())
    }

    #[tokio::test]
    async fn a_hanging_reply_never_answers_and_ends_with_the_stand_in() -> TestResult {
        let stand_in = LlmStandIn::start().await?;
        stand_in.push(ScriptedReply::Hang);
        let url = format!("{}/chat/completions", stand_in.base_url());
        let request = tokio::spawn(
            reqwest::Client::new()
                .post(url)
                .json(&chat_request(true, false))
                .send(),
        );
        stand_in.wait_requests(1).await?;
        assert_eq!(stand_in.requests()[0]["stream"], true);
        // Dropping the stand-in closes the hanging connection: the client gets no response.
        drop(stand_in);
        assert!(request.await?.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn a_slow_reply_waits_before_and_between_pieces() -> TestResult {
        let stand_in = LlmStandIn::start().await?;
        let pause = Duration::from_millis(20);
        stand_in.push(ScriptedReply::slow(&["a", "b", "c"], pause, pause));
        let started = tokio::time::Instant::now();
        let body = post(&stand_in, &chat_request(true, false))
            .await?
            .text()
            .await?;
        assert!(started.elapsed() >= pause * 3, "{:?}", started.elapsed());
        assert_eq!(body.matches("\"content\":").count(), 3, "{body}");
        Ok(())
    }

    #[tokio::test]
    async fn models_are_listed_and_other_routes_are_not_found() -> TestResult {
        let stand_in = LlmStandIn::start().await?;
        let client = reqwest::Client::new();
        let models: Value = client
            .get(format!("{}/models", stand_in.base_url()))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(models["object"], "list");
        assert_eq!(models["data"][0]["id"], STAND_IN_MODEL);
        let missing = client
            .post(format!("{}/embeddings", stand_in.base_url()))
            .json(&json!({}))
            .send()
            .await?;
        assert_eq!(missing.status(), 404);
        let body: Value = missing.json().await?;
        assert_eq!(body["error"]["code"], "not_found");
        assert!(stand_in.requests().is_empty());
        Ok(())
    }

    /// Sends `raw` bytes on a fresh connection and returns everything the stand-in answers.
    async fn exchange(stand_in: &LlmStandIn, raw: &str) -> Result<String> {
        let mut stream = TcpStream::connect(stand_in.address).await?;
        stream.write_all(raw.as_bytes()).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn a_chunked_request_body_is_reassembled() -> TestResult {
        let stand_in = LlmStandIn::start().await?;
        let answer = exchange(
            &stand_in,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             8\r\n{\"model\"\r\n9;ext=1\r\n:\"chunky\"\r\n1\r\n}\r\n0\r\nTrailer: t\r\n\r\n",
        )
        .await?;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains(r#""model":"chunky""#), "{answer}");
        assert_eq!(stand_in.requests(), [json!({"model": "chunky"})]);
        Ok(())
    }

    #[tokio::test]
    async fn malformed_requests_get_400_and_are_not_recorded() -> TestResult {
        let stand_in = LlmStandIn::start().await?;
        let cases = [
            "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 3\r\n\r\nnot",
            "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
            "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n",
            "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "GARBAGE\r\n\r\n",
        ];
        for raw in cases {
            let answer = exchange(&stand_in, raw).await?;
            assert!(
                answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{raw:?} -> {answer}"
            );
        }
        assert!(stand_in.requests().is_empty());
        Ok(())
    }
}

/// One refactor, scripted end to end: the source, the selection asked about, the model's
/// streamed answer and the text once its suggestion is accepted.
pub mod refactor {
    use serde_json::{Value, json};

    /// The file's text before the assistant is asked.
    pub const SOURCE: &str = "let x = 1;\nlet total=a+b;\nlet y = 2;\n";
    /// The file's text after the suggestion is accepted.
    pub const REFACTORED: &str = "let x = 1;\nlet total = a + b;\nlet y = 2;\n";
    /// `let total=a+b;` in UTF-16 offsets.
    pub const SELECTION: (u32, u32) = (11, 25);
    /// The model's answer, piece by piece as it streams.
    pub const REPLY: &[&str] = &[
        "Here is a clearer version:\n",
        "```rust\n",
        "let total = a + b;\n",
        "```\n",
        "Same behaviour, spaced out.",
    ];

    /// The chat request body asking to refactor [`SELECTION`] of `file`.
    pub fn request(file: &str) -> Value {
        json!({
            "message": "tidy this up",
            "action": "refactor",
            "file": file,
            "selection": {"start": SELECTION.0, "end": SELECTION.1},
        })
    }
}
