//! Admission control: how much work may be in the process at once.
//!
//! Three limits, all independent of Pub/Sub flow control (which the emulator ignores and which
//! counts messages, not pixels):
//! - **slots**: messages being fetched or processed (threads + queue);
//! - **input bytes**: compressed originals from before their fetch until the engine is done
//!   with them (the notification's size, else the fetched size), so originals fetched ahead
//!   and waiting for a thread are bounded in bytes, not only in count;
//! - **engine bytes**: the sum of each admitted image's engine estimate from its header
//!   ([`super::estimate`]), so a burst of 50 MP originals waits instead of exceeding the
//!   memory limit.
//!
//! The two byte pools are separate so that holding an input reservation while waiting for an
//! engine reservation cannot deadlock: engine reservations are only held by images on their
//! way through the engine, which always finish. Both pools together are the memory budget
//! minus the process floor ([`super::config::Budget`]).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::metrics::Metrics;

/// Permits are counted in KiB so a budget of terabytes still fits the semaphore's `u32`.
const UNIT: u64 = 1024;

#[derive(Debug, Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    input: Pool,
    engine: Pool,
    metrics: Metrics,
}

/// One byte budget, in [`UNIT`]s.
#[derive(Debug, Clone)]
struct Pool {
    sem: Arc<Semaphore>,
    units: u32,
}

impl Pool {
    fn new(bytes: u64) -> Self {
        let units = (bytes / UNIT).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        Pool {
            sem: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// Waits until `bytes` fit. More than the whole pool (legal: it passed the limits) waits
    /// for the pool to drain and then takes all of it, so it runs alone rather than never.
    async fn reserve(&self, bytes: u64, metrics: &Metrics) -> Reservation {
        let units = bytes.div_ceil(UNIT).clamp(1, u64::from(self.units)) as u32;
        let permit = self
            .sem
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the semaphore is never closed");
        let bytes = u64::from(units) * UNIT;
        metrics.in_flight_bytes.inc_by(bytes as i64);
        Reservation {
            _permit: permit,
            bytes,
            metrics: metrics.clone(),
        }
    }

    fn available(&self) -> u64 {
        self.sem.available_permits() as u64 * UNIT
    }
}

/// Held while one message occupies a slot.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Metrics,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.in_flight_images.dec();
    }
}

/// Held while an image's bytes are admitted.
#[derive(Debug)]
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    metrics: Metrics,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.metrics.in_flight_bytes.dec_by(self.bytes as i64);
    }
}

impl Reservation {
    /// Bytes reserved (rounded up to whole KiB, capped at the pool).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Admission {
    pub fn new(
        max_in_flight: usize,
        input_bytes: u64,
        engine_bytes: u64,
        metrics: Metrics,
    ) -> Self {
        metrics
            .admission_budget_bytes
            .set((input_bytes + engine_bytes) as i64);
        Admission {
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
            input: Pool::new(input_bytes),
            engine: Pool::new(engine_bytes),
            metrics,
        }
    }

    /// Waits for a free slot.
    pub async fn slot(&self) -> Slot {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.metrics.in_flight_images.inc();
        Slot {
            _permit: permit,
            metrics: self.metrics.clone(),
        }
    }

    /// Waits until a compressed original of `bytes` fits the input pool.
    pub async fn reserve_input(&self, bytes: u64) -> Reservation {
        self.input.reserve(bytes, &self.metrics).await
    }

    /// Waits until an engine estimate of `bytes` fits the engine pool.
    pub async fn reserve_engine(&self, bytes: u64) -> Reservation {
        self.engine.reserve(bytes, &self.metrics).await
    }

    /// The whole input pool: no original larger than this can be admitted, so it caps the
    /// input size together with `--max-input-bytes`.
    pub fn input_capacity(&self) -> u64 {
        u64::from(self.input.units) * UNIT
    }

    /// The whole engine pool: the most one image's engine reservation can be.
    pub fn engine_pool_bytes(&self) -> u64 {
        u64::from(self.engine.units) * UNIT
    }

    /// Input-pool bytes not currently reserved (for tests and logs).
    pub fn available_input(&self) -> u64 {
        self.input.available()
    }

    /// Engine-pool bytes not currently reserved (for tests and logs).
    pub fn available_engine(&self) -> u64 {
        self.engine.available()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reservations_wait_for_the_budget() {
        let admission = Admission::new(4, 1 << 20, 10 * 1024 * 1024, Metrics::new());
        let a = admission.reserve_engine(6 * 1024 * 1024).await;
        // 6 MiB more does not fit next to the first 6 MiB...
        let waiting = tokio::time::timeout(
            Duration::from_millis(50),
            admission.reserve_engine(6 * 1024 * 1024),
        )
        .await;
        assert!(waiting.is_err(), "admitted over the budget");
        drop(a);
        // ...until the first is released.
        let _b = admission.reserve_engine(6 * 1024 * 1024).await;
        assert_eq!(admission.available_engine(), 4 * 1024 * 1024);
        // The input pool is separate: a full engine pool does not block fetching ahead.
        let _i = admission.reserve_input(1 << 20).await;
        assert_eq!(admission.available_input(), 0);
    }

    #[tokio::test]
    async fn oversized_images_take_the_whole_budget() {
        let admission = Admission::new(4, 1024 * 1024, 1024 * 1024, Metrics::new());
        let r = admission.reserve_engine(u64::MAX / 2).await;
        assert_eq!(admission.available_engine(), 0);
        assert_eq!(r.bytes(), 1024 * 1024);
        assert_eq!(admission.engine_pool_bytes(), 1024 * 1024);
        drop(r);
        assert_eq!(admission.available_engine(), 1024 * 1024);
    }
}
