//! What the API says about an upload, read from storage alone (the state survives restarts
//! and is the same for every replica): the upload object, its thumbnails and their metadata,
//! and the worker's failure record ([`crate::naming`] places them all).
//!
//! - `ready`: every configured size exists, made from this upload's generation;
//! - `failed`: a failure record of this generation exists;
//! - `pending`: neither yet.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::StreamExt;
use serde::Serialize;

use super::objects::{Bucket, ObjectError, ObjectInfo};
use crate::naming::{
    failure_key, normalize_prefix, parse_upload_object, thumbnails_folder, upload_id_prefix,
    FailureRecord, UploadId, META_HEIGHT, META_SOURCE_GENERATION, META_WIDTH,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Ready,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThumbnailRef {
    pub size: u32,
    pub width: u32,
    pub height: u32,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorInfo {
    pub kind: String,
    pub message: String,
}

/// An upload as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    pub id: String,
    /// The sanitised original file name.
    pub name: String,
    /// The object name in the upload bucket (or folder).
    pub object: String,
    pub state: State,
    pub uploaded_at: String,
    pub status_url: String,
    pub thumbnails: Vec<ThumbnailRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

impl Image {
    /// A just-uploaded image.
    pub fn pending(id: UploadId, name: &str, object: &str) -> Image {
        Image {
            id: id.to_string(),
            name: name.to_string(),
            object: object.to_string(),
            state: State::Pending,
            uploaded_at: id.rfc3339(),
            status_url: format!("/api/images/{id}"),
            thumbnails: Vec::new(),
            error: None,
        }
    }
}

/// Reads upload states; caches only id → object, which never changes.
pub struct Catalog {
    pub uploads: Bucket,
    pub thumbnails: Bucket,
    pub upload_prefix: String,
    pub thumbnail_prefix: String,
    pub sizes: Vec<u32>,
    pub extension: &'static str,
    objects: Mutex<HashMap<UploadId, ObjectInfo>>,
}

/// Entries kept in the id → object cache before it starts over.
const CACHED_OBJECTS: usize = 4096;

/// A page of the gallery, newest first.
#[derive(Debug, Serialize)]
pub struct Page {
    pub images: Vec<Image>,
    pub next_page_token: Option<String>,
}

impl Catalog {
    pub fn new(
        uploads: Bucket,
        thumbnails: Bucket,
        upload_prefix: &str,
        thumbnail_prefix: &str,
        sizes: Vec<u32>,
        extension: &'static str,
    ) -> Catalog {
        Catalog {
            uploads,
            thumbnails,
            upload_prefix: normalize_prefix(upload_prefix),
            thumbnail_prefix: normalize_prefix(thumbnail_prefix),
            sizes,
            extension,
            objects: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers an upload's object (so its first status needs no listing).
    pub fn remember(&self, id: UploadId, object: ObjectInfo) {
        let mut cache = self.objects.lock().expect("not poisoned");
        if cache.len() >= CACHED_OBJECTS {
            cache.clear();
        }
        cache.insert(id, object);
    }

    /// The upload object of `id`, if there is one.
    pub async fn find(&self, id: UploadId) -> Result<Option<ObjectInfo>, ObjectError> {
        if let Some(object) = self.objects.lock().expect("not poisoned").get(&id) {
            return Ok(Some(object.clone()));
        }
        let prefix = upload_id_prefix(&self.upload_prefix, id);
        let listing = self.uploads.list(&prefix, false, None, 1).await?;
        let Some(object) = listing.objects.into_iter().next() else {
            return Ok(None);
        };
        self.remember(id, object.clone());
        Ok(Some(object))
    }

    pub async fn image(&self, id: UploadId) -> Result<Option<Image>, ObjectError> {
        match self.find(id).await? {
            Some(object) => self.state_of(&object).await,
            None => Ok(None),
        }
    }

    /// The state of one upload object (None if it is not an upload's name).
    pub async fn state_of(&self, object: &ObjectInfo) -> Result<Option<Image>, ObjectError> {
        let Some((id, name)) = parse_upload_object(&self.upload_prefix, &object.name) else {
            return Ok(None);
        };
        let mut image = Image::pending(id, &name, &object.name);
        let folder = thumbnails_folder(&self.thumbnail_prefix, &object.name);
        let listing = self.thumbnails.list(&folder, false, None, 64).await?;
        let made_from_this = |o: &ObjectInfo| {
            // Local files carry no metadata; their names are unique per upload.
            o.metadata
                .get(META_SOURCE_GENERATION)
                .is_none_or(|g| g.parse::<i64>().ok() == Some(object.generation))
        };
        let mut thumbnails = Vec::new();
        for &size in &self.sizes {
            let key = format!("{folder}{size}.{}", self.extension);
            let Some(found) = listing
                .objects
                .iter()
                .find(|o| o.name == key && made_from_this(o))
            else {
                break;
            };
            let (width, height) = match dimensions(&found.metadata) {
                Some(d) => d,
                None => self.probe_dimensions(&key).await?,
            };
            thumbnails.push(ThumbnailRef {
                size,
                width,
                height,
                url: format!("/api/images/{id}/thumbnails/{size}"),
            });
        }
        if thumbnails.len() == self.sizes.len() {
            image.state = State::Ready;
            image.thumbnails = thumbnails;
            return Ok(Some(image));
        }
        let record_key = failure_key(&self.thumbnail_prefix, &object.name);
        if listing.objects.iter().any(|o| o.name == record_key) {
            let (body, _) = match self.thumbnails.read(&record_key).await {
                Ok(read) => read,
                Err(ObjectError::NotFound) => return Ok(Some(image)),
                Err(e) => return Err(e),
            };
            if let Ok(record) = serde_json::from_slice::<FailureRecord>(&body) {
                let this =
                    record.generation.is_none_or(|g| g == object.generation) || self.is_local();
                if this {
                    image.state = State::Failed;
                    image.error = Some(ErrorInfo {
                        kind: record.reason,
                        message: record.message,
                    });
                }
            }
        }
        Ok(Some(image))
    }

    fn is_local(&self) -> bool {
        matches!(self.uploads, Bucket::Dir(_))
    }

    /// Local thumbnails carry no metadata: read their header.
    async fn probe_dimensions(&self, key: &str) -> Result<(u32, u32), ObjectError> {
        let (data, _) = self.thumbnails.read(key).await?;
        let info = thumbd_engine::probe(&data, &thumbd_engine::Limits::default())
            .map_err(|e| ObjectError::Unavailable(format!("{key}: {e}")))?;
        Ok((info.width, info.height))
    }

    /// The bytes of one thumbnail of `id`, if it is made.
    pub async fn thumbnail(
        &self,
        id: UploadId,
        size: u32,
    ) -> Result<Option<(bytes::Bytes, ObjectInfo)>, ObjectError> {
        if !self.sizes.contains(&size) {
            return Ok(None);
        }
        let Some(object) = self.find(id).await? else {
            return Ok(None);
        };
        let key = format!(
            "{}{size}.{}",
            thumbnails_folder(&self.thumbnail_prefix, &object.name),
            self.extension
        );
        match self.thumbnails.read(&key).await {
            Ok(read) => Ok(Some(read)),
            Err(ObjectError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Uploads newest first: day folders newest first, and within a day the ids sort newest
    /// first by themselves. `after` is the last object of the previous page.
    pub async fn recent(&self, limit: usize, after: Option<&str>) -> Result<Page, ObjectError> {
        let mut objects: Vec<ObjectInfo> = Vec::new();
        // The folder of each level that `after` is in: folders newer than it are skipped.
        let bound = |level: usize| -> Option<String> {
            let rest = after?.strip_prefix(&self.upload_prefix)?;
            let parts: Vec<&str> = rest.splitn(4, '/').collect();
            (parts.len() == 4)
                .then(|| format!("{}{}/", self.upload_prefix, parts[..=level].join("/")))
        };
        'years: for year in self
            .folders(&self.upload_prefix, bound(0).as_deref())
            .await?
        {
            for month in self.folders(&year, bound(1).as_deref()).await? {
                for day in self.folders(&month, bound(2).as_deref()).await? {
                    let start = after.filter(|a| a.starts_with(&day));
                    let wanted = limit + 1 - objects.len();
                    let listing = self.uploads.list(&day, false, start, wanted).await?;
                    objects.extend(
                        listing.objects.into_iter().filter(|o| {
                            parse_upload_object(&self.upload_prefix, &o.name).is_some()
                        }),
                    );
                    if objects.len() > limit {
                        break 'years;
                    }
                }
            }
        }
        let next_page_token = (objects.len() > limit).then(|| objects[limit - 1].name.clone());
        objects.truncate(limit);
        let states: Vec<_> = futures::stream::iter(objects)
            .map(|o| async move { self.state_of(&o).await })
            .buffered(8)
            .collect()
            .await;
        let mut images = Vec::with_capacity(states.len());
        for state in states {
            images.extend(state?);
        }
        Ok(Page {
            images,
            next_page_token,
        })
    }

    /// Sub-folders of `prefix`, newest (largest) first, none newer than `bound`.
    async fn folders(&self, prefix: &str, bound: Option<&str>) -> Result<Vec<String>, ObjectError> {
        let mut folders = self.uploads.list(prefix, true, None, 1000).await?.folders;
        // Only date folders (`yyyy/`, `mm/`, `dd/`): a bucket may hold other things.
        folders.retain(|f| {
            let part = f.strip_prefix(prefix).unwrap_or(f).trim_end_matches('/');
            matches!(part.len(), 2 | 4) && part.bytes().all(|b| b.is_ascii_digit())
        });
        folders.retain(|f| bound.is_none_or(|b| f.as_str() <= b));
        folders.reverse();
        Ok(folders)
    }
}

fn dimensions(metadata: &HashMap<String, String>) -> Option<(u32, u32)> {
    let width = metadata.get(META_WIDTH)?.parse().ok()?;
    let height = metadata.get(META_HEIGHT)?.parse().ok()?;
    Some((width, height))
}
