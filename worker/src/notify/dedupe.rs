//! Pub/Sub delivers at least once: the same event can arrive twice (a redelivery after a lost
//! ack, or the worker publishing it twice after its own redelivery). The events already
//! mailed are remembered here, the oldest forgotten first once the set is full.
//!
//! A key being mailed by one task is "in flight": a second copy waits for that send's outcome
//! instead of mailing it again at the same time, then is skipped (sent) or mails it itself
//! (the first send failed).
//!
//! The set is in memory only: after a restart, an event mailed just before it whose ack was
//! lost is mailed again (see the README, "thumbd notify").

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

use super::mail::Notice;
use crate::service::events::EventKind;

/// What identifies one event: the same image's same outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub event: EventKind,
    pub bucket: String,
    pub name: String,
    pub generation: Option<i64>,
}

impl Key {
    pub fn of(notice: &Notice) -> Key {
        Key {
            event: notice.kind,
            bucket: notice.event.bucket.clone(),
            name: notice.event.name.clone(),
            generation: notice.event.generation,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Sent,
}

#[derive(Debug, Default)]
struct Inner {
    states: HashMap<Key, State>,
    /// Sent keys, oldest first (in-flight keys are not counted against the capacity).
    sent: VecDeque<Key>,
}

/// The bounded set of events mailed recently.
#[derive(Debug)]
pub struct Dedupe {
    capacity: usize,
    inner: Mutex<Inner>,
    /// Woken whenever an in-flight key is settled.
    settled: Notify,
}

/// The caller's turn for a key.
#[derive(Debug)]
pub enum Claim<'a> {
    /// Nobody mailed it (that is remembered): mail it, then call [`Claimed::sent`]; dropping
    /// the claim instead (the send failed, or the task was cancelled) releases the key, so the
    /// message's redelivery or a waiting copy mails it.
    Mail(Claimed<'a>),
    /// Already mailed: ack the message without a mail.
    Duplicate,
}

/// A key being mailed by the holder.
#[derive(Debug)]
pub struct Claimed<'a> {
    dedupe: &'a Dedupe,
    key: Key,
    sent: bool,
}

impl Claimed<'_> {
    /// The mail server accepted the mail: copies of this event are duplicates from now on.
    pub fn sent(mut self) {
        self.sent = true;
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        self.dedupe.settle(&self.key, self.sent);
    }
}

impl Dedupe {
    pub fn new(capacity: usize) -> Dedupe {
        Dedupe {
            capacity: capacity.max(1),
            inner: Mutex::default(),
            settled: Notify::new(),
        }
    }

    /// Claims `key`, waiting while another task is mailing it.
    pub async fn claim(&self, key: Key) -> Claim<'_> {
        loop {
            // Registered before the check, so a settle between the check and the wait is seen.
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            {
                let mut inner = self.inner.lock().expect("dedupe lock");
                match inner.states.get(&key) {
                    Some(State::Sent) => return Claim::Duplicate,
                    Some(State::InFlight) => {}
                    None => {
                        inner.states.insert(key.clone(), State::InFlight);
                        return Claim::Mail(Claimed {
                            dedupe: self,
                            key,
                            sent: false,
                        });
                    }
                }
            }
            settled.await;
        }
    }

    /// Remembers an in-flight key as sent (forgetting the oldest beyond the capacity), or
    /// releases it.
    fn settle(&self, key: &Key, sent: bool) {
        {
            let mut inner = self.inner.lock().expect("dedupe lock");
            if sent {
                inner.states.insert(key.clone(), State::Sent);
                inner.sent.push_back(key.clone());
                while inner.sent.len() > self.capacity {
                    if let Some(oldest) = inner.sent.pop_front() {
                        inner.states.remove(&oldest);
                    }
                }
            } else {
                inner.states.remove(key);
            }
        }
        self.settled.notify_waiters();
    }

    /// Keys remembered as sent.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("dedupe lock").sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn key(name: &str, generation: i64) -> Key {
        Key {
            event: EventKind::Ready,
            bucket: "b".into(),
            name: name.into(),
            generation: Some(generation),
        }
    }

    /// Claims `key` and settles the claim at once: `Some(sent)` mails, `None` a duplicate.
    async fn mail(d: &Dedupe, key: Key, sent: bool) -> Option<bool> {
        match d.claim(key).await {
            Claim::Mail(claimed) => {
                if sent {
                    claimed.sent();
                }
                Some(sent)
            }
            Claim::Duplicate => None,
        }
    }

    #[tokio::test]
    async fn a_sent_key_is_a_duplicate_and_a_failed_one_is_not() {
        let d = Dedupe::new(10);
        assert_eq!(mail(&d, key("a", 1), true).await, Some(true));
        assert_eq!(mail(&d, key("a", 1), true).await, None);
        assert_eq!(mail(&d, key("b", 1), false).await, Some(false));
        assert_eq!(
            mail(&d, key("b", 1), true).await,
            Some(true),
            "a failed send is retried"
        );
        // Another generation or outcome of the same object is another event.
        assert_eq!(mail(&d, key("a", 2), true).await, Some(true));
        let failed = Key {
            event: EventKind::Failed,
            ..key("a", 1)
        };
        assert_eq!(mail(&d, failed, true).await, Some(true));
    }

    #[tokio::test]
    async fn the_oldest_keys_are_forgotten_first() {
        let d = Dedupe::new(2);
        for name in ["a", "b", "c"] {
            assert_eq!(mail(&d, key(name, 1), true).await, Some(true));
        }
        assert_eq!(d.len(), 2);
        assert_eq!(mail(&d, key("c", 1), true).await, None);
        assert_eq!(mail(&d, key("b", 1), true).await, None);
        assert_eq!(mail(&d, key("a", 1), true).await, Some(true), "forgotten");
    }

    #[tokio::test]
    async fn a_copy_waits_for_the_first_send() {
        let d = Arc::new(Dedupe::new(10));
        let k = key("a", 1);
        let copy = |sent| {
            let (d, k) = (d.clone(), k.clone());
            tokio::spawn(async move { mail(&d, k, sent).await })
        };

        let first = d.claim(k.clone()).await;
        let waiting = copy(false);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the copy waits while the first is in flight"
        );
        drop(first);
        assert_eq!(
            waiting.await.unwrap(),
            Some(false),
            "the first failed (or was cancelled): the copy mails"
        );

        let first = d.claim(k.clone()).await;
        let waiting = copy(true);
        tokio::time::sleep(Duration::from_millis(50)).await;
        match first {
            Claim::Mail(claimed) => claimed.sent(),
            Claim::Duplicate => panic!("released by the failed copy"),
        }
        assert_eq!(waiting.await.unwrap(), None, "the first was sent");
    }
}
