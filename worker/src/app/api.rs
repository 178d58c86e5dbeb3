//! The HTTP API: uploads, states, thumbnails, the gallery list and the event stream. Every
//! error is `{"error": {"kind", "message"}}` with a stable `kind` and its status.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use serde::{Deserialize, Serialize};

use super::images::{Catalog, Image};
use super::live::Hub;
use super::objects::{ObjectError, ObjectInfo};
use super::upload::{self, Checked, Reading};
use super::AppMetrics;
use crate::naming::{parse_upload_object, upload_object, UploadId};
use crate::service::shutdown::Shutdown;

/// Everything a request needs.
pub struct App {
    pub catalog: Arc<Catalog>,
    pub hub: Arc<Hub>,
    pub auth_token: Option<String>,
    pub max_upload_bytes: u64,
    pub read_timeout: Duration,
    pub limits: thumbd_engine::Limits,
    pub uploads_per_client: usize,
    pub uploads_by_client: Mutex<HashMap<IpAddr, usize>>,
    pub metrics: AppMetrics,
    pub shutdown: Shutdown,
    pub upload_memory: UploadMemory,
}

/// The bytes of upload bodies held at once, across all clients: many large uploads together
/// are refused (503) rather than get the pod OOM-killed.
pub struct UploadMemory {
    /// Permits of 1 KiB.
    kib: Arc<tokio::sync::Semaphore>,
}

impl UploadMemory {
    pub fn new(bytes: u64) -> UploadMemory {
        let kib = (bytes / 1024).min(tokio::sync::Semaphore::MAX_PERMITS as u64) as usize;
        UploadMemory {
            kib: Arc::new(tokio::sync::Semaphore::new(kib.max(1))),
        }
    }

    /// Reserves `bytes` until the permit drops, or refuses at once.
    fn reserve(&self, bytes: u64) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        self.kib
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| ApiError {
                retry_after: Some(2),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the server holds as many uploads as its memory allows; try again shortly",
                )
            })
    }
}

