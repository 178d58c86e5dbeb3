//! The application's view of a bucket: create an object without ever overwriting one, list a
//! prefix, read an object. Cloud Storage (or fake-gcs-server) in cloud mode, a folder in local
//! mode, behind one enum.
//!
//! Cloud Storage writes and reads go through the official client; listing goes through the
//! JSON API directly, because the client lists only over gRPC (`StorageControl`), which
//! fake-gcs-server does not serve.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use google_cloud_storage::client::Storage;
use google_cloud_storage::streaming_source::{Seek, SizeHint, StreamingSource};
use serde::Deserialize;

use crate::naming::META_CONTENT_TYPE;
use crate::service::store::dir::file_generation;
use crate::service::store::gcs::{is_not_found, is_precondition_failed};
use crate::service::store::GcsStore;

/// One stored object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub generation: i64,
    pub size: u64,
    pub content_type: Option<String>,
    pub metadata: HashMap<String, String>,
}

/// One page of a listing: objects, and with a delimiter the "folders" below the prefix.
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<ObjectInfo>,
    pub folders: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The object exists already (creates never overwrite).
    #[error("object exists")]
    Exists,
    #[error("object not found")]
    NotFound,
    /// Outage, timeout, permissions: the client may retry later (503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub enum Bucket {
    Gcs(Box<GcsBucket>),
    Dir(DirBucket),
}

impl Bucket {
    /// Writes `name` from `data`'s chunks in order, only if no object has that name
    /// (`ifGenerationMatch=0`); returns the new object's generation.
    pub async fn create(
        &self,
        name: &str,
        content_type: &str,
        data: Vec<Bytes>,
    ) -> Result<i64, ObjectError> {
        match self {
            Bucket::Gcs(b) => b.create(name, content_type, data).await,
            Bucket::Dir(b) => b.create(name, data).await,
        }
    }

