//! Where thumbnails live: one naming scheme for the worker, the application and the batch CLI.
//!
//! A source object `NAME` gets its thumbnails at `<prefix>NAME/<size>.<ext>` in the output
//! bucket (or folder): all sizes of one source side by side, listable by the source's name.
//! Every thumbnail carries custom metadata naming the source it was made from; that record is
//! what makes a write safe (compare-and-swap on it) and what a reader trusts to say "ready".
//! A permanent failure leaves a record beside them ([`failure_key`]), so "failed" survives a
//! restart of whoever reads it.
//!
//! Uploads through `thumbd serve` are named `<prefix><yyyy>/<mm>/<dd>/<id>-<name>`
//! ([`upload_object`]): the date folders keep listings short, and the id ([`UploadId`]) sorts
//! newest first within a day and names its own date, so an id alone finds its object.

/// Custom-metadata keys written on every thumbnail.
pub const META_SOURCE_BUCKET: &str = "thumbd-source-bucket";
pub const META_SOURCE_OBJECT: &str = "thumbd-source-object";
pub const META_SOURCE_GENERATION: &str = "thumbd-source-generation";
/// fake-gcs-server drops the content type; keep it in metadata too.
pub const META_CONTENT_TYPE: &str = "thumbd-content-type";
pub const META_WIDTH: &str = "thumbd-width";
pub const META_HEIGHT: &str = "thumbd-height";

/// The failure record's file name, beside the thumbnails it replaces.
pub const FAILURE_RECORD: &str = "failed.json";

/// The body of a failure record: which source generation failed, and why (the reason is the
/// one the worker's events and metrics carry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailureRecord {
    pub source_bucket: String,
    pub source_object: String,
    pub generation: Option<i64>,
    pub reason: String,
    pub message: String,
}

/// The output prefix as a folder: `thumbs` becomes `thumbs/`, so it covers `thumbs/a.jpg` but
/// not `thumbsup.jpg`. Empty stays empty (the whole bucket).
pub fn normalize_prefix(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}

/// The folder holding every thumbnail of `object`: `<prefix><object>/`.
pub fn thumbnails_folder(prefix: &str, object: &str) -> String {
    format!("{}{object}/", normalize_prefix(prefix))
}

/// The key of one thumbnail: `<prefix><object>/<size>.<ext>`.
pub fn thumbnail_key(prefix: &str, object: &str, size: u32, extension: &str) -> String {
    format!("{}{size}.{extension}", thumbnails_folder(prefix, object))
}

/// The file of one thumbnail made from a local file named `name` (a relative path, extension
/// kept) under the folder `out`: `<out>/<name>/<size>.<ext>`, the layout of [`thumbnail_key`]
/// with folders for prefixes, for names that need not be UTF-8. The batch CLI writes here.
pub fn thumbnail_path(
    out: &std::path::Path,
    name: &std::path::Path,
    size: u32,
    extension: &str,
) -> std::path::PathBuf {
    out.join(name).join(format!("{size}.{extension}"))
}

/// Where a permanent failure of `object` is recorded: `<prefix><object>/failed.json`.
pub fn failure_key(prefix: &str, object: &str) -> String {
    format!("{}{FAILURE_RECORD}", thumbnails_folder(prefix, object))
}

/// Longest object name Cloud Storage accepts, in bytes of UTF-8.
pub const MAX_OBJECT_NAME_BYTES: usize = 1024;

/// Longest file name on common local filesystems (ext4, XFS, APFS), in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// An upload's id: 11 hex digits of `0xfff_ffff_ffff - unix milliseconds` (so later uploads
/// sort first), then 8 random hex digits. Lowercase hex only: safe in URLs and object names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId {
    millis: u64,
    random: u32,
}

const ID_TIME_MAX: u64 = 0xfff_ffff_ffff;

impl UploadId {
    pub fn new(millis: u64, random: u32) -> UploadId {
        UploadId {
            millis: millis.min(ID_TIME_MAX),
            random,
        }
    }

    /// Parses the 19-character form; anything else is not an id.
    pub fn parse(s: &str) -> Option<UploadId> {
        if s.len() != 19 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let inverted = u64::from_str_radix(&s[..11], 16).ok()?;
        let random = u32::from_str_radix(&s[11..], 16).ok()?;
        Some(UploadId {
            millis: ID_TIME_MAX - inverted,
            random,
        })
    }

