//! A local folder as the source (`--watch`) and another as the sink (`--out`). The "bucket"
//! is ignored. The generation of a file is its status-change time (ctime) in nanoseconds:
//! unlike the modification time, which `cp -p`, `rsync -t`, `tar x` and `unzip` set into the
//! past, ctime moves on every write and every replacement and cannot be set. It identifies a
//! version, nothing more: generations are compared for equality, never ordered (the watcher
//! runs one job per file at a time, and the latest version it sees wins). The generation is
//! recorded next to the thumbnails in `.thumbd-source.json` once all of them are written.

use std::path::{Component, Path, PathBuf};

use thumbd_engine::Thumbnail;

use super::{Opened, Put, SourceRef, Store, StoreError};
use crate::naming::FailureRecord;

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
pub fn safe_join(root: &Path, name: &str) -> Result<PathBuf, StoreError> {
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

/// Status-change time in nanoseconds since the epoch: the local stand-in for a generation.
pub fn file_generation(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.ctime_nsec())
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

    /// The file of `name` if it is still at `generation`.
    async fn at_generation(
        &self,
        name: &str,
        generation: Option<i64>,
    ) -> Result<(PathBuf, std::fs::Metadata), StoreError> {
        let path = safe_join(&self.input, name)?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        if generation.is_some_and(|g| g != file_generation(&meta)) {
            return Err(StoreError::NotFound);
        }
        Ok((path, meta))
    }
}

impl Store for DirStore {
    type Rest = ();

    async fn open(
        &self,
        _bucket: &str,
        name: &str,
        generation: Option<i64>,
        head_len: u64,
        // A second open of a local file costs nothing worth saving.
        _whole: bool,
    ) -> Result<Opened<()>, StoreError> {
        use tokio::io::AsyncReadExt;
        let (path, meta) = self.at_generation(name, generation).await?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        let mut head = Vec::with_capacity(head_len.min(meta.len()) as usize);
        file.take(head_len)
            .read_to_end(&mut head)
            .await
            .map_err(|e| io_error(&path, e))?;
        Ok(Opened {
            generation: file_generation(&meta),
            size: Some(meta.len()),
            content_type: None,
            head,
            rest: None,
        })
    }

    async fn read_rest(
        &self,
        _bucket: &str,
        name: &str,
        generation: i64,
        limit: u64,
        buf: &mut Vec<u8>,
        _rest: Option<()>,
    ) -> Result<(), StoreError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let (path, meta) = self.at_generation(name, Some(generation)).await?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        let start = buf.len();
        file.seek(std::io::SeekFrom::Start(start as u64))
            .await
            .map_err(|e| io_error(&path, e))?;
        let size = meta.len();
        if size > limit {
            return Err(StoreError::TooLarge {
                size,
                limit,
                why: "",
            });
        }
        buf.reserve_exact(size.saturating_sub(start as u64) as usize);
        // One byte more than expected tells a file that grew since it was opened.
        file.take(size.saturating_sub(start as u64) + 1)
            .read_to_end(buf)
            .await
            .map_err(|e| io_error(&path, e))?;
        if buf.len() as u64 != size {
            // Changed under us: the next scan sees its new stamp and redoes it.
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn exists(&self, _bucket: &str, name: &str) -> Result<bool, StoreError> {
        let path = safe_join(&self.input, name)?;
        Ok(tokio::fs::try_exists(&path).await.unwrap_or(false))
    }

    async fn put(
        &self,
        _bucket: &str,
        key: &str,
        thumb: &Thumbnail,
        _source: &SourceRef,
        _cache_control: &str,
    ) -> Result<Put, StoreError> {
        let path = safe_join(&self.output, key)?;
        let dir = path.parent().expect("a key has a parent").to_path_buf();
        let unavailable =
            |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", dir.display()));
        tokio::fs::create_dir_all(&dir).await.map_err(unavailable)?;
        write_atomically(&path, &thumb.data)
            .await
            .map_err(unavailable)?;
        Ok(Put::Written)
    }

    async fn record_failure(
        &self,
        _bucket: &str,
        key: &str,
        record: &FailureRecord,
    ) -> Result<(), StoreError> {
        let path = safe_join(&self.output, key)?;
        let dir = path.parent().expect("a key has a parent").to_path_buf();
        let unavailable =
            |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", dir.display()));
        tokio::fs::create_dir_all(&dir).await.map_err(unavailable)?;
        let body = serde_json::to_vec(record).expect("serialisable");
        write_atomically(&path, &body).await.map_err(unavailable)
    }

    async fn finish(
        &self,
        _bucket: &str,
        folder: &str,
        source: &SourceRef,
    ) -> Result<(), StoreError> {
        // Written once, after every size: a crash between sizes leaves no record, so a restart
        // redoes the source instead of taking it as done.
        let dir = safe_join(&self.output, folder.trim_end_matches('/'))?;
        let record = serde_json::to_vec(&DirRecord {
            source: source.name.clone(),
            generation: source.generation,
        })
        .expect("serialisable");
        write_atomically(&dir.join(DIR_RECORD), &record)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))
    }
}

/// Temp file + rename, so a reader never sees half a thumbnail. The temp name is unique per
/// write (hidden, so a scan of an output folder inside the watched one skips it), so two
/// writes of one path never share a temp file.
async fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{file}.tmp-{}-{n}", std::process::id()));
    tokio::fs::write(&tmp, data).await?;
    let renamed = tokio::fs::rename(&tmp, path).await;
    if renamed.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    renamed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::thumbnail_key;
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
    fn local_names_cannot_escape() {
        assert!(safe_join(Path::new("/x"), "../etc/passwd").is_err());
        assert!(safe_join(Path::new("/x"), "/etc/passwd").is_err());
        assert_eq!(
            safe_join(Path::new("/x"), "a/b").unwrap(),
            Path::new("/x/a/b")
        );
    }

    #[tokio::test]
    async fn concurrent_writes_of_one_path_never_share_a_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("256.jpg");
        let writes: Vec<_> = (0..32u8)
            .map(|i| {
                let path = path.clone();
                tokio::spawn(async move { write_atomically(&path, &[i; 4096]).await })
            })
            .collect();
        for write in writes {
            write.await.unwrap().expect("every write succeeds");
        }
        let data = std::fs::read(&path).unwrap();
        assert!(data.iter().all(|&b| b == data[0]), "one whole write won");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[tokio::test]
    async fn dir_store_records_once_finished() {
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
        let key = thumbnail_key("", "a.jpg", 64, "jpg");
        assert_eq!(
            store.put("", &key, &thumb(64), &src(2), "").await.unwrap(),
            Put::Written
        );
        assert_eq!(
            store.recorded_generation("a.jpg"),
            None,
            "no record before every size is written"
        );
        store.finish("", "a.jpg/", &src(2)).await.unwrap();
        assert_eq!(store.recorded_generation("a.jpg"), Some(2));
        // Generations are versions, not an order: an "older" one is written too.
        assert_eq!(
            store.put("", &key, &thumb(64), &src(1), "").await.unwrap(),
            Put::Written
        );
    }
}
