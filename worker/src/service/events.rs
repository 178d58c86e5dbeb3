//! "thumbnails ready" / "thumbnail failed" events, so other services (a mail sender, a CDN
//! purger) can react without touching the worker. Published to `--events-topic` in the
//! Pub/Sub mode, printed as JSON lines on stdout in the local mode.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use serde::{Deserialize, Serialize};

pub const READY: &str = "THUMBNAILS_READY";
pub const FAILED: &str = "THUMBNAIL_FAILED";

/// The two kinds of event, for a subscriber that tells them apart (`thumbd notify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Ready,
    Failed,
}

impl EventKind {
    /// `None` for any other `event` value: not one of thumbd's events.
    pub fn of(event: &Event) -> Option<EventKind> {
        match event.event.as_ref() {
            READY => Some(EventKind::Ready),
            FAILED => Some(EventKind::Failed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Ready => READY,
            EventKind::Failed => FAILED,
        }
    }
}

/// Text that is a constant when the worker writes it and owned when a subscriber reads it.
pub type Text = Cow<'static, str>;

/// One written thumbnail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputInfo {
    pub bucket: String,
    pub name: String,
    pub size: u32,
    pub width: u32,
    pub height: u32,
    pub content_type: Text,
    pub bytes: usize,
}

/// The JSON body of an event (read back by `thumbd serve` and `thumbd notify`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event: Text,
    pub bucket: String,
    pub name: String,
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// Attributes mirror Cloud Storage notifications so subscribers can filter on them.
    fn attributes(&self) -> HashMap<String, String> {
        let mut a = HashMap::from([
            ("eventType".to_string(), self.event.to_string()),
            ("bucketId".to_string(), self.bucket.clone()),
            ("objectId".to_string(), self.name.clone()),
        ]);
        if let Some(g) = self.generation {
            a.insert("objectGeneration".into(), g.to_string());
        }
        if let Some(r) = &self.reason {
            a.insert("reason".into(), r.to_string());
        }
        a
    }
}

#[derive(Debug, Clone)]
pub enum Events {
    Disabled,
    PubSub(Publisher),
    Stdout,
    /// In-process: `thumbd serve --local` turns them into its live updates.
    Channel(tokio::sync::mpsc::UnboundedSender<Event>),
}

impl Events {
    /// Publishes (and waits for the server's confirmation: the message is only acked after).
    pub async fn publish(&self, event: &Event) -> Result<(), String> {
        match self {
            Events::Disabled => Ok(()),
            Events::Stdout => {
                let line = serde_json::to_string(event).map_err(|e| e.to_string())?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")
                    .and_then(|_| out.flush())
                    .map_err(|e| e.to_string())
            }
            Events::Channel(tx) => tx
                .send(event.clone())
                .map_err(|_| "the in-process event receiver is gone".to_string()),
            Events::PubSub(publisher) => {
                let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
                let msg = Message::new()
                    .set_data(body)
                    .set_attributes(event.attributes());
                publisher
                    .publish(msg)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_written() {
        let ready = Event {
            event: READY.into(),
            bucket: "photos".into(),
            name: "cat.jpg".into(),
            generation: Some(17),
            outputs: vec![OutputInfo {
                bucket: "thumbs".into(),
                name: "thumbs/cat.jpg/256.jpg".into(),
                size: 256,
                width: 256,
                height: 171,
                content_type: "image/jpeg".into(),
                bytes: 10243,
            }],
            reason: None,
            error: None,
        };
        let failed = Event {
            event: FAILED.into(),
            outputs: Vec::new(),
            reason: Some("corrupt".into()),
            error: Some("corrupt jpeg".into()),
            ..ready.clone()
        };
        for (event, kind) in [(ready, EventKind::Ready), (failed, EventKind::Failed)] {
            let json = serde_json::to_string(&event).unwrap();
            let read: Event = serde_json::from_str(&json).unwrap();
            assert_eq!(read, event, "{json}");
            assert_eq!(EventKind::of(&read), Some(kind));
            assert_eq!(event.attributes()["eventType"], kind.as_str());
        }
    }

    #[test]
    fn other_event_kinds_are_not_thumbds() {
        let body = r#"{"event":"OBJECT_FINALIZE","bucket":"b","name":"n","generation":1}"#;
        let event: Event = serde_json::from_str(body).unwrap();
        assert_eq!(EventKind::of(&event), None);
    }
}
