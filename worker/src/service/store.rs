//! Reading originals and writing thumbnails, behind one trait so the Pub/Sub worker (Cloud
//! Storage) and the local `--watch` mode (a folder) run the same pipeline.
//!
//! Every thumbnail records the source object and generation it was made from; a write first
//! reads that record and refuses to replace thumbnails of a newer source generation, and the
//! write itself is conditional on the generation it read (compare-and-swap), so a stale
//! notification processed late, even concurrently with a newer one, never wins.

use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::model_ext::ReadRange;
use thumbd_engine::Thumbnail;

/// Custom-metadata keys written on every thumbnail.
pub const META_SOURCE_BUCKET: &str = "thumbd-source-bucket";
pub const META_SOURCE_OBJECT: &str = "thumbd-source-object";
pub const META_SOURCE_GENERATION: &str = "thumbd-source-generation";
/// fake-gcs-server drops the content type; keep it in metadata too.
pub const META_CONTENT_TYPE: &str = "thumbd-content-type";
pub const META_WIDTH: &str = "thumbd-width";
pub const META_HEIGHT: &str = "thumbd-height";

/// A storage failure, classified once here so the fate logic never inspects HTTP codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The source object (at the requested generation) does not exist: permanent.
    #[error("object not found")]
    NotFound,
    /// The object is larger than the byte cap: permanent.
    #[error("object is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    /// The request itself was refused (bad name...): permanent.
    #[error("storage refused the request: {0}")]
    Refused(String),
    /// 5xx, 429, timeouts, connection errors, missing output bucket, permissions: retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Transient errors are worth a redelivery; the others will fail the same way again.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// An original, as read.
#[derive(Debug)]
pub struct Fetched {
    pub data: Vec<u8>,
    /// The generation actually read (the live one when the job named none).
    pub generation: i64,
}

/// Where a thumbnail came from; recorded on it.
#[derive(Debug, Clone)]
pub struct SourceRef {
    pub bucket: String,
    pub name: String,
    pub generation: i64,
}

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Written,
    /// Thumbnails of a newer source generation are already there; nothing was written.
    Superseded,
}

/// Source reads and thumbnail writes.
pub trait Store: Send + Sync + 'static {
    /// Reads `name` (at `generation` if given), refusing more than `cap` bytes.
    fn fetch(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
        cap: u64,
    ) -> impl Future<Output = Result<Fetched, StoreError>> + Send;

    /// Writes one thumbnail at `key` unless a newer source generation's thumbnail is there.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        thumb: &Thumbnail,
        source: &SourceRef,
        cache_control: &str,
    ) -> impl Future<Output = Result<Put, StoreError>> + Send;
}

/// `<prefix><object name>/<size>.<ext>`: all sizes of one source side by side, and listable
/// by the source's name.
pub fn output_key(prefix: &str, name: &str, thumb: &Thumbnail) -> String {
    format!("{prefix}{name}/{}.{}", thumb.size, thumb.format.extension())
}

/// Cloud Storage through the official client (or fake-gcs-server via `STORAGE_EMULATOR_HOST`).
#[derive(Clone, Debug)]
pub struct GcsStore {
    client: Storage,
}

impl GcsStore {
    /// Builds the client. `endpoint` is set for emulators (with anonymous credentials);
    /// otherwise Application Default Credentials are used. Retryable errors are retried for
    /// `retry_for`, then surface as [`StoreError::Unavailable`] (and the message is nacked).
    pub async fn connect(
        endpoint: Option<&str>,
        retry_for: Duration,
    ) -> Result<Self, google_cloud_gax::client_builder::Error> {
        let policy = google_cloud_storage::retry_policy::RetryableErrors.with_time_limit(retry_for);
        let mut builder = Storage::builder().with_retry_policy(policy);
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint).with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        Ok(GcsStore {
            client: builder.build().await?,
        })
    }

    fn bucket_path(bucket: &str) -> String {
        format!("projects/_/buckets/{bucket}")
    }
}

