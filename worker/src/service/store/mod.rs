//! Reading originals and writing thumbnails, behind one trait so the Pub/Sub worker (Cloud
//! Storage, [`gcs`]) and the local `--watch` mode (a folder, [`dir`]) run the same pipeline.
//!
//! An original is read in two steps: [`Store::open`] returns its metadata and first bytes
//! (enough for the header check), and [`Store::read_rest`] the remainder of exactly that
//! generation, so the pipeline can refuse by size, type or header, and reserve memory, before
//! the bulk of the bytes arrives. When the pipeline has reserved the object's bytes before
//! opening it (a notification states the size), both steps are one request: `open` asks for the
//! whole object and stops reading after the first bytes, and `read_rest` reads on.
//!
//! Every thumbnail records the source bucket, object and generation it was made from
//! ([`crate::naming`]); a write first reads that record and refuses to replace thumbnails of a
//! newer source generation or of another source, and the write itself is conditional on the
//! generation it read (compare-and-swap), so a stale notification processed late, even
//! concurrently with a newer one, never wins.

pub mod dir;
pub mod gcs;

use std::future::Future;

use thumbd_engine::Thumbnail;

use crate::naming::FailureRecord;

pub use dir::DirStore;
pub use gcs::GcsStore;

/// A storage failure, classified once here so the fate logic never inspects HTTP codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The source object (at the requested generation) does not exist: permanent.
    #[error("object not found")]
    NotFound,
    /// The object is larger than the byte cap: permanent.
    #[error("object is {size} bytes, over the limit of {limit} bytes{why}")]
    TooLarge {
        size: u64,
        limit: u64,
        /// What sets the limit, when it is not `--max-input-bytes` itself.
        why: &'static str,
    },
    /// The request itself was refused (bad name...): permanent.
    #[error("storage refused the request: {0}")]
    Refused(String),
    /// A thumbnail at the key was made from another source object: permanent, never replaced.
    #[error("{key} already holds a thumbnail of gs://{bucket}/{object}")]
    Conflict {
        key: String,
        bucket: String,
        object: String,
    },
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

/// An original's metadata and first bytes.
#[derive(Debug)]
pub struct Opened<R> {
    /// The generation actually read (the live one when the job named none).
    pub generation: i64,
    /// The whole object's size in bytes, if the store said (fake-gcs-server's media downloads
    /// carry no `x-goog-stored-content-length`; Cloud Storage's always do).
    pub size: Option<u64>,
    /// The stored content type, if any.
    pub content_type: Option<String>,
    /// The first bytes (all of them for a small object; a few more than asked for when the
    /// whole object was).
    pub head: Vec<u8>,
    /// The rest of the object, still to be read from the same request (`whole` opens only).
    pub rest: Option<R>,
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
    /// A read of a whole object stopped after its first bytes ([`Opened::rest`]).
    type Rest: Send;

    /// Metadata and the first `head_len` bytes of `name` (at `generation` if given). With
    /// `whole`, for a caller that has reserved the object's bytes already, the request asks for
    /// the whole object but reading stops after the first `head_len` bytes; the rest stays in
    /// [`Opened::rest`] for [`Store::read_rest`], so the object takes one request, and one
    /// refused by its header still costs little more than its first bytes.
    fn open(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
        head_len: u64,
        whole: bool,
    ) -> impl Future<Output = Result<Opened<Self::Rest>, StoreError>> + Send;

    /// Appends the bytes of `name` at exactly `generation` from `buf.len()` to its end,
    /// refusing ([`StoreError::TooLarge`]) an object of more than `limit` bytes in all. Reads
    /// on from `rest` (the same request as `open`) when given, else makes a new request. The
    /// caller sizes `buf` from what it knows of the object ([`Opened::size`], a notification).
    fn read_rest(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        limit: u64,
        buf: &mut Vec<u8>,
        rest: Option<Self::Rest>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether any generation of `name` exists now: tells a misspelt job from a stale one.
    fn exists(
        &self,
        bucket: &str,
        name: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Writes one thumbnail at `key` unless a newer source generation's thumbnail is there
    /// ([`Put::Superseded`]) or another source's ([`StoreError::Conflict`]).
    fn put(
        &self,
        bucket: &str,
        key: &str,
        thumb: &Thumbnail,
        source: &SourceRef,
        cache_control: &str,
    ) -> impl Future<Output = Result<Put, StoreError>> + Send;

    /// Records a permanent failure at `key` ([`crate::naming::failure_key`]), replacing an
    /// older record: the one place a reader learns, after any restart, that no thumbnail comes.
    fn record_failure(
        &self,
        bucket: &str,
        key: &str,
        record: &FailureRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Called once every thumbnail of `source` under `folder` is written: the local store
    /// records the source there (Cloud Storage needs nothing: each thumbnail carries it).
    fn finish(
        &self,
        bucket: &str,
        folder: &str,
        source: &SourceRef,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
