//! Cloud Storage through the official client (or fake-gcs-server via `STORAGE_EMULATOR_HOST`).

use std::time::Duration;

use bytes::Bytes;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::model_ext::ReadRange;
use google_cloud_storage::read_object::ReadObjectResponse;
use thumbd_engine::Thumbnail;

use super::{Opened, Put, SourceRef, Store, StoreError};
use crate::naming::{
    FailureRecord, META_CONTENT_TYPE, META_HEIGHT, META_SOURCE_BUCKET, META_SOURCE_GENERATION,
    META_SOURCE_OBJECT, META_WIDTH,
};

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

    /// The client, for other users of the same storage (`thumbd serve`).
    pub fn client(&self) -> &Storage {
        &self.client
    }

    fn bucket_path(bucket: &str) -> String {
        format!("projects/_/buckets/{bucket}")
    }
}

/// Classifies a client error; `reading_source` tells a missing original (the message's
/// problem) from a missing output bucket (ours).
fn classify(err: &google_cloud_storage::Error, reading_source: bool) -> StoreError {
    let text = err.to_string();
    if is_not_found(err) {
        return if reading_source {
            StoreError::NotFound
        } else {
            StoreError::Unavailable(format!("output bucket or object missing: {text}"))
        };
    }
    match err.http_status_code() {
        Some(400) | Some(411) | Some(413) | Some(414) => StoreError::Refused(text),
        _ if err.status().map(|s| s.code) == Some(Code::InvalidArgument) => {
            StoreError::Refused(text)
        }
        _ => StoreError::Unavailable(text),
    }
}

pub(crate) fn is_not_found(err: &google_cloud_storage::Error) -> bool {
    err.http_status_code() == Some(404) || err.status().map(|s| s.code) == Some(Code::NotFound)
}

pub(crate) fn is_precondition_failed(err: &google_cloud_storage::Error) -> bool {
    err.http_status_code() == Some(412)
        || err.status().map(|s| s.code) == Some(Code::FailedPrecondition)
}

impl Store for GcsStore {
    type Rest = ReadObjectResponse;

    async fn open(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
        head_len: u64,
        whole: bool,
    ) -> Result<Opened<ReadObjectResponse>, StoreError> {
        let mut read = self.client.read_object(Self::bucket_path(bucket), name);
        if !whole {
            read = read.set_read_range(ReadRange::head(head_len.max(1)));
        }
        if let Some(generation) = generation {
            read = read.set_generation(generation);
        }
        let mut response = read.send().await.map_err(|e| classify(&e, true))?;
        let object = response.object();
        let stated = u64::try_from(object.size).ok().filter(|&s| s > 0);
        let mut head = Vec::with_capacity(head_len.min(stated.unwrap_or(head_len)) as usize);
        let mut ended = true;
        while let Some(chunk) = response.next().await {
            let chunk = chunk.map_err(|e| classify(&e, true))?;
            if whole {
                // The rest of this chunk is the object's too: kept, and read on from here.
                head.extend_from_slice(&chunk);
            } else {
                // A server ignoring the range must not make us hold the whole object here.
                let room = (head_len as usize).saturating_sub(head.len());
                head.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            if head.len() as u64 >= head_len {
                ended = false;
                break;
            }
        }
        // Fewer bytes than asked for is the whole object, whatever the headers said.
        let all = ended && (whole || (head.len() as u64) < head_len);
        Ok(Opened {
            generation: object.generation,
            size: if all { Some(head.len() as u64) } else { stated },
            content_type: Some(object.content_type).filter(|t| !t.is_empty()),
            head,
            rest: (whole && !ended).then_some(response),
        })
    }

    async fn read_rest(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        limit: u64,
        buf: &mut Vec<u8>,
        rest: Option<ReadObjectResponse>,
    ) -> Result<(), StoreError> {
        let mut response = match rest {
            Some(response) => response,
            None => self
                .client
                .read_object(Self::bucket_path(bucket), name)
                .set_generation(generation)
                .set_read_range(ReadRange::offset(buf.len() as u64))
                .send()
                .await
                .map_err(|e| classify(&e, true))?,
        };
        // The caller has reserved `buf` at the size the open stated (or the notification).
        while let Some(chunk) = response.next().await {
            let chunk = chunk.map_err(|e| classify(&e, true))?;
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(StoreError::TooLarge {
                    size: (buf.len() + chunk.len()) as u64,
                    limit,
                    why: "",
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    }

    async fn exists(&self, bucket: &str, name: &str) -> Result<bool, StoreError> {
        match self
            .client
            .read_object(Self::bucket_path(bucket), name)
            .set_read_range(ReadRange::head(1))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(classify(&e, true)),
        }
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
        // recorded source and retry conditionally on the generation we read.
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
                Err(e) if is_not_found(&e) => None,
                Err(e) => return Err(classify(&e, false)),
            };
            precondition = match existing {
                Some(object) => {
                    let recorded = |k: &str| object.metadata.get(k).map(String::as_str);
                    // Another source's thumbnail (or not a thumbnail at all): never replaced.
                    if recorded(META_SOURCE_BUCKET) != Some(source.bucket.as_str())
                        || recorded(META_SOURCE_OBJECT) != Some(source.name.as_str())
                    {
                        return Err(StoreError::Conflict {
                            key: key.to_string(),
                            bucket: recorded(META_SOURCE_BUCKET).unwrap_or("?").to_string(),
                            object: recorded(META_SOURCE_OBJECT).unwrap_or("?").to_string(),
                        });
                    }
                    let generation =
                        recorded(META_SOURCE_GENERATION).and_then(|g| g.parse::<i64>().ok());
                    if generation.is_some_and(|g| g > source.generation) {
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

    async fn record_failure(
        &self,
        bucket: &str,
        key: &str,
        record: &FailureRecord,
    ) -> Result<(), StoreError> {
        let body = Bytes::from(serde_json::to_vec(record).expect("serialisable"));
        let mut metadata = vec![
            (META_SOURCE_BUCKET, record.source_bucket.clone()),
            (META_SOURCE_OBJECT, record.source_object.clone()),
            (META_CONTENT_TYPE, "application/json".to_string()),
        ];
        if let Some(generation) = record.generation {
            metadata.push((META_SOURCE_GENERATION, generation.to_string()));
        }
        self.client
            .write_object(Self::bucket_path(bucket), key, body)
            .set_content_type("application/json")
            .set_metadata(metadata)
            .send_buffered()
            .await
            .map(|_| ())
            .map_err(|e| classify(&e, false))
    }

    async fn finish(&self, _: &str, _: &str, _: &SourceRef) -> Result<(), StoreError> {
        Ok(())
    }
}