    /// Unix milliseconds of the upload.
    pub fn millis(self) -> u64 {
        self.millis
    }

    /// The upload time as RFC 3339 (UTC, milliseconds).
    pub fn rfc3339(self) -> String {
        let (y, m, d) = civil_from_days((self.millis / 86_400_000) as i64);
        let ms = self.millis % 86_400_000;
        let (h, min, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
    }

    /// `yyyy/mm/dd/` of the upload (UTC).
    pub fn date_folder(self) -> String {
        let days = (self.millis / 86_400_000) as i64;
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}/{m:02}/{d:02}/")
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:011x}{:08x}", ID_TIME_MAX - self.millis, self.random)
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The folder of one id's upload: `<prefix><yyyy>/<mm>/<dd>/<id>-`, a listing prefix that
/// matches exactly that upload.
pub fn upload_id_prefix(prefix: &str, id: UploadId) -> String {
    format!("{}{}{id}-", normalize_prefix(prefix), id.date_folder())
}

/// The object name of an upload: `<prefix><yyyy>/<mm>/<dd>/<id>-<sanitised name>`, at most
/// [`MAX_OBJECT_NAME_BYTES`], and its last part at most [`MAX_FILE_NAME_BYTES`] (so local mode
/// can store it as a file).
pub fn upload_object(prefix: &str, id: UploadId, original: &str) -> String {
    let head = upload_id_prefix(prefix, id);
    // Also one file name on a local disk (255 bytes), with the id and its dash (20).
    let room = MAX_OBJECT_NAME_BYTES
        .saturating_sub(head.len())
        .min(MAX_FILE_NAME_BYTES - 20);
    format!("{head}{}", sanitize_file_name(original, room))
}

/// The id and original name of an upload's object, if it is one under `prefix`.
pub fn parse_upload_object(prefix: &str, object: &str) -> Option<(UploadId, String)> {
    let rest = object.strip_prefix(&normalize_prefix(prefix))?;
    let (date, file) = rest.get(..11).zip(rest.get(11..))?;
    let id = UploadId::parse(file.get(..19)?)?;
    let name = file.get(19..)?.strip_prefix('-')?;
    (id.date_folder() == date).then(|| (id, name.to_string()))
}

/// A client's file name made safe as the last part of an object name: only the base name
/// (no folders, so no `..`), no control characters or characters that Cloud Storage advises
/// against (`#[]*?` and the backslash), no leading dots or spaces, at most `max_bytes` bytes
/// of UTF-8 (the extension kept when it is short), `image` when nothing is left.
pub fn sanitize_file_name(original: &str, max_bytes: usize) -> String {
    let base = original.rsplit(['/', '\\']).next().unwrap_or("");
    let mut clean = String::with_capacity(base.len().min(max_bytes));
    for c in base.chars() {
        let replaced = c.is_control()
            || c.is_whitespace()
            || matches!(c, '#' | '[' | ']' | '*' | '?' | '\u{feff}');
        // A run of replaced characters becomes one `_`.
        if !replaced {
            clean.push(c);
        } else if !clean.ends_with('_') {
            clean.push('_');
        }
    }
    let clean = clean
        .trim_start_matches(['.', '_'])
        .trim_end_matches(['.', '_']);
    let clean = if clean.is_empty() { "image" } else { clean };
    if clean.len() <= max_bytes {
        return clean.to_string();
    }
    // Too long: keep a short extension and cut the stem at a character boundary.
    let ext = clean
        .rfind('.')
        .map(|i| &clean[i..])
        .filter(|e| e.len() <= 10 && e.len() < max_bytes);
    let ext = ext.unwrap_or("");
    let mut cut = max_bytes - ext.len();
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &clean[..cut])
}