/// Classifies a client error for a read of `what`.
fn classify(err: &google_cloud_storage::Error, reading_source: bool) -> StoreError {
    let http = err.http_status_code();
    let code = err.status().map(|s| s.code);
    let text = err.to_string();
    if http == Some(404) || code == Some(Code::NotFound) {
        // A missing source is the message's problem; a missing output bucket is ours.
        return if reading_source {
            StoreError::NotFound
        } else {
            StoreError::Unavailable(format!("output bucket or object missing: {text}"))
        };
    }
    match http {
        Some(400) | Some(411) | Some(413) | Some(414) => StoreError::Refused(text),
        _ if code == Some(Code::InvalidArgument) => StoreError::Refused(text),
        _ => StoreError::Unavailable(text),
    }
}

fn is_precondition_failed(err: &google_cloud_storage::Error) -> bool {
    err.http_status_code() == Some(412)
        || err.status().map(|s| s.code) == Some(Code::FailedPrecondition)
}

impl Store for GcsStore {
    async fn fetch(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
        cap: u64,
    ) -> Result<Fetched, StoreError> {
        let mut read = self.client.read_object(Self::bucket_path(bucket), name);
        if let Some(generation) = generation {
            read = read.set_generation(generation);
        }
        let mut response = read.send().await.map_err(|e| classify(&e, true))?;
        let object = response.object();
        let size = u64::try_from(object.size).unwrap_or(0);
        if size > cap {
            return Err(StoreError::TooLarge { size, limit: cap });
        }
        let mut data = Vec::with_capacity(size as usize);
        while let Some(chunk) = response.next().await {
            let chunk = chunk.map_err(|e| classify(&e, true))?;
            if (data.len() + chunk.len()) as u64 > cap {
                return Err(StoreError::TooLarge {
                    size: (data.len() + chunk.len()) as u64,
                    limit: cap,
                });
            }
            data.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            data,
            generation: object.generation,
        })
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        thumb: &Thumbnail,
        source: &SourceRef,
        cache_control: &str,
    ) -> Result<Put, StoreError> {
        let bucket = Self::bucket_path(bucket);
        let payload = Bytes::from(thumb.data.clone());
        // Compare-and-swap. The first attempt assumes the thumbnail does not exist yet (the
        // common case: one request); if it does, the precondition fails, and we read its
        // recorded source generation and retry conditionally on the generation we read.
        let mut precondition = 0;
        for _ in 0..8 {
            let result = self
                .client
                .write_object(&bucket, key, payload.clone())
                .set_if_generation_match(precondition)
                .set_content_type(thumb.format.mime_type())
                .set_cache_control(cache_control)
                .set_metadata([
                    (META_SOURCE_BUCKET, source.bucket.clone()),
                    (META_SOURCE_OBJECT, source.name.clone()),
                    (META_SOURCE_GENERATION, source.generation.to_string()),
                    (META_CONTENT_TYPE, thumb.format.mime_type().to_string()),
                    (META_WIDTH, thumb.width.to_string()),
                    (META_HEIGHT, thumb.height.to_string()),
                ])
                .send_buffered()
                .await;
            match result {
                Ok(_) => return Ok(Put::Written),
                Err(e) if is_precondition_failed(&e) => {}
                Err(e) => return Err(classify(&e, false)),
            }
            let existing = match self
                .client
                .read_object(&bucket, key)
                .set_read_range(ReadRange::head(1))
                .send()
                .await
            {
                Ok(response) => Some(response.object()),
                Err(e) if e.http_status_code() == Some(404) => None,
                Err(e) if e.status().map(|s| s.code) == Some(Code::NotFound) => None,
                Err(e) => return Err(classify(&e, false)),
            };
            precondition = match existing {
                Some(object) => {
                    let recorded = object
                        .metadata
                        .get(META_SOURCE_GENERATION)
                        .and_then(|g| g.parse::<i64>().ok());
                    if recorded.is_some_and(|g| g > source.generation) {
                        return Ok(Put::Superseded);
                    }
                    object.generation
                }
                // Deleted in between: create it.
                None => 0,
            };
        }
        Err(StoreError::Unavailable(format!(
            "{key}: still contended after 8 conditional writes"
        )))
    }
}

/// A local folder as the source (`--watch`) and another as the sink (`--out`). The "bucket"
/// is ignored; the generation of a file is its modification time in nanoseconds, recorded
/// next to the thumbnails in `.thumbd-source.json`.
#[derive(Clone, Debug)]
pub struct DirStore {
    pub input: PathBuf,
    pub output: PathBuf,
}

/// The record kept next to a source's thumbnails in the local mode.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct DirRecord {
    source: String,
    generation: i64,
}

const DIR_RECORD: &str = ".thumbd-source.json";

