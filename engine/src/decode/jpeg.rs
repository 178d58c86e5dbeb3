//! JPEG through zune-jpeg. CMYK and YCCK are taken as raw planes and normalised to ink values
//! here, because the colour stage converts them through a CMYK profile (a naive formula renders
//! print colours visibly wrong).

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::JpegDecoder;

use super::Decoded;
use crate::bitmap::{Bitmap, ColorModel};
use crate::orient::Orientation;
use crate::probe::{ImageInfo, JpegCoding};
use crate::Error;

pub(super) fn decode(data: &[u8], info: &ImageInfo, _shrink: u32) -> Result<Decoded, Error> {
    if info.jpeg_coding == Some(JpegCoding::Arithmetic) {
        return Err(Error::Unsupported(
            "arithmetic-coded JPEG (zune-jpeg decodes Huffman-coded JPEG only)".into(),
        ));
    }
    // Limits were already enforced from our own header walk; let zune accept any u16 size.
    let options = DecoderOptions::default()
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .set_strict_mode(false);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data), options);
    decoder.decode_headers().map_err(map_error)?;
    let input = decoder.input_colorspace().unwrap_or(ColorSpace::YCbCr);
    let (out, model) = match input {
        ColorSpace::Luma => (ColorSpace::Luma, ColorModel::Gray),
        ColorSpace::CMYK => (ColorSpace::CMYK, ColorModel::Cmyk),
        ColorSpace::YCCK => (ColorSpace::YCCK, ColorModel::Cmyk),
        _ => (ColorSpace::RGB, ColorModel::Rgb),
    };
    decoder.set_options(options.jpeg_set_out_colorspace(out));
    decoder.decode_headers().map_err(map_error)?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| Error::Internal("zune-jpeg gave no dimensions after headers".into()))?;
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| Error::Internal("zune-jpeg gave no output size".into()))?;
    if size != width * height * model.channels() {
        return Err(Error::Corrupt {
            format: "jpeg",
            detail: format!("unexpected output size for {input:?} → {out:?}"),
        });
    }
    let mut pixels = vec![0u8; size];
    decoder.decode_into(&mut pixels).map_err(map_error)?;

    match input {
        ColorSpace::YCCK => ycck_to_ink(&mut pixels, info.adobe_transform.is_some()),
        ColorSpace::CMYK if info.adobe_transform.is_some() => {
            // Adobe writes CMYK inverted (0 = full ink).
            pixels.iter_mut().for_each(|v| *v = 255 - *v);
        }
        _ => {}
    }
    let orientation = decoder
        .exif()
        .map(|exif| Orientation::from_exif(exif))
        .unwrap_or_default();
    Ok(Decoded {
        bitmap: Bitmap::new(width as u32, height as u32, model, pixels),
        icc: decoder.icc_profile(),
        orientation,
    })
}

/// YCCK → CMYK ink: the Y/Cb/Cr planes are an RGB-coded inverse of the stored CMY (libjpeg's
/// `ycck_cmyk_convert`), and Adobe stores all four channels inverted.
fn ycck_to_ink(pixels: &mut [u8], adobe: bool) {
    for px in pixels.chunks_exact_mut(4) {
        let y = f32::from(px[0]);
        let cb = f32::from(px[1]) - 128.0;
        let cr = f32::from(px[2]) - 128.0;
        let r = y + 1.402 * cr;
        let g = y - 0.344_136 * cb - 0.714_136 * cr;
        let b = y + 1.772 * cb;
        // Decoded RGB is 255 − stored CMY; stored CMY is itself inverted ink under Adobe.
        let stored = |v: f32| 255 - v.round().clamp(0.0, 255.0) as u8;
        let ink = |s: u8| if adobe { 255 - s } else { s };
        px[0] = ink(stored(r));
        px[1] = ink(stored(g));
        px[2] = ink(stored(b));
        px[3] = ink(px[3]);
    }
}

fn map_error(err: DecodeErrors) -> Error {
    match err {
        DecodeErrors::ExhaustedData => Error::Truncated {
            format: "jpeg",
            detail: "data ends inside the image".into(),
        },
        DecodeErrors::Unsupported(scheme) => Error::Unsupported(format!("JPEG: {scheme:?}")),
        DecodeErrors::IoErrors(e) => Error::Truncated {
            format: "jpeg",
            detail: format!("{e:?}"),
        },
        DecodeErrors::LargeDimensions(n) => Error::Corrupt {
            format: "jpeg",
            detail: format!("dimension {n} over the decoder's limit"),
        },
        other => {
            let detail = other.to_string();
            if detail.contains("EOF") || detail.contains("No more bytes") {
                Error::Truncated {
                    format: "jpeg",
                    detail,
                }
            } else {
                Error::Corrupt {
                    format: "jpeg",
                    detail,
                }
            }
        }
    }
}