    /// Objects whose names start with `prefix`, in name order, after `start_after` if given,
    /// at most `max`. With `folders`, names with a `/` after the prefix are grouped into their
    /// folder instead (Cloud Storage's `delimiter=/`).
    pub async fn list(
        &self,
        prefix: &str,
        folders: bool,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Listing, ObjectError> {
        match self {
            Bucket::Gcs(b) => b.list(prefix, folders, start_after, max).await,
            Bucket::Dir(b) => b.list(prefix, folders, start_after, max).await,
        }
    }

    /// The whole object and its metadata.
    pub async fn read(&self, name: &str) -> Result<(Bytes, ObjectInfo), ObjectError> {
        match self {
            Bucket::Gcs(b) => b.read(name).await,
            Bucket::Dir(b) => b.read(name).await,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GcsBucket {
    gcs: Gcs,
    bucket: String,
}

/// Cloud Storage through one client, shared by the buckets made from it.
#[derive(Debug, Clone)]
pub struct Gcs {
    client: Storage,
    http: reqwest::Client,
    endpoint: String,
    credentials: Option<google_cloud_auth::credentials::Credentials>,
}

impl Gcs {
    /// `endpoint` set: an emulator, with anonymous credentials; otherwise Application Default
    /// Credentials. Retryable errors are retried for `retry_for`.
    pub async fn connect(endpoint: Option<&str>, retry_for: Duration) -> Result<Gcs, String> {
        // The worker's client, as the worker builds it; the listing needs credentials of its own.
        let client = GcsStore::connect(endpoint, retry_for)
            .await
            .map_err(|e| e.to_string())?
            .client()
            .clone();
        let credentials = match endpoint {
            Some(_) => None,
            None => Some(
                google_cloud_auth::credentials::Builder::default()
                    .with_scopes(["https://www.googleapis.com/auth/devstorage.read_only"])
                    .build()
                    .map_err(|e| format!("credentials: {e}"))?,
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(retry_for.max(Duration::from_secs(5)))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Gcs {
            client,
            http,
            endpoint: endpoint
                .unwrap_or("https://storage.googleapis.com")
                .trim_end_matches('/')
                .to_string(),
            credentials,
        })
    }

    pub fn bucket(&self, bucket: &str) -> Bucket {
        Bucket::Gcs(Box::new(GcsBucket {
            gcs: self.clone(),
            bucket: bucket.to_string(),
        }))
    }
}

fn classify(err: &google_cloud_storage::Error) -> ObjectError {
    if is_not_found(err) {
        ObjectError::NotFound
    } else if is_precondition_failed(err) {
        ObjectError::Exists
    } else {
        ObjectError::Unavailable(err.to_string())
    }
}

/// The JSON API's object resource, the fields used here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonObject {
    name: String,
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonListing {
    #[serde(default)]
    items: Vec<JsonObject>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl GcsBucket {
    fn path(&self) -> String {
        format!("projects/_/buckets/{}", self.bucket)
    }

    async fn create(
        &self,
        name: &str,
        content_type: &str,
        data: Vec<Bytes>,
    ) -> Result<i64, ObjectError> {
        self.gcs
            .client
            .write_object(self.path(), name, Chunks::new(data))
            .set_if_generation_match(0)
            .set_content_type(content_type)
            // As on thumbnails: fake-gcs-server drops the content type.
            .set_metadata([(META_CONTENT_TYPE, content_type)])
            .send_buffered()
            .await
            .map(|object| object.generation)
            .map_err(|e| classify(&e))
    }

    async fn read(&self, name: &str) -> Result<(Bytes, ObjectInfo), ObjectError> {
        let mut response = self
            .gcs
            .client
            .read_object(self.path(), name)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let object = response.object();
        let mut data = Vec::with_capacity(usize::try_from(object.size).unwrap_or(0));
        while let Some(chunk) = response.next().await {
            data.extend_from_slice(&chunk.map_err(|e| classify(&e))?);
        }
        let info = ObjectInfo {
            name: name.to_string(),
            generation: object.generation,
            size: data.len() as u64,
            content_type: Some(object.content_type).filter(|t| !t.is_empty()),
            metadata: object.metadata.into_iter().collect(),
        };
        Ok((Bytes::from(data), info))
    }

    async fn list(
        &self,
        prefix: &str,
        folders: bool,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Listing, ObjectError> {
        let url = format!("{}/storage/v1/b/{}/o", self.gcs.endpoint, self.bucket);
        let mut listing = Listing::default();
        let mut page_token: Option<String> = None;
        // Pages until `max` objects past `start_after` are in (startOffset is inclusive).
        loop {
            let mut query: Vec<(&str, String)> = vec![
                ("prefix", prefix.to_string()),
                ("maxResults", (max + 1).min(1000).to_string()),
            ];
            if folders {
                query.push(("delimiter", "/".into()));
            }
            if let Some(after) = start_after {
                query.push(("startOffset", after.to_string()));
            }
            if let Some(token) = &page_token {
                query.push(("pageToken", token.clone()));
            }
            let mut request = self.gcs.http.get(&url).query(&query);
            if let Some(credentials) = &self.gcs.credentials {
                request = request.headers(auth_headers(credentials).await?);
            }
            let response = request
                .send()
                .await
                .map_err(|e| ObjectError::Unavailable(format!("listing {prefix}: {e}")))?;
            let status = response.status();
            if status.as_u16() == 404 {
                return Err(ObjectError::Unavailable(format!(
                    "bucket {} not found",
                    self.bucket
                )));
            }
            if !status.is_success() {
                return Err(ObjectError::Unavailable(format!(
                    "listing {prefix}: HTTP {status}"
                )));
            }
            let page: JsonListing = response
                .json()
                .await
                .map_err(|e| ObjectError::Unavailable(format!("listing {prefix}: {e}")))?;
            listing.folders.extend(page.prefixes);
            for item in page.items {
                if start_after.is_some_and(|after| item.name.as_str() <= after) {
                    continue;
                }
                listing.objects.push(ObjectInfo {
                    generation: item.generation.and_then(|g| g.parse().ok()).unwrap_or(0),
                    size: item.size.and_then(|s| s.parse().ok()).unwrap_or(0),
                    content_type: item.content_type,
                    metadata: item.metadata.unwrap_or_default(),
                    name: item.name,
                });
            }
            page_token = page.next_page_token.filter(|t| !t.is_empty());
            if listing.objects.len() >= max || page_token.is_none() {
                break;
            }
        }
        listing.objects.truncate(max);
        listing.folders.sort();
        listing.folders.dedup();
        Ok(listing)
    }
}

/// An upload's chunks as the client's payload, without copying them into one buffer. (The
/// crate's own `From<Vec<Bytes>>` source is private, so it cannot be named in an async fn.)
struct Chunks {
    all: Vec<Bytes>,
    left: std::collections::VecDeque<Bytes>,
}

impl Chunks {
    fn new(all: Vec<Bytes>) -> Chunks {
        let left = all.iter().cloned().collect();
        Chunks { all, left }
    }
}

impl StreamingSource for Chunks {
    type Error = std::io::Error;

    async fn next(&mut self) -> Option<Result<Bytes, Self::Error>> {
        self.left.pop_front().map(Ok)
    }

    async fn size_hint(&self) -> Result<SizeHint, Self::Error> {
        let len = self.all.iter().map(|c| c.len() as u64).sum();
        Ok(SizeHint::with_exact(len))
    }
}

impl Seek for Chunks {
    type Error = std::io::Error;

    /// A retried write starts again at `offset`.
    async fn seek(&mut self, offset: u64) -> Result<(), Self::Error> {
        let mut skip = offset as usize;
        self.left.clear();
        for chunk in &self.all {
            if skip >= chunk.len() {
                skip -= chunk.len();
            } else {
                self.left.push_back(chunk.slice(skip..));
                skip = 0;
            }
        }
        Ok(())
    }
}

async fn auth_headers(
    credentials: &google_cloud_auth::credentials::Credentials,
) -> Result<reqwest::header::HeaderMap, ObjectError> {
    use google_cloud_auth::credentials::CacheableResource;
    match credentials.headers(axum::http::Extensions::new()).await {
        Ok(CacheableResource::New { data, .. }) => Ok(data),
        Ok(CacheableResource::NotModified) => Err(ObjectError::Unavailable(
            "credentials returned no headers".into(),
        )),
        Err(e) => Err(ObjectError::Unavailable(format!("credentials: {e}"))),
    }
}

/// A folder as a bucket: object `a/b.jpg` is the file `<root>/a/b.jpg`. Hidden files (the
/// worker's temporary files and records) are not listed.
#[derive(Debug, Clone)]
pub struct DirBucket {
    pub root: PathBuf,
}

impl DirBucket {
    fn path_of(&self, name: &str) -> Result<PathBuf, ObjectError> {
        crate::service::store::dir::safe_join(&self.root, name).map_err(|_| ObjectError::NotFound)
    }

    async fn create(&self, name: &str, data: Vec<Bytes>) -> Result<i64, ObjectError> {
        let path = self.path_of(name)?;
        let dir = path.parent().expect("an object has a parent").to_path_buf();
        let unavailable =
            |e: std::io::Error| ObjectError::Unavailable(format!("{}: {e}", dir.display()));
        tokio::fs::create_dir_all(&dir).await.map_err(unavailable)?;
        // Written to a hidden temp file, then hard-linked to its name: the link fails if the
        // name exists (never overwrite), and the watch worker never sees half a file.
        // A short temp name: the final one may already be the longest a file name can be.
        static UPLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = UPLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".upload-{}-{n}.tmp", std::process::id()));
        write_chunks(&tmp, &data).await.map_err(unavailable)?;
        let linked = tokio::fs::hard_link(&tmp, &path).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ObjectError::Exists)
            }
            Err(e) => return Err(unavailable(e)),
        }
        let meta = tokio::fs::metadata(&path).await.map_err(unavailable)?;
        Ok(file_generation(&meta))
    }

    async fn read(&self, name: &str) -> Result<(Bytes, ObjectInfo), ObjectError> {
        let path = self.path_of(name)?;
        let data = match tokio::fs::read(&path).await {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ObjectError::NotFound)
            }
            Err(e) => return Err(ObjectError::Unavailable(format!("{}: {e}", path.display()))),
        };
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| ObjectError::Unavailable(e.to_string()))?;
        let info = ObjectInfo {
            name: name.to_string(),
            generation: file_generation(&meta),
            size: data.len() as u64,
            ..ObjectInfo::default()
        };
        Ok((Bytes::from(data), info))
    }

    async fn list(
        &self,
        prefix: &str,
        folders: bool,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Listing, ObjectError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            list_dir(&root, &prefix, folders, start_after.as_deref(), max)
        })
        .await
        .map_err(|e| ObjectError::Unavailable(e.to_string()))?
    }
}