/// Joins a relative object name under `root`, refusing `..` and absolute paths.
fn safe_join(root: &Path, name: &str) -> Result<PathBuf, StoreError> {
    let rel = Path::new(name);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(StoreError::Refused(format!(
            "`{name}` is not a plain relative path"
        )));
    }
    Ok(root.join(rel))
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::NotFound
    } else {
        StoreError::Unavailable(format!("{}: {e}", path.display()))
    }
}

/// Modification time in nanoseconds since the epoch: the local stand-in for a generation.
pub fn mtime_generation(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

impl DirStore {
    /// The recorded source generation of the thumbnails under `<out>/<name>/`, if any.
    pub fn recorded_generation(&self, name: &str) -> Option<i64> {
        let path = safe_join(&self.output, name).ok()?.join(DIR_RECORD);
        let text = std::fs::read(path).ok()?;
        serde_json::from_slice::<DirRecord>(&text)
            .ok()
            .map(|r| r.generation)
    }
}

impl Store for DirStore {
    async fn fetch(
        &self,
        _bucket: &str,
        name: &str,
        _generation: Option<i64>,
        cap: u64,
    ) -> Result<Fetched, StoreError> {
        let path = safe_join(&self.input, name)?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        if meta.len() > cap {
            return Err(StoreError::TooLarge {
                size: meta.len(),
                limit: cap,
            });
        }
        let data = tokio::fs::read(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        Ok(Fetched {
            data,
            generation: mtime_generation(&meta),
        })
    }

    async fn put(
        &self,
        _bucket: &str,
        key: &str,
        thumb: &Thumbnail,
        source: &SourceRef,
        _cache_control: &str,
    ) -> Result<Put, StoreError> {
        let path = safe_join(&self.output, key)?;
        let dir = path.parent().expect("a key has a parent").to_path_buf();
        if self
            .recorded_generation(&source.name)
            .is_some_and(|g| g > source.generation)
        {
            return Ok(Put::Superseded);
        }
        let unavailable =
            |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", dir.display()));
        tokio::fs::create_dir_all(&dir).await.map_err(unavailable)?;
        write_atomically(&path, &thumb.data)
            .await
            .map_err(unavailable)?;
        let record = serde_json::to_vec(&DirRecord {
            source: source.name.clone(),
            generation: source.generation,
        })
        .expect("serialisable");
        write_atomically(&dir.join(DIR_RECORD), &record)
            .await
            .map_err(unavailable)?;
        Ok(Put::Written)
    }
}

/// Temp file + rename, so a reader never sees half a thumbnail.
async fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    tokio::fs::write(&tmp, data).await?;
    tokio::fs::rename(&tmp, path).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use thumbd_engine::OutputFormat;

    fn thumb(size: u32) -> Thumbnail {
        Thumbnail {
            size,
            width: size,
            height: size / 2,
            format: OutputFormat::Jpeg,
            data: vec![1, 2, 3],
        }
    }

    #[test]
    fn output_keys_follow_the_contract() {
        assert_eq!(
            output_key("thumbs/", "a/b.png", &thumb(256)),
            "thumbs/a/b.png/256.jpg"
        );
    }

    #[test]
    fn local_names_cannot_escape() {
        assert!(safe_join(Path::new("/x"), "../etc/passwd").is_err());
        assert!(safe_join(Path::new("/x"), "/etc/passwd").is_err());
        assert_eq!(
            safe_join(Path::new("/x"), "a/b").unwrap(),
            Path::new("/x/a/b")
        );
    }

    #[tokio::test]
    async fn dir_store_keeps_newer_generations() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DirStore {
            input: tmp.path().join("in"),
            output: tmp.path().join("out"),
        };
        let src = |generation| SourceRef {
            bucket: String::new(),
            name: "a.jpg".into(),
            generation,
        };
        let key = output_key("", "a.jpg", &thumb(64));
        assert_eq!(
            store.put("", &key, &thumb(64), &src(2), "").await.unwrap(),
            Put::Written
        );
        assert_eq!(
            store.put("", &key, &thumb(64), &src(1), "").await.unwrap(),
            Put::Superseded
        );
        assert_eq!(
            store.put("", &key, &thumb(64), &src(2), "").await.unwrap(),
            Put::Written
        );
        assert_eq!(store.recorded_generation("a.jpg"), Some(2));
    }
}
