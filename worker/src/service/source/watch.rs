//! The local source: a polling scan of `--watch DIR`, feeding the same pipeline as Pub/Sub.
//!
//! A file becomes a job once its size, times and inode are unchanged across two scans (a file
//! still being copied in is not picked up half-written), the way a bucket only notifies
//! finished uploads. Its "generation" is its ctime ([`file_generation`]); a file whose
//! thumbnails record that generation and are all there is skipped, so a restart does not redo
//! work, and a replaced file is redone whatever dates it carries. One job per file runs at a
//! time: a file changed while its job runs is redone once that job ends. A file whose name is
//! not UTF-8 cannot become an object name: it gets an `invalid_name` failure event.
//! Polling rather than inotify: it works on every filesystem (network mounts, Docker volumes)
//! and costs one `stat` per file per interval.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::naming::thumbnail_key;
use crate::service::fate::{Fate, JobError};
use crate::service::message::{Job, Origin};
use crate::service::process::Pipeline;
use crate::service::store::{dir::file_generation, DirStore};

/// A file as last seen: what changes when it is written or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    generation: i64,
    inode: u64,
}

/// One file found by a scan.
#[derive(Debug)]
struct Found {
    /// The relative name with `/`; lossy when `utf8` is false.
    name: String,
    utf8: bool,
    stamp: Stamp,
}

/// Whether `name` at `generation` has every thumbnail the request asks for, recorded as made
/// from that generation (a record alone is not enough: sizes may have been added since).
fn already_done(pipeline: &Pipeline<DirStore>, name: &str, generation: i64) -> bool {
    let store = &pipeline.store;
    let request = pipeline.pool.request();
    store.recorded_generation(name) == Some(generation)
        && request.sizes.iter().all(|&size| {
            let key = thumbnail_key("", name, size, request.format.extension());
            store.output.join(key).is_file()
        })
}

pub async fn run(
    pipeline: Arc<Pipeline<DirStore>>,
    poll: std::time::Duration,
    shutdown_timeout: std::time::Duration,
    ready: Arc<AtomicBool>,
) {
    let dir = pipeline.store.input.clone();
    let out = pipeline.store.output.clone();
    let bucket = dir.display().to_string();
    let shutdown = pipeline.shutdown.clone();
    let mut seen: HashMap<String, Stamp> = HashMap::new();
    let mut done: HashMap<String, i64> = HashMap::new();
    let mut running: HashMap<String, i64> = HashMap::new();
    let mut tasks: JoinSet<(String, i64, Fate)> = JoinSet::new();
    ready.store(true, Ordering::SeqCst);
    tracing::info!(dir = %dir.display(), out = %out.display(), "watching");

    while !shutdown.is_triggered() {
        let files = {
            let (dir, out) = (dir.clone(), out.clone());
            tokio::task::spawn_blocking(move || scan(&dir, &out))
                .await
                .unwrap_or_default()
        };
        for Found { name, utf8, stamp } in files {
            let generation = stamp.generation;
            // One job per file at a time; a change meanwhile is seen after it ends.
            if done.get(&name) == Some(&generation) || running.contains_key(&name) {
                continue;
            }
            if utf8 && already_done(&pipeline, &name, generation) {
                done.insert(name, generation);
                continue;
            }
            if seen.insert(name.clone(), stamp) != Some(stamp) {
                continue; // new or still changing: wait for the next scan
            }
            running.insert(name.clone(), generation);
            let pipeline = pipeline.clone();
            let job = Job {
                bucket: bucket.clone(),
                name: name.clone(),
                generation: Some(generation),
                size: Some(stamp.size),
                content_type: None,
                origin: Origin::Notification,
            };
            tasks.spawn(async move {
                pipeline.metrics.received.inc();
                let result = if utf8 {
                    pipeline.handle(&job).await
                } else {
                    Err(JobError::InvalidName(job.name.clone()))
                };
                let (fate, _) = pipeline.settle(&job.name, Some(&job), &result).await;
                (name, generation, fate)
            });
        }
        let sleep = tokio::time::sleep(poll);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = shutdown.wait() => break,
                Some(joined) = tasks.join_next() => {
                    if let Ok((name, generation, fate)) = joined {
                        running.remove(&name);
                        match fate {
                            // Acked: done for this generation (including permanent failures).
                            Fate::Ack => { done.insert(name, generation); }
                            // Nacked: forget it, the next scans pick it up again.
                            Fate::Nack => { seen.remove(&name); }
                        }
                    }
                }
            }
        }
    }
    ready.store(false, Ordering::SeqCst);
    if tokio::time::timeout(shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            left = tasks.len(),
            "shutdown timeout reached, abandoning the rest"
        );
        tasks.abort_all();
    }
    tracing::info!("stopped");
}

/// Regular, non-hidden files under `dir` (relative names with `/`), skipping `out` when it
/// lies inside `dir` (our own thumbnails) and temporary files.
fn scan(dir: &Path, out: &Path) -> Vec<Found> {
    let out = out.canonicalize().unwrap_or_else(|_| out.to_path_buf());
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            let hidden = e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.');
            let is_out = e.path().canonicalize().ok().as_deref() == Some(out.as_path());
            !hidden && !is_out
        });
    for entry in walker.flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let Ok(rel) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let utf8 = rel.to_str().is_some();
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        use std::os::unix::fs::MetadataExt;
        let stamp = Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            generation: file_generation(&meta),
            inode: meta.ino(),
        };
        files.push(Found { name, utf8, stamp });
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_skips_hidden_files_and_the_output_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("thumbs/x.jpg")).unwrap();
        std::fs::write(root.join("a/b/c.jpg"), b"123").unwrap();
        std::fs::write(root.join(".hidden.jpg"), b"1").unwrap();
        std::fs::write(root.join("thumbs/x.jpg/256.jpg"), b"1").unwrap();
        let files = scan(root, &root.join("thumbs"));
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].name, "a/b/c.jpg");
        assert!(files[0].utf8);
        assert_eq!(files[0].stamp.size, 3);
    }
}
