//! Live updates: one Server-Sent Event per upload that became ready or failed.
//!
//! The source is the worker's events: the embedded worker's in local mode, a subscription to
//! the events topic in cloud mode. Each event is turned into the upload's state as storage
//! tells it ([`Catalog::state_of`]), so a client sees exactly what `GET /api/images/{id}` says.
//! The hub keeps the last [`KEPT`] events: a client reconnecting with `Last-Event-ID` gets what
//! it missed, or, when that is gone (or the id is from another process), a `reset` event telling
//! it to refetch the list.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use google_cloud_pubsub::client::Subscriber;
use tokio::sync::broadcast;

use super::images::{Catalog, Image, State};
use super::objects::ObjectInfo;
use crate::naming::parse_upload_object;
use crate::service::events::Event;
use crate::service::shutdown::Shutdown;

/// Events kept for reconnecting clients.
pub const KEPT: usize = 512;

#[derive(Debug)]
pub struct LiveEvent {
    /// `<epoch>-<sequence>`: the epoch tells ids of an earlier process apart.
    pub id: String,
    pub sequence: u64,
    /// `ready` or `failed`.
    pub kind: &'static str,
    pub data: String,
}

struct Ring {
    next: u64,
    events: VecDeque<Arc<LiveEvent>>,
}

/// Fans events out to every open stream.
pub struct Hub {
    epoch: String,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<LiveEvent>>,
}

/// What a (re)connecting client gets first.
pub struct Catchup {
    /// Events it missed, oldest first.
    pub missed: Vec<Arc<LiveEvent>>,
    /// Its Last-Event-ID is too old or unknown: refetch the list.
    pub reset: bool,
    pub live: broadcast::Receiver<Arc<LiveEvent>>,
}

impl Hub {
    pub fn new() -> Hub {
        let epoch = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        );
        Hub {
            epoch,
            ring: Mutex::new(Ring {
                next: 1,
                events: VecDeque::with_capacity(KEPT),
            }),
            tx: broadcast::channel(KEPT).0,
        }
    }

    /// Sends the image's state to every stream, if it is final.
    pub fn publish(&self, image: &Image) {
        let kind = match image.state {
            State::Ready => "ready",
            State::Failed => "failed",
            State::Pending => return,
        };
        let data = serde_json::to_string(image).expect("serialisable");
        let mut ring = self.ring.lock().expect("not poisoned");
        let sequence = ring.next;
        ring.next += 1;
        let event = Arc::new(LiveEvent {
            id: format!("{}-{sequence}", self.epoch),
            sequence,
            kind,
            data,
        });
        if ring.events.len() == KEPT {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // Sent under the lock, so a subscriber sees each event either in its catch-up or live.
        let _ = self.tx.send(event);
    }

    /// A new stream, resuming after `last_event_id` if given.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Catchup {
        let ring = self.ring.lock().expect("not poisoned");
        let live = self.tx.subscribe();
        let Some(last) = last_event_id else {
            return Catchup {
                missed: Vec::new(),
                reset: false,
                live,
            };
        };
        let resumed = last
            .split_once('-')
            .filter(|(epoch, _)| *epoch == self.epoch)
            .and_then(|(_, seq)| seq.parse::<u64>().ok())
            .filter(|&seq| seq < ring.next);
        match resumed {
            // Everything after `seq` is still held (the oldest held is at most seq + 1).
            Some(seq) if ring.events.front().is_none_or(|e| e.sequence <= seq + 1) => Catchup {
                missed: ring
                    .events
                    .iter()
                    .filter(|e| e.sequence > seq)
                    .cloned()
                    .collect(),
                reset: false,
                live,
            },
            _ => Catchup {
                missed: Vec::new(),
                reset: true,
                live,
            },
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

/// Turns a worker event into the upload's state and publishes it; events of other objects
/// (not uploads of this service) are ignored. Returns false when storage could not be read.
pub async fn relay(
    catalog: &Catalog,
    hub: &Hub,
    upload_bucket: Option<&str>,
    event: &Event,
) -> bool {
    if upload_bucket.is_some_and(|b| b != event.bucket) {
        return true;
    }
    if parse_upload_object(&catalog.upload_prefix, &event.name).is_none() {
        return true;
    }
    let object = ObjectInfo {
        name: event.name.clone(),
        generation: event.generation.unwrap_or(0),
        ..ObjectInfo::default()
    };
    match catalog.state_of(&object).await {
        Ok(Some(image)) => {
            hub.publish(&image);
            true
        }
        Ok(None) => true,
        Err(e) => {
            tracing::warn!(object = %event.name, error = %e, "state of an event's upload unreadable");
            false
        }
    }
}

/// Local mode: the embedded worker's events.
pub async fn relay_local(
    catalog: Arc<Catalog>,
    hub: Arc<Hub>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
) {
    while let Some(event) = events.recv().await {
        relay(&catalog, &hub, None, &event).await;
    }
}

/// Cloud mode: the events subscription. An event is acked once relayed (or when it is not
/// one of ours, or is malformed: it would never become relayable); nacked when storage could
/// not be read, so it comes back. A failed stream is opened again after a pause: uploads never
/// depend on it, and pages fall back to asking for their pending images.
pub async fn relay_subscription(
    client: Subscriber,
    subscription: String,
    upload_bucket: String,
    catalog: Arc<Catalog>,
    hub: Arc<Hub>,
    shutdown: Shutdown,
) {
    let mut pause = std::time::Duration::from_secs(1);
    loop {
        let mut stream = client.subscribe(&subscription).build();
        tracing::info!(%subscription, "relaying events");
        let failure = loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                next = stream.next() => next,
            };
            let (message, handler) = match next {
                Some(Ok(pair)) => pair,
                Some(Err(e)) => break e.to_string(),
                None => break "the stream ended".to_string(),
            };
            pause = std::time::Duration::from_secs(1);
            let event: Event = match serde_json::from_slice(&message.data) {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(message_id = %message.message_id, error = %e, "not a thumbd event, acked");
                    handler.ack();
                    continue;
                }
            };
            if relay(&catalog, &hub, Some(&upload_bucket), &event).await {
                handler.ack();
            } else {
                handler.nack();
            }
        };
        tracing::error!(%subscription, error = %failure, retry_in = ?pause, "the events subscription failed; live updates pause");
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(n: u32) -> Image {
        let mut image = Image::pending(crate::naming::UploadId::new(u64::from(n), n), "a.jpg", "o");
        image.state = State::Ready;
        image
    }

    #[test]
    fn reconnecting_clients_get_what_they_missed_or_a_reset() {
        let hub = Hub::new();
        hub.publish(&image(1));
        hub.publish(&image(2));
        let first = hub.subscribe(None);
        assert!(first.missed.is_empty() && !first.reset);
        let all = hub.subscribe(Some(&format!("{}-0", hub.epoch)));
        assert_eq!(all.missed.len(), 2);
        let after_first = hub.subscribe(Some(&format!("{}-1", hub.epoch)));
        assert_eq!(after_first.missed.len(), 1);
        assert_eq!(after_first.missed[0].sequence, 2);
        assert!(hub.subscribe(Some("other-1")).reset, "another process's id");
        assert!(
            hub.subscribe(Some(&format!("{}-99", hub.epoch))).reset,
            "a future id"
        );
        let mut pending = image(3);
        pending.state = State::Pending;
        hub.publish(&pending);
        for n in 0..KEPT as u32 + 5 {
            hub.publish(&image(n));
        }
        assert!(
            hub.subscribe(Some(&format!("{}-1", hub.epoch))).reset,
            "fell out of the ring"
        );
    }
}