async fn write_chunks(path: &Path, chunks: &[Bytes]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(path).await?;
    for chunk in chunks {
        file.write_all(chunk).await?;
    }
    file.flush().await
}

fn list_dir(
    root: &Path,
    prefix: &str,
    folders: bool,
    start_after: Option<&str>,
    max: usize,
) -> Result<Listing, ObjectError> {
    // The deepest folder that holds every match, and the names under it.
    let base = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
    let dir = root.join(base);
    let mut names = Vec::new();
    let mut found_folders = Vec::new();
    let walk = walkdir::WalkDir::new(&dir)
        .min_depth(1)
        .max_depth(if folders { 1 } else { usize::MAX })
        .sort_by_file_name();
    for entry in walk
        .into_iter()
        .filter_entry(|e| !e.file_name().to_string_lossy().starts_with('.'))
    {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e)
                if e.io_error()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) =>
            {
                break
            }
            Err(e) => return Err(ObjectError::Unavailable(e.to_string())),
        };
        let Ok(relative) = entry.path().strip_prefix(root) else {
            continue;
        };
        let Some(name) = relative
            .to_str()
            .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
        else {
            continue;
        };
        if !name.starts_with(prefix) {
            continue;
        }
        if entry.file_type().is_dir() {
            if folders {
                found_folders.push(format!("{name}/"));
            }
        } else if entry.file_type().is_file() {
            names.push((name, entry));
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut listing = Listing {
        folders: found_folders,
        ..Listing::default()
    };
    for (name, entry) in names {
        if start_after.is_some_and(|after| name.as_str() <= after) {
            continue;
        }
        if listing.objects.len() == max {
            break;
        }
        let meta = entry
            .metadata()
            .map_err(|e| ObjectError::Unavailable(e.to_string()))?;
        listing.objects.push(ObjectInfo {
            name,
            generation: file_generation(&meta),
            size: meta.len(),
            ..ObjectInfo::default()
        });
    }
    listing.folders.sort();
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_folder_bucket_never_overwrites_and_lists_like_cloud_storage() {
        let tmp = tempfile::tempdir().unwrap();
        let bucket = Bucket::Dir(DirBucket {
            root: tmp.path().to_path_buf(),
        });
        for name in [
            "2026/12/01/b-x.jpg",
            "2026/12/02/a-y.png",
            "2026/12/02/c-z.png",
        ] {
            bucket
                .create(
                    name,
                    "image/jpeg",
                    vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")],
                )
                .await
                .unwrap();
        }
        assert!(matches!(
            bucket
                .create("2026/12/02/a-y.png", "image/png", Vec::new())
                .await,
            Err(ObjectError::Exists)
        ));
        let years = bucket.list("", true, None, 10).await.unwrap();
        assert_eq!(years.folders, ["2026/"]);
        let days = bucket.list("2026/12/", true, None, 10).await.unwrap();
        assert_eq!(days.folders, ["2026/12/01/", "2026/12/02/"]);
        let day = bucket
            .list("2026/12/02/", false, Some("2026/12/02/a-y.png"), 10)
            .await
            .unwrap();
        let names: Vec<_> = day.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["2026/12/02/c-z.png"]);
        let one = bucket.list("2026/12/02/c-", false, None, 10).await.unwrap();
        assert_eq!(one.objects.len(), 1);
        assert!(bucket
            .list("1999/", false, None, 10)
            .await
            .unwrap()
            .objects
            .is_empty());
        let (data, info) = bucket.read("2026/12/01/b-x.jpg").await.unwrap();
        assert_eq!((&data[..], info.size), (&b"abc"[..], 3));
        assert!(matches!(
            bucket.read("../etc/passwd").await,
            Err(ObjectError::NotFound)
        ));
    }
}
