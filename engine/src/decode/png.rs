//! PNG through the png crate, normalised to 8 bits. Non-interlaced images that are much larger
//! than the thumbnail are box-reduced row by row while they inflate (shrink-on-load), so the
//! full-size image is never held in memory.

use std::io::Cursor;

use png::{ColorType, Transformations};

use super::Decoded;
use crate::bitmap::{Bitmap, BoxShrinker, ColorModel};
use crate::orient::Orientation;
use crate::probe::ImageInfo;
use crate::Error;

pub(super) fn decode(data: &[u8], info: &ImageInfo, shrink: u32) -> Result<Decoded, Error> {
    // The decoder's own allocations (row buffers, iCCP) stay far below this; pixels are ours.
    let limits = png::Limits {
        bytes: 64 * 1024 * 1024,
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(data), limits);
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    // Text chunks are metadata we strip anyway; skipping them defuses zTXt bombs.
    decoder.set_ignore_text_chunk(true);
    let mut reader = decoder.read_info().map_err(map_error)?;
    let (width, height, interlaced) = {
        let i = reader.info();
        (i.width, i.height, i.interlaced)
    };
    if (width, height) != (info.width, info.height) {
        return Err(Error::Corrupt {
            format: "png",
            detail: "IHDR changed between reads".into(),
        });
    }
    let icc = reader.info().icc_profile.as_ref().map(|p| p.to_vec());
    let orientation = reader
        .info()
        .exif_metadata
        .as_ref()
        .map(|exif| Orientation::from_exif(exif))
        .unwrap_or_default();
    let model = match reader.output_color_type().0 {
        ColorType::Grayscale => ColorModel::Gray,
        ColorType::GrayscaleAlpha => ColorModel::GrayAlpha,
        ColorType::Rgb => ColorModel::Rgb,
        ColorType::Rgba => ColorModel::Rgba,
        ColorType::Indexed => {
            return Err(Error::Internal(
                "palette not expanded by the png crate".into(),
            ))
        }
    };

    let bitmap = if shrink > 1 && !interlaced {
        let mut shrinker = BoxShrinker::new(width, height, shrink, model);
        while let Some(row) = reader.next_row().map_err(map_error)? {
            shrinker.push_row(row.data());
        }
        shrinker.finish()
    } else {
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| Error::Internal("png output size overflows".into()))?;
        let mut pixels = vec![0u8; size];
        let frame = reader.next_frame(&mut pixels).map_err(map_error)?;
        pixels.truncate(frame.buffer_size());
        let full = Bitmap::new(width, height, model, pixels);
        if shrink > 1 {
            let mut shrinker = BoxShrinker::new(width, height, shrink, model);
            for row in full.data.chunks_exact(full.row_bytes()) {
                shrinker.push_row(row);
            }
            shrinker.finish()
        } else {
            full
        }
    };
    Ok(Decoded {
        bitmap,
        icc,
        orientation,
    })
}

fn map_error(err: png::DecodingError) -> Error {
    match err {
        png::DecodingError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Truncated {
                format: "png",
                detail: "data ends inside the image".into(),
            }
        }
        png::DecodingError::LimitsExceeded => Error::Corrupt {
            format: "png",
            detail: "a chunk needs more memory than the decoder's limit".into(),
        },
        other => {
            let detail = other.to_string();
            if detail.contains("EOF") || detail.contains("end of") {
                Error::Truncated {
                    format: "png",
                    detail,
                }
            } else {
                Error::Corrupt {
                    format: "png",
                    detail,
                }
            }
        }
    }
}
