//! One plain-text mail per event: what was made (each thumbnail's `gs://` URL, size and
//! bytes), or why nothing was.

use std::fmt::Write;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::Message;

use crate::service::events::{Event, EventKind};

/// One of thumbd's two events, read from a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub kind: EventKind,
    pub event: Event,
}

impl Notice {
    /// Why not, for a body that is not JSON or not one of thumbd's events.
    pub fn parse(data: &[u8]) -> Result<Notice, String> {
        let event: Event = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        let kind = EventKind::of(&event)
            .ok_or_else(|| format!("`{}` is not a thumbd event", printable(&event.event)))?;
        Ok(Notice { kind, event })
    }
}

/// Who a mail is from and to (validated at start).
#[derive(Debug, Clone)]
pub struct Addresses {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

pub fn subject(notice: &Notice) -> String {
    let name = printable(&notice.event.name);
    match notice.kind {
        EventKind::Ready => format!("Thumbnails ready: {name}"),
        EventKind::Failed => format!("Thumbnail failed: {name}"),
    }
}

pub fn body(notice: &Notice) -> String {
    let event = &notice.event;
    let source = format!(
        "gs://{}/{}{}",
        printable(&event.bucket),
        printable(&event.name),
        event
            .generation
            .map(|g| format!(" (generation {g})"))
            .unwrap_or_default()
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    match notice.kind {
        EventKind::Ready => {
            let _ = writeln!(out, "Thumbnails are ready for {source}:\n");
            for o in &event.outputs {
                let _ = writeln!(
                    out,
                    "  {:>5} px  {}x{}  {}  {} bytes  gs://{}/{}",
                    o.size,
                    o.width,
                    o.height,
                    printable(&o.content_type),
                    o.bytes,
                    printable(&o.bucket),
                    printable(&o.name)
                );
            }
        }
        EventKind::Failed => {
            let _ = writeln!(out, "No thumbnails could be made of {source}.\n");
            let _ = writeln!(
                out,
                "Reason: {}",
                printable(event.reason.as_deref().unwrap_or("unknown"))
            );
            if let Some(error) = &event.error {
                let _ = writeln!(out, "Error: {}", printable(error));
            }
        }
    }
    let _ = write!(
        out,
        "\n-- \nSent by thumbd notify for the {} event.\n",
        notice.kind.as_str()
    );
    out
}

/// The whole mail. Its Message-ID is derived from the event, so a duplicate mail (sent again
/// after a restart) carries the same ID, which lets mail clients and archives fold the two.
pub fn message(notice: &Notice, addresses: &Addresses) -> Result<Message, lettre::error::Error> {
    let mut builder = Message::builder()
        .from(addresses.from.clone())
        .subject(subject(notice))
        .message_id(Some(message_id(notice, &addresses.from)))
        .header(ContentType::TEXT_PLAIN);
    for to in &addresses.to {
        builder = builder.to(to.clone());
    }
    builder.body(body(notice))
}

fn message_id(notice: &Notice, from: &Mailbox) -> String {
    let event = &notice.event;
    let kind = match notice.kind {
        EventKind::Ready => "ready",
        EventKind::Failed => "failed",
    };
    let generation = event
        .generation
        .map_or_else(|| "none".to_string(), |g| g.to_string());
    let object = fnv1a(&[event.bucket.as_bytes(), b"\0", event.name.as_bytes()]);
    format!(
        "<thumbd.{kind}.{generation}.{object:016x}@{}>",
        from.email.domain()
    )
}

/// FNV-1a, 64 bits: a hash that stays the same across processes and Rust versions.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Control characters (anyone who can publish to the events topic chooses the text) become
/// U+FFFD, so they cannot break the mail's lines.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::events::{OutputInfo, FAILED, READY};

    /// `event` as read from its JSON.
    fn notice(event: Event) -> Notice {
        Notice::parse(&serde_json::to_vec(&event).unwrap()).unwrap()
    }

    fn ready() -> Notice {
        notice(ready_event())
    }

    fn ready_event() -> Event {
        Event {
            event: READY.into(),
            bucket: "photos".into(),
            name: "trips/cat.jpg".into(),
            generation: Some(1700000000000000),
            outputs: vec![OutputInfo {
                bucket: "thumbs-bkt".into(),
                name: "thumbs/trips/cat.jpg/256.jpg".into(),
                size: 256,
                width: 256,
                height: 171,
                content_type: "image/jpeg".into(),
                bytes: 10243,
            }],
            reason: None,
            error: None,
        }
    }

    fn addresses() -> Addresses {
        Addresses {
            from: "thumbd <thumbd@example.com>".parse().unwrap(),
            to: vec![
                "ops@example.com".parse().unwrap(),
                "Jane Doe <jane@example.org>".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn a_ready_mail_lists_the_thumbnails() {
        let event = ready();
        assert_eq!(subject(&event), "Thumbnails ready: trips/cat.jpg");
        let body = body(&event);
        assert!(body.starts_with(
            "Thumbnails are ready for gs://photos/trips/cat.jpg (generation 1700000000000000):"
        ));
        assert!(
            body.contains(
                "256 px  256x171  image/jpeg  10243 bytes  gs://thumbs-bkt/thumbs/trips/cat.jpg/256.jpg"
            ),
            "{body}"
        );
        let text = String::from_utf8(message(&event, &addresses()).unwrap().formatted()).unwrap();
        assert!(
            text.contains("Subject: Thumbnails ready: trips/cat.jpg\r\n"),
            "{text}"
        );
        assert!(
            text.contains("To: ops@example.com, \"Jane Doe\" <jane@example.org>\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Type: text/plain; charset=utf-8\r\n"));
    }

    #[test]
    fn only_thumbds_events_are_notices() {
        assert_eq!(ready().kind, EventKind::Ready);
        assert_eq!(ready().event, ready_event());
        let stranger = Event {
            event: "OBJECT_FINALIZE".into(),
            ..ready_event()
        };
        let err = Notice::parse(&serde_json::to_vec(&stranger).unwrap()).unwrap_err();
        assert_eq!(err, "`OBJECT_FINALIZE` is not a thumbd event");
        assert!(Notice::parse(b"not json").is_err());
        assert!(
            Notice::parse(br#"{"event":"THUMBNAILS_READY"}"#).is_err(),
            "no bucket"
        );
    }

    #[test]
    fn a_failure_mail_gives_the_reason_and_error() {
        let event = notice(Event {
            event: FAILED.into(),
            outputs: Vec::new(),
            reason: Some("corrupt".into()),
            error: Some("corrupt jpeg: bad marker\r\nBcc: x@evil.example".into()),
            ..ready_event()
        });
        assert_eq!(subject(&event), "Thumbnail failed: trips/cat.jpg");
        let body = body(&event);
        assert!(body.contains("No thumbnails could be made of gs://photos/trips/cat.jpg"));
        assert!(body.contains("Reason: corrupt\n"), "{body}");
        assert!(
            body.contains("Error: corrupt jpeg: bad marker\u{fffd}\u{fffd}Bcc: x@evil.example\n"),
            "control characters are replaced: {body}"
        );
    }

    #[test]
    fn the_message_id_is_the_same_for_the_same_event_only() {
        let from = addresses().from;
        let id = message_id(&ready(), &from);
        assert_eq!(id, message_id(&ready(), &from));
        assert!(id.starts_with("<thumbd.ready.1700000000000000."), "{id}");
        assert!(id.ends_with("@example.com>"), "{id}");
        let other = notice(Event {
            name: "trips/dog.jpg".into(),
            ..ready_event()
        });
        assert_ne!(id, message_id(&other, &from));
        let failed = notice(Event {
            event: FAILED.into(),
            ..ready_event()
        });
        assert_ne!(id, message_id(&failed, &from));
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(&[b""]), 0xcbf29ce484222325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(&[b"foo", b"bar"]), fnv1a(&[b"foobar"]));
    }
}
