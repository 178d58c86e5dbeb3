//! Typed errors: every way an image can fail, each with a stable machine-readable kind.

/// Why an image could not be turned into thumbnails.
///
/// Each variant maps to a stable [`ErrorKind`] string (used in `--json` output and by the
/// worker to decide a message's fate). None of these is retryable, the same bytes giving the
/// same error, except [`Error::OverBudget`]: it depends on the caller's decode allowance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is larger than [`crate::Limits::max_input_bytes`].
    #[error("input is {size} bytes, over the limit of {limit} bytes")]
    InputTooLarge {
        /// Input length in bytes.
        size: u64,
        /// The limit that was exceeded.
        limit: u64,
    },
    /// The header declares more pixels (or a larger side) than the limits allow.
    #[error("image is {width}x{height} ({pixels} pixels), over the limit of {limit} pixels")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// width × height.
        pixels: u64,
        /// The limit that was exceeded.
        limit: u64,
    },
    /// The decode would hold more bytes than [`crate::Limits::max_decode_bytes`] allows; refused
    /// before the large allocation. The same call with an allowance of at least `needed` goes on.
    #[error("decoding needs {needed} bytes, over the allowance of {allowed} bytes")]
    OverBudget {
        /// Bytes the decode path needs at its peak.
        needed: u64,
        /// The allowance it exceeds.
        allowed: u64,
    },
    /// Not a format the engine decodes (sniffed from the magic bytes).
    #[error("unsupported input: {0}")]
    Unsupported(String),
    /// The data ends before the image is complete.
    #[error("truncated {format}: {detail}")]
    Truncated {
        /// The format's name ([`crate::InputFormat::name`]).
        format: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// The data is damaged or violates the format.
    #[error("corrupt {format}: {detail}")]
    Corrupt {
        /// The format's name ([`crate::InputFormat::name`]).
        format: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// The request itself is invalid (no sizes, zero size, size over the output limit...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// An encoder refused the thumbnail (should not happen for valid requests).
    #[error("encoding {format} failed: {detail}")]
    Encode {
        /// Output format name.
        format: &'static str,
        /// What the encoder said.
        detail: String,
    },
    /// A bug: a panic caught while processing this image.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Stable, machine-readable category of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::InputTooLarge`].
    InputTooLarge,
    /// See [`Error::TooManyPixels`].
    TooManyPixels,
    /// See [`Error::OverBudget`].
    OverBudget,
    /// See [`Error::Unsupported`].
    Unsupported,
    /// See [`Error::Truncated`].
    Truncated,
    /// See [`Error::Corrupt`].
    Corrupt,
    /// See [`Error::InvalidRequest`].
    InvalidRequest,
    /// See [`Error::Encode`].
    Encode,
    /// See [`Error::Internal`].
    Internal,
}

impl ErrorKind {
    /// The snake_case name used in JSON output and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InputTooLarge => "input_too_large",
            ErrorKind::TooManyPixels => "too_many_pixels",
            ErrorKind::OverBudget => "over_budget",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Truncated => "truncated",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Encode => "encode",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The stable category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InputTooLarge { .. } => ErrorKind::InputTooLarge,
            Error::TooManyPixels { .. } => ErrorKind::TooManyPixels,
            Error::OverBudget { .. } => ErrorKind::OverBudget,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Truncated { .. } => ErrorKind::Truncated,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::InvalidRequest(_) => ErrorKind::InvalidRequest,
            Error::Encode { .. } => ErrorKind::Encode,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}
