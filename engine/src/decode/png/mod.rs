//! PNG through the png crate, normalised to 8 bits. Non-interlaced images that are much larger
//! than the thumbnail are box-reduced row by row while they inflate (shrink-on-load), so the
//! full-size image is never held in memory. The rows of plain 8-bit files are read by
//! [`plain`], faster than the png crate's reader.

#[cfg(all(target_arch = "x86_64", target_feature = "sse4.1"))]
mod paeth;
mod plain;

use std::io::Cursor;

use png::{BitDepth, ColorType, Transformations};

use super::Decoded;
use crate::bitmap::{Bitmap, BoxShrinker, ColorModel};
use crate::orient::Orientation;
use crate::probe::ImageInfo;
use crate::{Error, Limits};

/// Upper bound of the bytes a decode reduced by `shrink` holds, after EXPAND and STRIP_16
/// (up to 4 channels): row by row, the reduced image, its box and column sums and the
/// decoder's current and previous rows (at up to 16 bits per sample, or [`plain`]'s inflate
/// buffer and rows); an interlaced image (or `shrink` 1), the whole frame, plus the reduced
/// copy and its sums when `shrink` > 1.
pub(super) fn decode_bytes(info: &ImageInfo, shrink: u32, interlaced: bool) -> u64 {
    let (w, h) = (u64::from(info.width), u64::from(info.height));
    let shrink = u64::from(shrink.max(1));
    // Palette and tRNS may add an alpha channel.
    let (channels, model) = if info.channels >= 3 {
        (4, ColorModel::Rgba)
    } else {
        (2, ColorModel::GrayAlpha)
    };
    let rows = (2 * w * 8 + (64 << 10)).max(plain::buffer_bytes(w, channels));
    let reduced_width = w.div_ceil(shrink);
    let reduced = reduced_width * h.div_ceil(shrink) * channels
        + reduced_width * channels * 4
        + BoxShrinker::column_bytes(info.width, model);
    match (shrink, interlaced) {
        (1, _) => w * h * channels + rows,
        (_, false) => reduced + rows,
        (_, true) => w * h * channels + reduced + rows,
    }
}

/// Whether the IHDR of a PNG (whose header the probe read) says Adam7 interlacing.
pub(super) fn interlaced(data: &[u8]) -> bool {
    data.get(28) == Some(&1)
}

pub(super) fn decode(
    data: &[u8],
    info: &ImageInfo,
    shrink: u32,
    limits: &Limits,
) -> Result<Decoded, Error> {
    let reader = open(data)?;
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
    // Rows that need no transformation: the stored colour type is the output one.
    let plain = {
        let i = reader.info();
        !i.interlaced
            && i.bit_depth == BitDepth::Eight
            && i.color_type == reader.output_color_type().0
            && i.trns.is_none()
            && i.animation_control.is_none()
    };

    limits.afford_decode(|| decode_bytes(info, shrink, interlaced))?;
    let bitmap = match plain.then(|| plain_bitmap(data, width, height, shrink, model)) {
        Some(Some(bitmap)) => bitmap,
        // A damaged plain file is decoded again by the png crate, for its typed error.
        Some(None) => reader_bitmap(open(data)?, shrink, model)?,
        None => reader_bitmap(reader, shrink, model)?,
    };
    Ok(Decoded {
        bitmap,
        icc,
        orientation,
    })
}

/// The png crate's reader, past the chunks before the image data.
fn open(data: &[u8]) -> Result<png::Reader<Cursor<&[u8]>>, Error> {
    // The decoder's own allocations (row buffers, iCCP) stay far below this; pixels are ours.
    let decoder_limits = png::Limits {
        bytes: 64 * 1024 * 1024,
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(data), decoder_limits);
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    // Text chunks are metadata we strip anyway; skipping them defuses zTXt bombs.
    decoder.set_ignore_text_chunk(true);
    decoder.read_info().map_err(map_error)
}

/// A plain file's pixels through [`plain`], reduced by `shrink`; `None` if it is damaged.
fn plain_bitmap(
    data: &[u8],
    width: u32,
    height: u32,
    shrink: u32,
    model: ColorModel,
) -> Option<Bitmap> {
    let channels = model.channels();
    if shrink > 1 {
        let mut shrinker = BoxShrinker::with_column_sums(width, height, shrink, model);
        plain::read_rows(data, width, height, channels, |row| shrinker.push_row(row))?;
        Some(shrinker.finish())
    } else {
        let mut pixels = Vec::with_capacity(width as usize * height as usize * channels);
        plain::read_rows(data, width, height, channels, |row| {
            pixels.extend_from_slice(row)
        })?;
        Some(Bitmap::new(width, height, model, pixels))
    }
}

/// The pixels through the png crate's reader (every transformation), reduced by `shrink`.
fn reader_bitmap(
    mut reader: png::Reader<Cursor<&[u8]>>,
    shrink: u32,
    model: ColorModel,
) -> Result<Bitmap, Error> {
    let (width, height, interlaced) = {
        let i = reader.info();
        (i.width, i.height, i.interlaced)
    };
    Ok(if shrink > 1 && !interlaced {
        let mut shrinker = BoxShrinker::with_column_sums(width, height, shrink, model);
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
            let mut shrinker = BoxShrinker::with_column_sums(width, height, shrink, model);
            for row in full.data.chunks_exact(full.row_bytes()) {
                shrinker.push_row(row);
            }
            shrinker.finish()
        } else {
            full
        }
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
        other => super::by_message("png", other.to_string(), &["EOF", "end of"]),
    }
}
