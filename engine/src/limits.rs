//! Resource limits, checked from the header before any large allocation.

/// Limits applied to every input. Defaults are safe for a container with ~512 MiB per
/// in-flight image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted width × height. Default 100 000 000 (100 MP, e.g. 12 000 × 8 333).
    pub max_pixels: u64,
    /// Largest accepted input, in bytes. Default 256 MiB.
    pub max_input_bytes: u64,
    /// Largest accepted requested thumbnail side, in pixels. Default 8192.
    pub max_output_dimension: u32,
    /// Most bytes one decode may hold at once (pixels and decoder buffers, as
    /// [`crate::stages::decode_bytes`] bounds them), checked before each decode path allocates:
    /// a path that needs more (such as the full-size decode a JPEG falls back to when the
    /// reduced decoder declines damage its header check cannot see) is refused with
    /// [`crate::Error::OverBudget`]. For callers that reserve memory per image. Default
    /// `u64::MAX`: no allowance.
    pub max_decode_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 100_000_000,
            max_input_bytes: 256 * 1024 * 1024,
            max_output_dimension: 8192,
            max_decode_bytes: u64::MAX,
        }
    }
}

impl Limits {
    /// Refuses an image whose header declares more than [`Limits::max_pixels`].
    pub(crate) fn check_dimensions(&self, width: u32, height: u32) -> Result<(), crate::Error> {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(crate::Error::TooManyPixels {
                width,
                height,
                pixels,
                limit: self.max_pixels,
            });
        }
        Ok(())
    }

    /// Refuses a decode path whose bytes (`needed`, computed only when there is an allowance)
    /// exceed [`Limits::max_decode_bytes`], before the path allocates.
    pub(crate) fn afford_decode(&self, needed: impl FnOnce() -> u64) -> Result<(), crate::Error> {
        if self.max_decode_bytes == u64::MAX {
            return Ok(());
        }
        let needed = needed();
        if needed > self.max_decode_bytes {
            return Err(crate::Error::OverBudget {
                needed,
                allowed: self.max_decode_bytes,
            });
        }
        Ok(())
    }
}
