//! "thumbnails ready" / "thumbnail failed" events, so other services (a mail sender, a CDN
//! purger) can react without touching the worker. Published to `--events-topic` in the
//! Pub/Sub mode, printed as JSON lines on stdout in the local mode. `thumbd notify` reads them
//! back with the same types.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use serde::{Deserialize, Serialize};

pub const READY: &str = "THUMBNAILS_READY";
pub const FAILED: &str = "THUMBNAIL_FAILED";

/// Which event: the `event` field of the body and the `eventType` attribute. Any other value
/// is refused when an event is read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "THUMBNAILS_READY")]
    Ready,
    #[serde(rename = "THUMBNAIL_FAILED")]
    Failed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Ready => READY,
            EventKind::Failed => FAILED,
        }
    }
}

/// One written thumbnail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputInfo {
    pub bucket: String,
    pub name: String,
    pub size: u32,
    pub width: u32,
    pub height: u32,
    /// Borrowed when the worker writes it, owned when read back.
    pub content_type: Cow<'static, str>,
    pub bytes: usize,
}

/// The JSON body of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event: EventKind,
    pub bucket: String,
    pub name: String,
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputInfo>,
    /// A failure's kind, the `reason` label of `thumbd_messages_total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'static, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// Attributes mirror Cloud Storage notifications so subscribers can filter on them.
    fn attributes(&self) -> HashMap<String, String> {
        let mut a = HashMap::from([
            ("eventType".to_string(), self.event.as_str().to_string()),
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
            event: EventKind::Ready,
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
            event: EventKind::Failed,
            outputs: Vec::new(),
            reason: Some("corrupt".into()),
            error: Some("corrupt jpeg".into()),
            ..ready.clone()
        };
        for event in [ready, failed] {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(
                serde_json::from_str::<Event>(&json).unwrap(),
                event,
                "{json}"
            );
            assert_eq!(event.attributes()["eventType"], event.event.as_str());
        }
    }

    #[test]
    fn an_unknown_event_kind_is_refused() {
        let body = r#"{"event":"OBJECT_FINALIZE","bucket":"b","name":"n","generation":1}"#;
        assert!(serde_json::from_str::<Event>(body).is_err());
    }
}
