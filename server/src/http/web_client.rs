//! The browser client: the files Vite built from `server/web/` (`--web-dir`), served at `/`.
//!
//! A path naming a file of the directory answers that file; any other path outside the
//! server's own prefixes answers `index.html`, so the client's routes (`/rooms/{id}`,
//! `/invite/{token}`, `/share/{token}`) load the app, which then reads the path itself.
//! Paths under the server's prefixes (`/api`, `/ws`, …) never reach the client: an unknown
//! one keeps answering the JSON 404.

use std::path::{Path, PathBuf};

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::http::error::ApiError;

/// Where the built client lives.
#[derive(Clone, Debug)]
pub struct WebAssets {
    root: PathBuf,
}

impl WebAssets {
    /// Serves the files under `root` (which may not exist yet: it is looked up per request,
    /// so building the client while the server runs is enough).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
}

/// Prefixes owned by the server; the client never answers below them.
const SERVER_PREFIXES: &[&str] = &["/api", "/ws", "/healthz", "/readyz", "/metrics"];

/// Vite names everything under `/assets/` after a hash of its content, so a name never
/// changes meaning and may be cached for good.
const IMMUTABLE_PREFIX: &str = "/assets/";

/// What answers when the client has not been built.
const NOT_BUILT: &str = "The Tandem web app is not built.\n\n\
Build it with `npm ci && npm run build` in server/web (scripts/serve does this for you),\n\
or point --web-dir (TANDEM_WEB_DIR) at a directory holding a built copy.\n\
The HTTP API (/api/...) and the WebSocket endpoint (/ws/{room}) work without it.\n";

fn owned_by_server(path: &str) -> bool {
    SERVER_PREFIXES.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The file a request path names inside `root`, if the path is a plain relative one: no
/// empty, dot-leading (`..`, hidden files) or backslash-holding segment.
fn file_under(root: &Path, path: &str) -> Option<PathBuf> {
    let mut file = root.to_path_buf();
    let mut segments = 0;
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment.starts_with('.') || segment.contains('\\') || segment.contains('\0') {
            return None;
        }
        file.push(segment);
        segments += 1;
    }
    (segments > 0).then_some(file)
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "ttf" => "font/ttf",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether `Accept-Encoding` lists gzip (or `*`) without refusing it with `q=0`.
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|param| {
                param
                    .trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

async fn read_file(file: &Path) -> Option<Vec<u8>> {
    match tokio::fs::metadata(file).await {
        Ok(meta) if meta.is_file() => tokio::fs::read(file).await.ok(),
        _ => None,
    }
}

/// The default service: the client's files, `index.html` for its routes, the JSON 404 for
/// unknown server paths and for methods other than GET and HEAD.
pub async fn serve(
    req: HttpRequest,
    assets: Option<web::Data<WebAssets>>,
) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    let readable = req.method() == Method::GET || req.method() == Method::HEAD;
    if owned_by_server(path) || !readable {
        return Err(ApiError::not_found("no such route"));
    }
    let Some(assets) = assets else {
        return Ok(not_built());
    };
    if let Some(file) = file_under(&assets.root, path)
        && let Some(body) = read_file(&file).await
    {
        let mut response = HttpResponse::Ok();
        response.insert_header((header::CONTENT_TYPE, content_type(&file)));
        response.insert_header((header::VARY, "Accept-Encoding"));
        // The build writes a gzip copy beside each large text file; send it when the browser
        // takes gzip.
        let mut body = body;
        if accepts_gzip(&req) {
            let mut gzipped = file.clone().into_os_string();
            gzipped.push(".gz");
            if let Some(compressed) = read_file(Path::new(&gzipped)).await {
                response.insert_header((header::CONTENT_ENCODING, "gzip"));
                body = compressed;
            }
        }
        if path.starts_with(IMMUTABLE_PREFIX) {
            // The security middleware adds its `no-store` only where none is set.
            response.insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"));
        }
        return Ok(response.body(body));
    }
    if path.starts_with(IMMUTABLE_PREFIX) {
        // A missing chunk must not be answered with HTML the browser would try to run.
        return Ok(HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such asset\n"));
    }
    match read_file(&assets.root.join("index.html")).await {
        Some(index) => Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(index)),
        None => Ok(not_built()),
    }
}

fn not_built() -> HttpResponse {
    HttpResponse::build(StatusCode::NOT_FOUND)
        .content_type("text/plain; charset=utf-8")
        .body(NOT_BUILT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_prefixes_are_whole_segments() {
        assert!(owned_by_server("/api"));
        assert!(owned_by_server("/api/nope"));
        assert!(owned_by_server("/ws/room"));
        assert!(owned_by_server("/metrics"));
        assert!(!owned_by_server("/apiary"));
        assert!(!owned_by_server("/rooms/abc"));
        assert!(!owned_by_server("/"));
    }

    #[test]
    fn gzip_is_sent_only_to_who_takes_it() {
        let accepts = |value: &str| {
            let req = actix_web::test::TestRequest::default()
                .insert_header((header::ACCEPT_ENCODING, value))
                .to_http_request();
            accepts_gzip(&req)
        };
        assert!(accepts("gzip, deflate, br"));
        assert!(accepts("br;q=1.0, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip; q=0.0, br"));
        let bare = actix_web::test::TestRequest::default().to_http_request();
        assert!(!accepts_gzip(&bare));
    }

    #[test]
    fn paths_never_leave_the_root() {
        let root = Path::new("/srv/web");
        assert_eq!(
            file_under(root, "/assets/index-1a2b.js"),
            Some(PathBuf::from("/srv/web/assets/index-1a2b.js"))
        );
        assert_eq!(file_under(root, "/"), None);
        assert_eq!(file_under(root, "/../etc/passwd"), None);
        assert_eq!(file_under(root, "/assets/../../x"), None);
        assert_eq!(file_under(root, "/.env"), None);
        assert_eq!(file_under(root, "/a\\..\\b"), None);
    }
}
