//! What a Pub/Sub message asks for: a Cloud Storage notification (attributes `eventType`,
//! `bucketId`, `objectId`, `objectGeneration`, JSON_API_V1 body) or a plain JSON job
//! `{"bucket", "name", "generation"?}` from any other producer.

use std::collections::HashMap;

use serde::Deserialize;

/// One source object to thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub bucket: String,
    pub name: String,
    /// The generation the notification is about; `None` means "the live object".
    pub generation: Option<i64>,
    /// Object size from the notification, when known (checked before fetching).
    pub size: Option<u64>,
    /// Content type from the notification, when known (obvious non-images are refused
    /// before any byte is read).
    pub content_type: Option<String>,
    pub origin: Origin,
}

/// Who asked: a notification names an object that existed at that generation, a plain job may
/// name anything (a misspelt name is then `not_found`, not a stale notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Notification,
    Plain,
}

/// A message that is well-formed but asks for no work (acked and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// A notification other than `OBJECT_FINALIZE` (deletes, metadata updates, archives).
    EventType,
}

/// A message that can never be processed (acked, counted and reported as failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

#[derive(Deserialize)]
struct PlainJob {
    bucket: String,
    name: String,
    #[serde(default, deserialize_with = "int_or_string")]
    generation: Option<i64>,
}

/// The parts of a JSON_API_V1 notification body the worker uses (`size` is a string there).
#[derive(Deserialize)]
struct ObjectResource {
    #[serde(default, deserialize_with = "int_or_string")]
    size: Option<i64>,
    #[serde(default, rename = "contentType")]
    content_type: Option<String>,
}

/// Parses one message. Notifications are recognised by their `eventType` attribute.
pub fn parse(
    attributes: &HashMap<String, String>,
    data: &[u8],
) -> Result<Result<Job, Ignored>, Malformed> {
    if let Some(event_type) = attributes.get("eventType") {
        if event_type != "OBJECT_FINALIZE" {
            return Ok(Err(Ignored::EventType));
        }
        let attr = |key: &str| {
            attributes
                .get(key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Malformed(format!("notification without `{key}`")))
        };
        let bucket = attr("bucketId")?.clone();
        let name = attr("objectId")?.clone();
        let generation = match attributes.get("objectGeneration") {
            Some(g) => Some(
                g.parse::<i64>()
                    .map_err(|_| Malformed(format!("objectGeneration `{g}` is not a number")))?,
            ),
            None => None,
        };
        check_bucket_name(&bucket)?;
        // The body is optional for our purposes (payloadFormat NONE has none).
        let resource = serde_json::from_slice::<ObjectResource>(data).ok();
        let size = resource
            .as_ref()
            .and_then(|o| o.size)
            .and_then(|s| u64::try_from(s).ok());
        let content_type = resource
            .and_then(|o| o.content_type)
            .filter(|t| !t.is_empty());
        return Ok(Ok(Job {
            bucket,
            name,
            generation,
            size,
            content_type,
            origin: Origin::Notification,
        }));
    }
    let job: PlainJob = serde_json::from_slice(data).map_err(|e| {
        Malformed(format!(
            "neither a Cloud Storage notification nor a JSON job {{\"bucket\", \"name\"}}: {e}"
        ))
    })?;
    if job.name.is_empty() {
        return Err(Malformed("JSON job with an empty name".into()));
    }
    check_bucket_name(&job.bucket)?;
    Ok(Ok(Job {
        bucket: job.bucket,
        name: job.name,
        generation: job.generation,
        size: None,
        content_type: None,
        origin: Origin::Plain,
    }))
}

/// Cloud Storage's bucket naming rules (3–63 characters per dot-separated part, 222 in all;
/// lowercase letters, digits, `-`, `_`, `.`; starting and ending with a letter or digit), so a
/// job cannot smuggle a path or a URL into a request.
pub fn is_bucket_name(s: &str) -> bool {
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=222).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && edge_ok(s.bytes().next())
        && edge_ok(s.bytes().last())
        && s.split('.').all(|part| (1..=63).contains(&part.len()))
        && (s.len() <= 63 || s.contains('.'))
}

fn check_bucket_name(bucket: &str) -> Result<(), Malformed> {
    if is_bucket_name(bucket) {
        Ok(())
    } else {
        Err(Malformed(format!("`{bucket}` is not a valid bucket name")))
    }
}

/// Cloud Storage's JSON API writes 64-bit integers as strings; producers may not.
fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrString {
        Int(i64),
        Str(String),
    }
    match Option::<IntOrString>::deserialize(d)? {
        None => Ok(None),
        Some(IntOrString::Int(i)) => Ok(Some(i)),
        Some(IntOrString::Str(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_finalize_notification() {
        let a = attrs(&[
            ("eventType", "OBJECT_FINALIZE"),
            ("bucketId", "bkt"),
            ("objectId", "dir/a.jpg"),
            ("objectGeneration", "1700000000123456"),
            ("payloadFormat", "JSON_API_V1"),
        ]);
        let body = br#"{"name":"dir/a.jpg","bucket":"bkt","generation":"1700000000123456","size":"1234","contentType":"image/jpeg"}"#;
        let job = parse(&a, body).unwrap().unwrap();
        assert_eq!(
            job,
            Job {
                bucket: "bkt".into(),
                name: "dir/a.jpg".into(),
                generation: Some(1_700_000_000_123_456),
                size: Some(1234),
                content_type: Some("image/jpeg".into()),
                origin: Origin::Notification,
            }
        );
    }

    #[test]
    fn other_events_are_ignored_and_broken_ones_refused() {
        let a = attrs(&[("eventType", "OBJECT_DELETE"), ("bucketId", "bkt")]);
        assert_eq!(parse(&a, b"").unwrap(), Err(Ignored::EventType));
        let a = attrs(&[("eventType", "OBJECT_FINALIZE"), ("bucketId", "bkt")]);
        assert!(parse(&a, b"").is_err());
        let a = attrs(&[
            ("eventType", "OBJECT_FINALIZE"),
            ("bucketId", "bkt"),
            ("objectId", "o"),
            ("objectGeneration", "x"),
        ]);
        assert!(parse(&a, b"").is_err());
    }

    #[test]
    fn plain_json_jobs() {
        let none = HashMap::new();
        let job = parse(
            &none,
            br#"{"bucket":"bkt","name":"n.png","generation":"7"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(job.generation, Some(7));
        let job = parse(&none, br#"{"bucket":"bkt","name":"n.png","generation":7}"#)
            .unwrap()
            .unwrap();
        assert_eq!(job.generation, Some(7));
        let job = parse(&none, br#"{"bucket":"bkt","name":"n.png"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(job.generation, None);
        assert!(parse(&none, b"not json").is_err());
        assert!(parse(&none, br#"{"bucket":"","name":"x"}"#).is_err());
        assert_eq!(job.origin, Origin::Plain);
    }

    #[test]
    fn bucket_names_are_checked() {
        for ok in ["abc", "my-bucket_1", "a.b.c", "photos.example.com"] {
            assert!(is_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab", "A-bucket", "../etc", "b/c", "-ab", "ab-", "a..b", "http://x", "",
        ] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
        let none = HashMap::new();
        assert!(parse(&none, br#"{"bucket":"../x","name":"n"}"#).is_err());
        let a = attrs(&[
            ("eventType", "OBJECT_FINALIZE"),
            ("bucketId", "B/../c"),
            ("objectId", "o"),
        ]);
        assert!(parse(&a, b"").is_err());
    }
}
