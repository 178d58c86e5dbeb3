//! Where jobs come from: a Pub/Sub subscription or a local folder.

pub mod pubsub;
pub mod watch;
