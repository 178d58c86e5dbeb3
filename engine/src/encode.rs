//! Encoding: JPEG (jpeg-encoder), PNG (png), lossy WebP (libwebp through the webp crate).
//! Metadata is stripped: the outputs carry no EXIF, no ICC (they are sRGB), no text.

use crate::bitmap::{Bitmap, ColorModel};
use crate::request::{OutputFormat, Request};
use crate::Error;

pub(crate) fn encode(bitmap: &Bitmap, request: &Request) -> Result<Vec<u8>, Error> {
    match request.format {
        OutputFormat::Jpeg => jpeg(bitmap, request),
        OutputFormat::Png => png(bitmap),
        OutputFormat::Webp => webp(bitmap, request.quality),
    }
}

/// Composites alpha over `background` (for JPEG, which has no alpha).
pub(crate) fn flatten(bitmap: Bitmap, background: [u8; 3]) -> Bitmap {
    let over = |c: u8, a: u8, bg: u8| {
        let (c, a, bg) = (u32::from(c), u32::from(a), u32::from(bg));
        ((c * a + bg * (255 - a) + 127) / 255) as u8
    };
    match bitmap.model {
        ColorModel::Rgba => {
            let data = bitmap
                .data
                .chunks_exact(4)
                .flat_map(|p| [0, 1, 2].map(|i| over(p[i], p[3], background[i])))
                .collect();
            Bitmap::new(bitmap.width, bitmap.height, ColorModel::Rgb, data)
        }
        ColorModel::GrayAlpha if background.iter().all(|&c| c == background[0]) => {
            let data = bitmap
                .data
                .chunks_exact(2)
                .map(|p| over(p[0], p[1], background[0]))
                .collect();
            Bitmap::new(bitmap.width, bitmap.height, ColorModel::Gray, data)
        }
        ColorModel::GrayAlpha => {
            let data = bitmap
                .data
                .chunks_exact(2)
                .flat_map(|p| [0, 1, 2].map(|i| over(p[0], p[1], background[i])))
                .collect();
            Bitmap::new(bitmap.width, bitmap.height, ColorModel::Rgb, data)
        }
        _ => bitmap,
    }
}

fn jpeg(bitmap: &Bitmap, request: &Request) -> Result<Vec<u8>, Error> {
    use jpeg_encoder::{ChromaSubsamplingMethod, ColorType, Encoder, SamplingFactor};
    let color = match bitmap.model {
        ColorModel::Gray => ColorType::Luma,
        ColorModel::Rgb => ColorType::Rgb,
        other => return Err(Error::Internal(format!("JPEG encoder got {other:?}"))),
    };
    let fail = |e: jpeg_encoder::EncodingError| Error::Encode {
        format: "jpeg",
        detail: e.to_string(),
    };
    let (w, h) = dims_u16(bitmap)?;
    let mut out = Vec::with_capacity(bitmap.data.len() / 8 + 1024);
    let mut encoder = Encoder::new(&mut out, request.quality);
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    // Averaging as libjpeg does; the default top-left pick aliases chroma edges.
    encoder.set_chroma_subsampling_method(ChromaSubsamplingMethod::Average);
    encoder.set_progressive(request.progressive);
    // No optimised Huffman tables: jpeg-encoder then writes one scan per component, which
    // zune-jpeg 0.5 (and so image-rs) misreads; standard tables cost ~5-10 % in size.
    encoder.encode(&bitmap.data, w, h, color).map_err(fail)?;
    Ok(out)
}

fn png(bitmap: &Bitmap) -> Result<Vec<u8>, Error> {
    let color = match bitmap.model {
        ColorModel::Gray => png::ColorType::Grayscale,
        ColorModel::GrayAlpha => png::ColorType::GrayscaleAlpha,
        ColorModel::Rgb => png::ColorType::Rgb,
        ColorModel::Rgba => png::ColorType::Rgba,
        ColorModel::Cmyk => return Err(Error::Internal("PNG encoder got CMYK".into())),
    };
    let fail = |e: png::EncodingError| Error::Encode {
        format: "png",
        detail: e.to_string(),
    };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, bitmap.width, bitmap.height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&bitmap.data).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(out)
}

fn webp(bitmap: &Bitmap, quality: u8) -> Result<Vec<u8>, Error> {
    // libwebp takes RGB or RGBA only.
    let expanded;
    let (data, alpha) = match bitmap.model {
        ColorModel::Rgb => (&bitmap.data, false),
        ColorModel::Rgba => (&bitmap.data, true),
        ColorModel::Gray => {
            expanded = bitmap
                .data
                .iter()
                .flat_map(|&v| [v, v, v])
                .collect::<Vec<_>>();
            (&expanded, false)
        }
        ColorModel::GrayAlpha => {
            expanded = bitmap
                .data
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect::<Vec<_>>();
            (&expanded, true)
        }
        ColorModel::Cmyk => return Err(Error::Internal("WebP encoder got CMYK".into())),
    };
    let (w, h) = dims_u16(bitmap)?;
    if w > 16383 || h > 16383 {
        return Err(Error::InvalidRequest(
            "WebP is limited to 16383 px a side".into(),
        ));
    }
    let encoder = if alpha {
        webp::Encoder::from_rgba(data, bitmap.width, bitmap.height)
    } else {
        webp::Encoder::from_rgb(data, bitmap.width, bitmap.height)
    };
    let memory = encoder
        .encode_simple(false, f32::from(quality))
        .map_err(|e| Error::Encode {
            format: "webp",
            detail: format!("{e:?}"),
        })?;
    Ok(memory.to_vec())
}

fn dims_u16(bitmap: &Bitmap) -> Result<(u16, u16), Error> {
    match (u16::try_from(bitmap.width), u16::try_from(bitmap.height)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(Error::InvalidRequest(format!(
            "output {}x{} is too large to encode",
            bitmap.width, bitmap.height
        ))),
    }
}
