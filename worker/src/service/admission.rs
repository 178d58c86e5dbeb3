//! Admission control: how much work may be in the process at once.
//!
//! Two limits, both independent of Pub/Sub flow control (which the emulator ignores and which
//! counts messages, not pixels):
//! - **slots**: messages being fetched or processed (threads + queue), so compressed
//!   originals waiting for the engine are bounded too;
//! - **decode bytes**: the sum of each admitted image's decode estimate from its header
//!   ([`thumbd_engine::ImageInfo::decode_budget_bytes`]) plus its compressed size, so a burst
//!   of 50 MP originals waits instead of exceeding the memory limit.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::metrics::Metrics;

/// Permits are counted in KiB so a budget of terabytes still fits the semaphore's `u32`.
const UNIT: u64 = 1024;

#[derive(Debug, Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    budget_units: u32,
    metrics: Metrics,
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

/// Held while one image's decode is admitted.
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

impl Admission {
    pub fn new(max_in_flight: usize, budget_bytes: u64, metrics: Metrics) -> Self {
        let budget_units = (budget_bytes / UNIT).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        metrics.admission_budget_bytes.set(budget_bytes as i64);
        Admission {
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
            bytes: Arc::new(Semaphore::new(budget_units as usize)),
            budget_units,
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

    /// Waits until `bytes` fit the budget. An image larger than the whole budget (it passed
    /// the pixel limit, so it is legal) waits for the budget to drain and then runs alone.
    pub async fn reserve(&self, bytes: u64) -> Reservation {
        let units = bytes.div_ceil(UNIT).clamp(1, u64::from(self.budget_units)) as u32;
        let permit = self
            .bytes
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the semaphore is never closed");
        let bytes = u64::from(units) * UNIT;
        self.metrics.in_flight_bytes.inc_by(bytes as i64);
        Reservation {
            _permit: permit,
            bytes,
            metrics: self.metrics.clone(),
        }
    }

    /// Budget units not currently reserved (for tests and logs).
    pub fn available_bytes(&self) -> u64 {
        self.bytes.available_permits() as u64 * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reservations_wait_for_the_budget() {
        let admission = Admission::new(4, 10 * 1024 * 1024, Metrics::new());
        let a = admission.reserve(6 * 1024 * 1024).await;
        // 6 MiB more does not fit next to the first 6 MiB...
        let waiting = tokio::time::timeout(
            Duration::from_millis(50),
            admission.reserve(6 * 1024 * 1024),
        )
        .await;
        assert!(waiting.is_err(), "admitted over the budget");
        drop(a);
        // ...until the first is released.
        let _b = admission.reserve(6 * 1024 * 1024).await;
        // An image larger than the whole budget runs alone rather than never.
        assert_eq!(admission.available_bytes(), 4 * 1024 * 1024);
    }

    #[tokio::test]
    async fn oversized_images_take_the_whole_budget() {
        let admission = Admission::new(4, 1024 * 1024, Metrics::new());
        let r = admission.reserve(u64::MAX / 2).await;
        assert_eq!(admission.available_bytes(), 0);
        drop(r);
        assert_eq!(admission.available_bytes(), 1024 * 1024);
    }
}
