//! thumbd: the batch CLI and (in its own module) the Pub/Sub worker, around `thumbd-engine`.
//!
//! # Layout
//! - [`cli`] — flags and their defaults;
//! - [`resources`] — CPUs and memory the container really has;
//! - [`naming`] — where thumbnails live (`<prefix><object>/<size>.<ext>`), shared by all;
//! - [`batch`] — `thumbd thumbnail`: files → engine on a rayon pool → files;
//! - [`service`] — `thumbd worker`: Pub/Sub (or a local folder) → engine → Cloud Storage;
//! - [`app`] — `thumbd serve`: uploads → storage, the worker's events → the gallery page;
//! - [`notify`] — `thumbd notify`: the worker's events → one mail each.

pub mod alloc;
pub mod app;
pub mod batch;
pub mod cli;
pub mod naming;
pub mod notify;
pub mod resources;
pub mod service;