/// Whether `object` lies under `prefix` (compared as path segments): such objects are our own
/// thumbnails and are never thumbnailed again.
pub fn is_under_prefix(prefix: &str, object: &str) -> bool {
    object.starts_with(&normalize_prefix(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        assert_eq!(
            thumbnail_key("thumbs/", "a/b.png", 256, "jpg"),
            "thumbs/a/b.png/256.jpg"
        );
        assert_eq!(thumbnail_key("", "a.png", 64, "webp"), "a.png/64.webp");
        assert_eq!(
            thumbnail_key("thumbs", "a.png", 64, "png"),
            "thumbs/a.png/64.png"
        );
        // Files: the same layout under a folder.
        let out = std::path::Path::new("/o");
        assert_eq!(
            thumbnail_path(out, "photos/a.jpg".as_ref(), 256, "jpg"),
            out.join(thumbnail_key("", "photos/a.jpg", 256, "jpg"))
        );
    }

    #[test]
    fn prefixes_compare_as_folders() {
        assert!(is_under_prefix("thumbs", "thumbs/a.jpg/256.jpg"));
        assert!(is_under_prefix("thumbs/", "thumbs/a.jpg/256.jpg"));
        assert!(!is_under_prefix("thumbs", "thumbsup.jpg"));
        assert!(!is_under_prefix("thumbs/", "thumbsup.jpg"));
        assert!(is_under_prefix("", "anything"));
    }

    #[test]
    fn failure_records_sit_beside_the_thumbnails() {
        assert_eq!(
            failure_key("thumbs", "2026/a.png"),
            "thumbs/2026/a.png/failed.json"
        );
    }

    #[test]
    fn ids_sort_newest_first_and_name_their_day() {
        let older = UploadId::new(1_764_633_600_000, 7); // 2025-12-02T00:00:00Z
        let newer = UploadId::new(1_764_633_600_001, 0);
        assert!(newer.to_string() < older.to_string());
        assert_eq!(older.to_string().len(), 19);
        assert_eq!(UploadId::parse(&older.to_string()), Some(older));
        assert_eq!(older.date_folder(), "2025/12/02/");
        assert_eq!(older.rfc3339(), "2025-12-02T00:00:00.000Z");
        assert_eq!(
            UploadId::new(1_764_691_199_999, 0).rfc3339(),
            "2025-12-02T15:59:59.999Z"
        );
        assert_eq!(UploadId::new(0, 0).date_folder(), "1970/01/01/");
        assert_eq!(
            UploadId::new(951_782_400_000, 0).date_folder(),
            "2000/02/29/"
        );
        assert_eq!(UploadId::parse("ABCDEF0123456789abc"), None);
        assert_eq!(UploadId::parse("0123"), None);
    }

    #[test]
    fn upload_names_round_trip() {
        let id = UploadId::new(1_764_633_600_000, 0xdeadbeef);
        let object = upload_object("uploads", id, "My Cat.JPG");
        assert_eq!(object, format!("uploads/2025/12/02/{id}-My_Cat.JPG"));
        assert_eq!(
            parse_upload_object("uploads/", &object),
            Some((id, "My_Cat.JPG".to_string()))
        );
        assert_eq!(parse_upload_object("other/", &object), None);
        assert_eq!(parse_upload_object("", "2025/12/02/x.jpg"), None);
        assert!(upload_id_prefix("", id).ends_with(&format!("{id}-")));
    }

    #[test]
    fn hostile_names_are_made_safe() {
        assert_eq!(sanitize_file_name("../../etc/passwd", 100), "passwd");
        assert_eq!(sanitize_file_name("..\\..\\boot.ini", 100), "boot.ini");
        assert_eq!(sanitize_file_name("a\0b\r\nc.png", 100), "a_b_c.png");
        assert_eq!(sanitize_file_name("..", 100), "image");
        assert_eq!(sanitize_file_name("", 100), "image");
        assert_eq!(sanitize_file_name(".hidden.jpg", 100), "hidden.jpg");
        assert_eq!(sanitize_file_name("x#[1]*?.jpg", 100), "x_1_.jpg");
        let long = format!("{}.jpeg", "é".repeat(3000));
        let cut = sanitize_file_name(&long, 1000);
        assert!(cut.len() <= 1000 && cut.ends_with(".jpeg"), "{}", cut.len());
        let id = UploadId::new(1, 1);
        let object = upload_object("p/", id, &"n".repeat(5000));
        let file = object.rsplit('/').next().unwrap();
        assert_eq!(file.len(), MAX_FILE_NAME_BYTES);
        let deep = upload_object(&"d/".repeat(450), id, &"a".repeat(300));
        assert!(deep.len() <= MAX_OBJECT_NAME_BYTES, "{}", deep.len());
    }
}
