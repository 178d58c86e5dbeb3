//! Reading an upload: the body streamed under a byte limit and a read timeout, the header
//! checked with the engine's probe as soon as it has arrived, so a non-image or a pixel bomb is
//! refused before the rest is read, and nothing unchecked is ever stored.

use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::Field;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use thumbd_engine::{ErrorKind, InputFormat, Limits};

use super::api::ApiError;

/// Bytes after which the header is checked (the worker reads the same head).
pub const HEAD_BYTES: usize = 64 << 10;

/// A checked upload, ready to store.
#[derive(Debug)]
pub struct Checked {
    /// The body as it arrived, chunk by chunk: stored without being copied into one buffer.
    pub data: Vec<Bytes>,
    /// Its length in bytes.
    pub len: u64,
    pub content_type: &'static str,
    /// The client's file name, if it gave one.
    pub file_name: Option<String>,
}

/// How an upload is read.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Bytes left for the whole request.
    pub limit: u64,
    pub timeout: Duration,
    pub limits: Limits,
}

/// Reads a raw body.
pub async fn raw(body: Body, reading: &mut Reading) -> Result<Checked, ApiError> {
    let stream = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(|e| e.to_string()));
    read_checked(stream, reading).await
}

/// Reads one multipart field.
pub async fn field(field: Field<'_>, reading: &mut Reading) -> Result<Checked, ApiError> {
    let file_name = field.file_name().map(str::to_string);
    let stream = futures::stream::unfold(field, |mut field| async move {
        match field.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), field)),
            Ok(None) => None,
            Err(e) => Some((Err(e.to_string()), field)),
        }
    });
    let mut checked = read_checked(stream, reading).await?;
    checked.file_name = file_name;
    Ok(checked)
}

async fn read_checked<S>(stream: S, reading: &mut Reading) -> Result<Checked, ApiError>
where
    S: Stream<Item = Result<Bytes, String>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut chunks = Vec::new();
    let mut len = 0u64;
    // The first bytes, copied until the header is read (usually the first 64 KiB).
    let mut head = BytesMut::new();
    let mut format = None;
    loop {
        let next = tokio::time::timeout(reading.timeout, stream.next())
            .await
            .map_err(|_| {
                ApiError::timeout(format!(
                    "no bytes for {} s: the upload was abandoned",
                    reading.timeout.as_secs()
                ))
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| {
            if e.contains("length limit") {
                ApiError::too_large(reading.limit)
            } else {
                ApiError::bad_request(format!("the body could not be read: {e}"))
            }
        })?;
        len += chunk.len() as u64;
        if len > reading.limit {
            return Err(ApiError::too_large(reading.limit));
        }
        if format.is_none() {
            head.extend_from_slice(&chunk);
            if head.len() >= HEAD_BYTES {
                format = check_header(&head, &reading.limits, false)?;
            }
        }
        chunks.push(chunk);
    }
    let format = match format {
        Some(format) => format,
        // Not read yet: `head` holds the whole body.
        None => check_header(&head, &reading.limits, true)?.expect("checked at the end"),
    };
    reading.limit -= len;
    Ok(Checked {
        data: chunks,
        len,
        content_type: format.mime_type(),
        file_name: None,
    })
}

/// What this build reads, for the message that refuses anything else.
const READABLE: &str = if cfg!(feature = "heif") {
    "a JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC or AVIF file"
} else {
    "a JPEG, PNG, WebP, GIF, TIFF or BMP file"
};

/// The sniffed format, or the reason to refuse. Before the end of the body a header that
/// needs more bytes is not an error yet (`Ok(None)`).
fn check_header(
    data: &[u8],
    limits: &Limits,
    at_end: bool,
) -> Result<Option<InputFormat>, ApiError> {
    if data.is_empty() {
        return Err(ApiError::no_file("the body is empty"));
    }
    let limits = Limits {
        max_input_bytes: u64::MAX,
        ..*limits
    };
    match thumbd_engine::probe(data, &limits).and_then(|i| i.check_decodable().map(|_| i)) {
        Ok(info) => Ok(Some(info.format)),
        Err(e) if e.kind() == ErrorKind::Truncated && !at_end => Ok(None),
        Err(e) => Err(match e.kind() {
            ErrorKind::Unsupported if data.len() >= 3 && (data[..3] == [0xff, 0xd8, 0xff]) => {
                ApiError::unsupported(format!("this JPEG cannot be read: {e}"))
            }
            ErrorKind::Unsupported => ApiError::unsupported(format!("{e}; upload {READABLE}")),
            ErrorKind::TooManyPixels => ApiError::image_too_large(e.to_string()),
            _ => ApiError::corrupt(format!("the image header is unreadable: {e}")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(limit: u64) -> Reading {
        Reading {
            limit,
            timeout: Duration::from_secs(5),
            limits: Limits::default(),
        }
    }

    fn chunks(parts: Vec<Vec<u8>>) -> impl Stream<Item = Result<Bytes, String>> {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p))))
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        v.extend_from_slice(&width.to_be_bytes());
        v.extend_from_slice(&height.to_be_bytes());
        v.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        v
    }

    #[tokio::test]
    async fn refuses_by_kind_before_storing() {
        let text = chunks(vec![b"hello, not an image".to_vec()]);
        let err = read_checked(text, &mut reading(1 << 20)).await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.kind), (415, "unsupported_type"));

        let bomb = chunks(vec![png(100_000, 100_000)]);
        let err = read_checked(bomb, &mut reading(1 << 20)).await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.kind), (422, "image_too_large"));

        let big = chunks(vec![vec![0u8; 40_000], vec![0u8; 40_000]]);
        let err = read_checked(big, &mut reading(50_000)).await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.kind), (413, "too_large"));

        let empty = chunks(vec![]);
        let err = read_checked(empty, &mut reading(10)).await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.kind), (400, "no_file"));
    }

    #[tokio::test]
    async fn a_non_image_is_refused_once_its_head_is_in() {
        // 64 KiB of text, then a body that never ends: refused without waiting for it.
        let head = futures::stream::iter(vec![Ok(Bytes::from(vec![b'a'; HEAD_BYTES]))]);
        let endless = head.chain(futures::stream::pending());
        let err = read_checked(endless, &mut reading(1 << 30))
            .await
            .unwrap_err();
        assert_eq!(err.kind, "unsupported_type");
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let stalled = futures::stream::iter(vec![Ok(Bytes::from_static(b"\xff\xd8"))])
            .chain(futures::stream::pending());
        let mut r = reading(1 << 20);
        r.timeout = Duration::from_millis(50);
        let err = read_checked(stalled, &mut r).await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.kind), (408, "timeout"));
    }
}
