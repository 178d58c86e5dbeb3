//! Helpers shared by thumbd's criterion benches, the callgrind regression guard
//! (`thumbd-guard`) and the capacity tool (`thumbd-perf`), so that all three find, load and
//! classify the corpus the same way and their numbers can be compared.
//!
//! The corpus is `corpus/full/` (the 145-file benchmark set that `corpus/fetch` builds) when
//! present, else the committed edge-case set in `corpus/`; `THUMBD_CORPUS` overrides both.
//! Files that do not make a thumbnail (the edge-case set holds truncated files and bombs on
//! purpose) are skipped and listed, never fatal.

use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use thumbd_engine::{ImageInfo, JpegCoding, Limits, Request};

/// Size classes of the input, in megapixels, as in the shared peers harness
/// (`small` < 2 MP ≤ `mid` ≤ 12 MP < `large`), so figures line up with peer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SizeClass {
    /// Under 2 MP: icons, previews, screenshots.
    Small,
    /// 2–12 MP: most phone and camera photos.
    Mid,
    /// Over 12 MP: high-resolution photos and wallpapers.
    Large,
}

impl SizeClass {
    /// Every class, smallest first.
    pub const ALL: [SizeClass; 3] = [SizeClass::Small, SizeClass::Mid, SizeClass::Large];

    /// The class of an image of `pixels` pixels.
    pub fn of_pixels(pixels: u64) -> Self {
        match pixels {
            p if p < 2_000_000 => SizeClass::Small,
            p if p <= 12_000_000 => SizeClass::Mid,
            _ => SizeClass::Large,
        }
    }

    /// Lower-case name used in bench ids, JSON and `mix.toml`.
    pub fn name(self) -> &'static str {
        match self {
            SizeClass::Small => "small",
            SizeClass::Mid => "mid",
            SizeClass::Large => "large",
        }
    }

    /// Parses [`SizeClass::name`].
    pub fn parse(name: &str) -> Option<Self> {
        SizeClass::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Human range, for reports.
    pub fn range(self) -> &'static str {
        match self {
            SizeClass::Small => "< 2 MP",
            SizeClass::Mid => "2–12 MP",
            SizeClass::Large => "> 12 MP",
        }
    }
}

impl fmt::Display for SizeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which corpus a run used: reported by every tool, because numbers on the committed edge-case
/// set (mostly tiny files) mean something else than numbers on the benchmark set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorpusKind {
    /// `corpus/full/`, built by `corpus/fetch`.
    Full,
    /// The committed edge-case set in `corpus/`.
    Committed,
    /// A folder given by `THUMBD_CORPUS` or on a command line.
    Custom,
}

/// A corpus folder and what kind of set it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusDir {
    /// The folder (image files directly inside it are used; sub-folders are not walked).
    pub dir: PathBuf,
    /// Which set this is.
    pub kind: CorpusKind,
}

impl CorpusDir {
    /// One line saying which set is used, and how to get the full one when it is not.
    pub fn describe(&self) -> String {
        match self.kind {
            CorpusKind::Full => format!("{} (full benchmark set)", self.dir.display()),
            CorpusKind::Committed => format!(
                "{} (committed edge-case set; run corpus/fetch for the full benchmark set)",
                self.dir.display()
            ),
            CorpusKind::Custom => format!("{} (given folder)", self.dir.display()),
        }
    }
}

/// Why no corpus could be used.
#[derive(Debug)]
pub enum CorpusError {
    /// The folder does not exist or holds no image files.
    Missing(PathBuf),
    /// Every file failed to make a thumbnail.
    NothingDecodes(PathBuf),
    /// Reading the folder failed.
    Io(PathBuf, std::io::Error),
}

impl fmt::Display for CorpusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorpusError::Missing(dir) => write!(
                f,
                "no corpus images in {}: run `corpus/fetch` from the repository root to build \
                 the benchmark set in corpus/full/, or point THUMBD_CORPUS at a folder of \
                 JPEG/PNG files",
                dir.display()
            ),
            CorpusError::NothingDecodes(dir) => write!(
                f,
                "no file in {} makes a thumbnail: run `corpus/fetch` to rebuild the \
                 benchmark set",
                dir.display()
            ),
            CorpusError::Io(dir, e) => write!(f, "reading {}: {e}", dir.display()),
        }
    }
}

impl std::error::Error for CorpusError {}