/// An API error: status, stable kind, readable message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn no_file(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "no_file", message)
    }
    pub fn timeout(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::REQUEST_TIMEOUT, "timeout", message)
    }
    pub fn too_large(limit: u64) -> ApiError {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the upload is over the limit of {limit} bytes"),
        )
    }
    pub fn unsupported(message: impl Into<String>) -> ApiError {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
            message,
        )
    }
    pub fn image_too_large(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "image_too_large", message)
    }
    pub fn corrupt(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "corrupt", message)
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    fn unauthorized() -> ApiError {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a bearer token is required (Authorization: Bearer TOKEN)",
        )
    }
    fn storage(e: ObjectError) -> ApiError {
        ApiError {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                format!("storage is unavailable, try again shortly ({e})"),
            )
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    kind: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorFields {
                kind: self.kind,
                message: &self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<ObjectError> for ApiError {
    fn from(e: ObjectError) -> ApiError {
        ApiError::storage(e)
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl App {
    fn authorize(&self, headers: &HeaderMap, query_token: Option<&str>) -> Result<(), ApiError> {
        let Some(expected) = &self.auth_token else {
            return Ok(());
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match bearer.or(query_token) {
            Some(given) if same_secret(given.as_bytes(), expected.as_bytes()) => Ok(()),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// Holds one of a client's upload slots; gives it back when dropped.
struct ClientSlot {
    app: Arc<App>,
    ip: IpAddr,
}

impl ClientSlot {
    fn take(app: &Arc<App>, ip: IpAddr) -> Result<ClientSlot, ApiError> {
        let mut counts = app.uploads_by_client.lock().expect("not poisoned");
        let count = counts.entry(ip).or_insert(0);
        if *count >= app.uploads_per_client {
            return Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    format!(
                        "at most {} uploads at once per client",
                        app.uploads_per_client
                    ),
                )
            });
        }
        *count += 1;
        Ok(ClientSlot {
            app: app.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.app.uploads_by_client.lock().expect("not poisoned");
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
}

/// The answer to an accepted upload: where its state and (soon) thumbnails are.
#[derive(Debug, Serialize)]
pub struct Accepted {
    #[serde(flatten)]
    image: Image,
    /// Size → URL each thumbnail will be served at, once ready (the `thumbnails` array of
    /// the image's state says when).
    thumbnail_urls: BTreeMap<u32, String>,
}

#[derive(Serialize)]
struct AcceptedMany {
    images: Vec<Accepted>,
}

/// `POST /api/images`.
pub async fn post_image(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let result = upload(&app, peer, query, request).await;
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(e) => e.kind,
    };
    app.metrics.upload(outcome, started.elapsed());
    match result {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(client = %peer.ip(), kind = e.kind, status = e.status.as_u16(), error = %e.message, "upload refused");
            e.into_response()
        }
    }
}

/// What a refused upload's body is read for before the answer, at most.
const DRAIN_BYTES: u64 = 16 << 20;

/// Reads and drops up to `cap` bytes of a body refused from its headers. hyper closes a
/// connection whose request body was left unread, and a client still sending it then gets a
/// broken pipe instead of the 413 and its JSON; reading on (for a bounded number of bytes, as a
/// web server's lingering close does) lets it finish sending and read the answer.
async fn drain(body: Body, cap: u64, timeout: Duration) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    while seen <= cap {
        match tokio::time::timeout(timeout, stream.next()).await {
            Ok(Some(Ok(chunk))) => seen += chunk.len() as u64,
            _ => break,
        }
    }
}

async fn upload(
    app: &Arc<App>,
    peer: SocketAddr,
    query: UploadQuery,
    request: Request,
) -> Result<Response, ApiError> {
    app.authorize(request.headers(), None)?;
    let _slot = ClientSlot::take(app, peer.ip())?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let limit = app.max_upload_bytes.min(app.limits.max_input_bytes);
    // Held until the upload is stored: what the body may occupy, from its declared length.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        drain(request.into_body(), DRAIN_BYTES, app.read_timeout).await;
        return Err(ApiError::too_large(limit));
    }
    let _memory = app.upload_memory.reserve(declared.unwrap_or(limit))?;
    let mut reading = Reading {
        limit,
        timeout: app.read_timeout,
        limits: app.limits,
    };
    let files = match content_type.as_deref() {
        None | Some("") => return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "missing_content_type",
            "send the image as application/octet-stream (or image/*), or as multipart/form-data",
        )),
        Some("multipart/form-data") => {
            let mut multipart = Multipart::from_request(request, &())
                .await
                .map_err(|e| ApiError::bad_request(format!("not a multipart body: {e}")))?;
            let mut files = Vec::new();
            while let Some(field) = multipart
                .next_field()
                .await
                .map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?
            {
                if field.name() == Some("file") {
                    files.push(upload::field(field, &mut reading).await?);
                }
            }
            if files.is_empty() {
                return Err(ApiError::no_file("the form has no `file` field"));
            }
            files
        }
        Some(t) if t == "application/octet-stream" || t.starts_with("image/") => {
            let mut file = upload::raw(request.into_body(), &mut reading).await?;
            file.file_name = query.name;
            vec![file]
        }
        Some(t) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "wrong_content_type",
                format!(
                    "`{t}` is not an upload type: send the image as application/octet-stream \
                     (or image/*), or as multipart/form-data"
                ),
            ))
        }
    };
    let many = files.len() > 1;
    let mut accepted = Vec::with_capacity(files.len());
    for file in files {
        accepted.push(store(app, file).await?);
    }
    let body = if many {
        serde_json::to_value(AcceptedMany { images: accepted })
    } else {
        serde_json::to_value(accepted.pop().expect("one file"))
    }
    .expect("serialisable");
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Writes one checked upload under a fresh id; never overwrites.
async fn store(app: &App, file: Checked) -> Result<Accepted, ApiError> {
    let catalog = &app.catalog;
    let original = file.file_name.as_deref().unwrap_or("");
    // A fresh id per attempt: a taken name (an id collision) is retried, never overwritten.
    for _ in 0..4 {
        let id = new_id();
        let object = upload_object(&catalog.upload_prefix, id, original);
        let bytes = file.len;
        match catalog
            .uploads
            .create(&object, file.content_type, file.data.clone())
            .await
        {
            Ok(generation) => {
                app.metrics.upload_bytes.inc_by(bytes);
                let (_, name) = parse_upload_object(&catalog.upload_prefix, &object)
                    .expect("an upload's own name");
                tracing::info!(id = %id, object, bytes, "upload stored");
                catalog.remember(
                    id,
                    ObjectInfo {
                        name: object.clone(),
                        generation,
                        size: bytes,
                        ..ObjectInfo::default()
                    },
                );
                let thumbnail_urls = catalog
                    .sizes
                    .iter()
                    .map(|&s| (s, format!("/api/images/{id}/thumbnails/{s}")))
                    .collect();
                return Ok(Accepted {
                    image: Image::pending(id, &name, &object),
                    thumbnail_urls,
                });
            }
            Err(ObjectError::Exists) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::storage(ObjectError::Unavailable(
        "no free object name after 4 tries".into(),
    )))
}

fn new_id() -> UploadId {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the OS random source");
    UploadId::new(millis, u32::from_le_bytes(random))
}

fn parse_id(id: &str) -> Result<UploadId, ApiError> {
    UploadId::parse(id).ok_or_else(|| ApiError::not_found(format!("no image `{id}`")))
}

/// `GET /api/images/{id}`.
pub async fn get_image(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Image>, ApiError> {
    let parsed = parse_id(&id)?;
    match app.catalog.image(parsed).await? {
        Some(image) => Ok(Json(image)),
        None => Err(ApiError::not_found(format!("no image `{id}`"))),
    }
}

/// `GET /api/images/{id}/thumbnails/{size}`: the bytes, with an ETag and Cache-Control.
pub async fn get_thumbnail(
    State(app): State<Arc<App>>,
    Path((id, size)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let parsed = parse_id(&id)?;
    let size: u32 = size
        .parse()
        .map_err(|_| ApiError::not_found(format!("no size `{size}`")))?;
    let Some((data, info)) = app.catalog.thumbnail(parsed, size).await? else {
        return Err(ApiError::not_found(format!(
            "image `{id}` has no {size} px thumbnail (yet)"
        )));
    };
    let etag = format!("\"{}-{}\"", info.generation, data.len());
    let cache = [
        (header::ETAG, etag.clone()),
        // Thumbnails of an upload never change (an upload is never overwritten).
        (header::CACHE_CONTROL, "private, max-age=86400".to_string()),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let content_type = thumbd_engine::probe(&data, &thumbd_engine::Limits::default())
        .map(|i| i.format.mime_type())
        .unwrap_or("application/octet-stream");
    Ok((
        [(header::CONTENT_TYPE, content_type.to_string())],
        cache,
        Body::from(data),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    page_token: Option<String>,
}

/// `GET /api/images?limit=&page_token=`: uploads, newest first.
pub async fn list_images(
    State(app): State<Arc<App>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<super::images::Page>, ApiError> {
    let limit = query.limit.unwrap_or(24).clamp(1, 100);
    let after = query.page_token.filter(|t| !t.is_empty());
    if let Some(token) = &after {
        if parse_upload_object(&app.catalog.upload_prefix, token).is_none() {
            return Err(ApiError::bad_request(
                "page_token is not one this service gave",
            ));
        }
    }
    Ok(Json(app.catalog.recent(limit, after.as_deref()).await?))
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    access_token: Option<String>,
}

/// `GET /api/events`: Server-Sent Events, `ready` and `failed`, with catch-up.
pub async fn events(
    State(app): State<Arc<App>>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    app.authorize(&headers, query.access_token.as_deref())?;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let catchup = app.hub.subscribe(last.as_deref());
    app.metrics.event_streams.inc();
    let state = StreamState {
        missed: catchup.missed.into(),
        reset: catchup.reset,
        live: catchup.live,
        shutdown: app.shutdown.clone(),
        _open: OpenStream(app.clone()),
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        if s.reset {
            s.reset = false;
            return Some((Ok(SseEvent::default().event("reset").data("{}")), s));
        }
        if let Some(e) = s.missed.pop_front() {
            return Some((Ok(to_sse(&e)), s));
        }
        let next = tokio::select! {
            _ = s.shutdown.wait() => return None,
            next = s.live.recv() => next,
        };
        match next {
            Ok(e) => Some((Ok(to_sse(&e)), s)),
            // Too slow a reader: it missed events, so it refetches the list.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                Some((Ok(SseEvent::default().event("reset").data("{}")), s))
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct StreamState {
    missed: std::collections::VecDeque<Arc<super::live::LiveEvent>>,
    reset: bool,
    live: tokio::sync::broadcast::Receiver<Arc<super::live::LiveEvent>>,
    shutdown: Shutdown,
    _open: OpenStream,
}

/// Counts open event streams.
struct OpenStream(Arc<App>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.metrics.event_streams.dec();
    }
}

fn to_sse(e: &super::live::LiveEvent) -> SseEvent {
    SseEvent::default()
        .id(e.id.clone())
        .event(e.kind)
        .data(e.data.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
