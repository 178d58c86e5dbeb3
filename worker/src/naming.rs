//! Where thumbnails live: one naming scheme for the worker, the application and the batch CLI.
//!
//! A source object `NAME` gets its thumbnails at `<prefix>NAME/<size>.<ext>` in the output
//! bucket (or folder): all sizes of one source side by side, listable by the source's name.
//! Every thumbnail carries custom metadata naming the source it was made from; that record is
//! what makes a write safe (compare-and-swap on it) and what a reader trusts to say "ready".

/// Custom-metadata keys written on every thumbnail.
pub const META_SOURCE_BUCKET: &str = "thumbd-source-bucket";
pub const META_SOURCE_OBJECT: &str = "thumbd-source-object";
pub const META_SOURCE_GENERATION: &str = "thumbd-source-generation";
/// fake-gcs-server drops the content type; keep it in metadata too.
pub const META_CONTENT_TYPE: &str = "thumbd-content-type";
pub const META_WIDTH: &str = "thumbd-width";
pub const META_HEIGHT: &str = "thumbd-height";

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
    }

    #[test]
    fn prefixes_compare_as_folders() {
        assert!(is_under_prefix("thumbs", "thumbs/a.jpg/256.jpg"));
        assert!(is_under_prefix("thumbs/", "thumbs/a.jpg/256.jpg"));
        assert!(!is_under_prefix("thumbs", "thumbsup.jpg"));
        assert!(!is_under_prefix("thumbs/", "thumbsup.jpg"));
        assert!(is_under_prefix("", "anything"));
    }
}