/// Root of the workspace this crate was built in.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// Picks the corpus: `THUMBD_CORPUS`, else `corpus/full/` if it holds images, else `corpus/`.
pub fn find_corpus() -> Result<CorpusDir, CorpusError> {
    if let Some(dir) = std::env::var_os("THUMBD_CORPUS") {
        let dir = PathBuf::from(dir);
        return if list_images(&dir)?.is_empty() {
            Err(CorpusError::Missing(dir))
        } else {
            Ok(CorpusDir {
                dir,
                kind: CorpusKind::Custom,
            })
        };
    }
    let corpus = workspace_root().join("corpus");
    let full = corpus.join("full");
    if full.is_dir() && !list_images(&full)?.is_empty() {
        return Ok(CorpusDir {
            dir: full,
            kind: CorpusKind::Full,
        });
    }
    if corpus.is_dir() && !list_images(&corpus)?.is_empty() {
        return Ok(CorpusDir {
            dir: corpus,
            kind: CorpusKind::Committed,
        });
    }
    Err(CorpusError::Missing(corpus))
}

/// Image files directly inside `dir`, sorted by name. A missing folder is an empty list.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, CorpusError> {
    const EXTENSIONS: &[&str] = &["jpg", "jpeg", "jpe", "jfif", "mpo", "png", "gif", "webp"];
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CorpusError::Io(dir.to_path_buf(), e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| CorpusError::Io(dir.to_path_buf(), e))?
            .path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if path.is_file() && ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str())) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// One corpus file that makes a thumbnail, in memory.
#[derive(Debug, Clone)]
pub struct Sample {
    /// File name, used as the bench id.
    pub name: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// File size.
    pub bytes: u64,
    /// The file's bytes; empty in a header-only index ([`Corpus::index`]).
    pub data: Vec<u8>,
    /// Its header.
    pub info: ImageInfo,
}

impl Sample {
    /// Size class from the header's pixel count.
    pub fn class(&self) -> SizeClass {
        SizeClass::of_pixels(self.info.pixels())
    }

    /// `"jpeg"` or `"png"`.
    pub fn format(&self) -> &'static str {
        self.info.format.name()
    }

    /// Whether this is a progressive JPEG.
    pub fn is_progressive(&self) -> bool {
        self.info.jpeg_coding == Some(JpegCoding::Progressive)
    }

    /// Whether this is a baseline (sequential Huffman) JPEG.
    pub fn is_baseline(&self) -> bool {
        self.info.jpeg_coding == Some(JpegCoding::Baseline)
    }

    /// Input megapixels (header).
    pub fn megapixels(&self) -> f64 {
        self.info.pixels() as f64 / 1e6
    }
}

/// The usable files of a corpus, and those skipped with the reason.
#[derive(Debug)]
pub struct Corpus {
    /// Where the files came from.
    pub dir: CorpusDir,
    /// Files that make a thumbnail with the default request, sorted by name.
    pub samples: Vec<Sample>,
    /// Files that did not, with the engine's error.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Corpus {
    /// Loads every image of `dir` and keeps those the engine turns into a default thumbnail
    /// (so a bench never times an error path by accident).
    pub fn load(dir: CorpusDir) -> Result<Self, CorpusError> {
        let files = list_images(&dir.dir)?;
        if files.is_empty() {
            return Err(CorpusError::Missing(dir.dir));
        }
        let limits = Limits::default();
        let request = Request::default();
        let results: Vec<Result<Sample, (PathBuf, String)>> = files
            .into_par_iter()
            .map(|path| {
                let data = std::fs::read(&path).map_err(|e| (path.clone(), e.to_string()))?;
                let info = thumbd_engine::probe(&data, &limits)
                    .map_err(|e| (path.clone(), e.to_string()))?;
                thumbd_engine::thumbnail(&data, &request, &limits)
                    .map_err(|e| (path.clone(), e.to_string()))?;
                Ok(Sample {
                    name: file_name(&path),
                    bytes: data.len() as u64,
                    path,
                    data,
                    info,
                })
            })
            .collect();
        let mut samples = Vec::new();
        let mut skipped = Vec::new();
        for result in results {
            match result {
                Ok(sample) => samples.push(sample),
                Err(skip) => skipped.push(skip),
            }
        }
        if samples.is_empty() {
            return Err(CorpusError::NothingDecodes(dir.dir));
        }
        Ok(Corpus {
            dir,
            samples,
            skipped,
        })
    }

