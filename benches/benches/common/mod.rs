//! Set-up shared by the bench files (each bench file is its own crate, hence a module).
// Each bench file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

use criterion::Criterion;
use thumbd_benches::Corpus;

/// Files per class and kind: enough to stand for the class, few enough that `cargo bench`
/// finishes in minutes on 2 cores.
pub const PER_CLASS: usize = 3;

/// Loads the corpus and says which set is used; on a missing corpus prints how to get one and
/// returns `None`, so `cargo bench` ends cleanly instead of panicking.
pub fn corpus(bench: &str) -> Option<Corpus> {
    match Corpus::discover() {
        Ok(corpus) => {
            corpus.announce(bench);
            Some(corpus)
        }
        Err(e) => {
            eprintln!("{bench}: {e}");
            None
        }
    }
}

/// Short measurements: these benches compare runs on one machine (`--save-baseline`,
/// `--baseline`); the deterministic regression guard is `benches/guard`.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}
