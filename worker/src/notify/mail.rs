//! One plain-text mail per event: what was made (each thumbnail's `gs://` URL, size and
//! bytes), or why nothing was.

use std::fmt::Write;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::Message;

use crate::service::events::{Event, EventKind};

/// Who a mail is from and to (validated at start).
#[derive(Debug, Clone)]
pub struct Addresses {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

pub fn subject(event: &Event) -> String {
    let name = printable(&event.name);
    match event.event {
        EventKind::Ready => format!("Thumbnails ready: {name}"),
        EventKind::Failed => format!("Thumbnail failed: {name}"),
    }
}

pub fn body(event: &Event) -> String {
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
    match event.event {
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
        event.event.as_str()
    );
    out
}

/// The whole mail. Its Message-ID is derived from the event, so a duplicate mail (sent again
/// after a restart) carries the same ID, which lets mail clients and archives fold the two.
pub fn message(event: &Event, addresses: &Addresses) -> Result<Message, lettre::error::Error> {
    let mut builder = Message::builder()
        .from(addresses.from.clone())
        .subject(subject(event))
        .message_id(Some(message_id(event, &addresses.from)))
        .header(ContentType::TEXT_PLAIN);
    for to in &addresses.to {
        builder = builder.to(to.clone());
    }
    builder.body(body(event))
}

fn message_id(event: &Event, from: &Mailbox) -> String {
    let kind = match event.event {
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
    use crate::service::events::OutputInfo;

    fn ready() -> Event {
        Event {
            event: EventKind::Ready,
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
    fn a_failure_mail_gives_the_reason_and_error() {
        let event = Event {
            event: EventKind::Failed,
            outputs: Vec::new(),
            reason: Some("corrupt".into()),
            error: Some("corrupt jpeg: bad marker\r\nBcc: x@evil.example".into()),
            ..ready()
        };
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
        let other = Event {
            name: "trips/dog.jpg".into(),
            ..ready()
        };
        assert_ne!(id, message_id(&other, &from));
        let failed = Event {
            event: EventKind::Failed,
            ..ready()
        };
        assert_ne!(id, message_id(&failed, &from));
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(&[b""]), 0xcbf29ce484222325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(&[b"foo", b"bar"]), fnv1a(&[b"foobar"]));
    }
}