    /// A header-only view of files already known to be usable (e.g. checked by
    /// [`Corpus::load`] in another process): reads and probes each file but keeps no data, so
    /// the caller's memory stays small.
    pub fn index(
        dir: CorpusDir,
        usable: &[PathBuf],
        skipped: Vec<(PathBuf, String)>,
    ) -> Result<Self, CorpusError> {
        let limits = Limits::default();
        let mut samples = Vec::with_capacity(usable.len());
        for path in usable {
            let data = std::fs::read(path).map_err(|e| CorpusError::Io(path.clone(), e))?;
            // Checked usable moments ago; a file that changed since is skipped, not fatal.
            match thumbd_engine::probe(&data, &limits) {
                Ok(info) => samples.push(Sample {
                    name: file_name(path),
                    path: path.clone(),
                    bytes: data.len() as u64,
                    data: Vec::new(),
                    info,
                }),
                Err(e) => eprintln!("skipping {}: {e}", path.display()),
            }
        }
        if samples.is_empty() {
            return Err(CorpusError::NothingDecodes(dir.dir));
        }
        Ok(Corpus {
            dir,
            samples,
            skipped,
        })
    }

    /// [`find_corpus`] then [`Corpus::load`].
    pub fn discover() -> Result<Self, CorpusError> {
        Corpus::load(find_corpus()?)
    }

    /// Says on stderr which set is used and lists the skipped files.
    pub fn announce(&self, tool: &str) {
        eprintln!(
            "{tool}: corpus {}: {} usable files, {} skipped",
            self.dir.describe(),
            self.samples.len(),
            self.skipped.len()
        );
        for (path, why) in &self.skipped {
            eprintln!("{tool}:   skipped {}: {why}", path.display());
        }
    }

    /// Up to `n` files matching `keep`, spread evenly over their pixel counts (smallest,
    /// median-ish, largest…), so a handful stands for the whole class.
    pub fn pick(&self, n: usize, keep: impl Fn(&Sample) -> bool) -> Vec<&Sample> {
        let mut matching: Vec<&Sample> = self.samples.iter().filter(|s| keep(s)).collect();
        matching.sort_by_key(|s| (s.info.pixels(), s.name.clone()));
        spread(&matching, n)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `n` items evenly spaced over `items` (all of them when there are no more than `n`).
fn spread<T: Copy>(items: &[T], n: usize) -> Vec<T> {
    if n == 0 {
        return Vec::new();
    }
    if items.len() <= n {
        return items.to_vec();
    }
    if n == 1 {
        return vec![items[items.len() / 2]];
    }
    (0..n)
        .map(|i| items[i * (items.len() - 1) / (n - 1)])
        .collect()
}

/// Path of a file of the committed corpus (always present in a checkout), for fixed inputs.
pub fn committed_file(name: &str) -> PathBuf {
    workspace_root().join("corpus").join(name)
}

/// The `Ir` total of a callgrind output file (its `totals:` or `summary:` line), for the
/// regression guard.
pub fn callgrind_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_peer_harness() {
        assert_eq!(SizeClass::of_pixels(1_999_999), SizeClass::Small);
        assert_eq!(SizeClass::of_pixels(2_000_000), SizeClass::Mid);
        assert_eq!(SizeClass::of_pixels(12_000_000), SizeClass::Mid);
        assert_eq!(SizeClass::of_pixels(12_000_001), SizeClass::Large);
        assert_eq!(SizeClass::parse("mid"), Some(SizeClass::Mid));
    }

    #[test]
    fn spread_keeps_ends_and_count() {
        let items: Vec<u32> = (0..10).collect();
        assert_eq!(spread(&items, 3), vec![0, 4, 9]);
        assert_eq!(spread(&items[..2], 3), vec![0, 1]);
        assert!(spread(&items, 0).is_empty());
        assert_eq!(spread(&items, 1), vec![5]);
    }

    #[test]
    fn parses_callgrind_totals() {
        let out = "events: Ir\nfl=x\n0 1\ntotals: 12345\n";
        assert_eq!(callgrind_total(out), Some(12345));
        assert_eq!(callgrind_total("summary: 99\n"), Some(99));
        assert_eq!(callgrind_total("events: Ir\n"), None);
        assert_eq!(callgrind_total("totals: 0\n"), None);
    }

    #[test]
    fn missing_corpus_names_the_fetch_script() {
        let err = CorpusError::Missing(PathBuf::from("/nowhere"));
        assert!(err.to_string().contains("corpus/fetch"));
        assert!(list_images(Path::new("/nowhere/at/all"))
            .unwrap()
            .is_empty());
    }
}
