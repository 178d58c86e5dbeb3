//! Encoding: JPEG (jpeg-encoder), PNG (png), lossy WebP (libwebp through libwebp-sys, the
//! same copy the decoder uses), lossy AVIF (feature `avif`: libheif with aom, [`avif`]).
//! Metadata is stripped: the outputs carry no EXIF, no ICC (they are sRGB), no text.

use crate::bitmap::{Bitmap, ColorModel};
use crate::request::{OutputFormat, Request};
use crate::Error;

use libwebp_sys as webp;

#[cfg(feature = "avif")]
mod avif;

pub(crate) fn encode(bitmap: &Bitmap, request: &Request) -> Result<Vec<u8>, Error> {
    match request.format {
        OutputFormat::Jpeg => jpeg(bitmap, request),
        OutputFormat::Png => png(bitmap),
        OutputFormat::Webp => webp(bitmap, request.quality),
        #[cfg(feature = "avif")]
        OutputFormat::Avif => avif::encode(bitmap, request.quality),
    }
}

/// See [`crate::stages::encoder_bytes`].
pub(crate) fn encoder_bytes(format: OutputFormat, width: u32, height: u32) -> u64 {
    match format {
        #[cfg(feature = "avif")]
        OutputFormat::Avif => avif::encoder_bytes(width, height),
        _ => {
            let _ = (width, height);
            0
        }
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
            // A sized output and fixed-size chunks: `flat_map(..).collect()` grew the vector
            // a byte at a time (5 % of a GIF thumbnail's instructions).
            let mut data = vec![0u8; bitmap.data.len() / 4 * 3];
            for (o, p) in data.chunks_exact_mut(3).zip(bitmap.data.chunks_exact(4)) {
                for i in 0..3 {
                    o[i] = over(p[i], p[3], background[i]);
                }
            }
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
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
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
    encoder.set_progressive(request.progressive);
    // No optimised Huffman tables: jpeg-encoder then writes one scan per component, which
    // zune-jpeg 0.5 (and so image-rs) misreads; standard tables cost ~5-10 % in size.
    match color {
        // Chroma averaged over each 2×2 block as libjpeg does (the encoder's default top-left
        // pick aliases chroma edges), by `Rgb420`, so the encoder just picks it up.
        ColorType::Rgb => {
            let image = Rgb420 {
                data: &bitmap.data,
                width: w,
                height: h,
            };
            encoder.encode_image(image).map_err(fail)?
        }
        _ => encoder.encode(&bitmap.data, w, h, color).map_err(fail)?,
    }
    Ok(out)
}

/// jpeg-encoder's own RGB → YCbCr of one pixel (`p` holds at least R, G, B).
#[inline(always)]
fn ycbcr(p: &[u8]) -> (u8, u8, u8) {
    jpeg_encoder::rgb_to_ycbcr(p[0], p[1], p[2])
}

/// Chroma column `cx`'s (Cb, Cr) from its four pixels, with the encoder's bias for it.
#[inline(always)]
fn chroma_average(cx: usize, pixels: [&[u8]; 4]) -> (u8, u8) {
    let bias = 1 + (cx % 2) as u32;
    let (mut cb, mut cr) = (bias, bias);
    for p in pixels {
        let (_, b, c) = ycbcr(p);
        cb += u32::from(b);
        cr += u32::from(c);
    }
    ((cb >> 2) as u8, (cr >> 2) as u8)
}

/// RGB pixels as jpeg-encoder's YCbCr rows for 4:2:0, with each 2×2 block's chroma averaged
/// here, exactly as the encoder's own `ChromaSubsamplingMethod::Average` does (libjpeg's h2v2
/// downsampling: edge pixels replicated, a rounding bias alternating 1, 2 by chroma column).
/// The encoder then reads chroma at even rows and columns only (its default `Nearest` pick).
/// Its averaging is a generic per-sample loop with a division: 40 % of the encode of a
/// thumbnail, 6 % of a run on the small JPEGs of `../shared/corpus` (callgrind).
struct Rgb420<'a> {
    data: &'a [u8],
    width: u16,
    height: u16,
}

impl jpeg_encoder::ImageBuffer for Rgb420<'_> {
    fn get_jpeg_color_type(&self) -> jpeg_encoder::JpegColorType {
        jpeg_encoder::JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let (w, last) = (usize::from(self.width), self.height - 1);
        let row = |y: u16| {
            let start = usize::from(y) * w * 3;
            &self.data[start..start + w * 3]
        };
        let top = row(y);
        let [luma, cb_row, cr_row, _] = buffers;
        luma.extend(top.chunks_exact(3).map(|p| ycbcr(p).0));
        let (at, end) = (cb_row.len(), cb_row.len() + w);
        cb_row.resize(end, 0);
        cr_row.resize(end, 0);
        // An odd row's chroma is never read, except the last row's: the encoder pads its
        // 16-row band by asking for the last row again, at even positions too.
        if y % 2 == 1 && y != last {
            return;
        }
        let bottom = row((y + 1).min(last));
        let (cbs, crs) = (&mut cb_row[at..end], &mut cr_row[at..end]);
        let pairs = top.chunks_exact(6).zip(bottom.chunks_exact(6));
        for (cx, ((t, b), (cb, cr))) in pairs
            .zip(cbs.chunks_exact_mut(2).zip(crs.chunks_exact_mut(2)))
            .enumerate()
        {
            let v = chroma_average(cx, [&t[..3], &t[3..], &b[..3], &b[3..]]);
            (cb[0], cr[0]) = v;
            (cb[1], cr[1]) = v;
        }
        let x = w - 1;
        let (t, b) = (&top[x * 3..], &bottom[x * 3..]);
        // The last column is what the encoder repeats into the padding past the right edge:
        // it averages copies of the edge pixels there (with the bias of the first padding
        // column when the width is even; an odd width's last column is read itself).
        (cbs[x], crs[x]) = chroma_average(w / 2, [t, t, b, b]);
    }
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
    libwebp_lossy(data, bitmap.width, bitmap.height, alpha, quality)
}

/// Frees a picture's buffers and the writer's output on every path.
struct EncodeState {
    picture: webp::WebPPicture,
    writer: webp::WebPMemoryWriter,
}

impl Drop for EncodeState {
    fn drop(&mut self) {
        // SAFETY: both were initialised by libwebp before the state was built; freeing an
        // empty picture or writer is a no-op.
        unsafe {
            webp::WebPPictureFree(&mut self.picture);
            webp::WebPMemoryWriterClear(&mut self.writer);
        }
    }
}

/// Lossy WebP as the `webp` crate's `encode_simple(false, quality)` made it before: libwebp's
/// default preset at `quality`, compressed alpha, ARGB input converted by the encoder.
fn libwebp_lossy(
    data: &[u8],
    width: u32,
    height: u32,
    alpha: bool,
    quality: u8,
) -> Result<Vec<u8>, Error> {
    let fail = |detail: String| Error::Encode {
        format: "webp",
        detail,
    };
    let channels = if alpha { 4 } else { 3 };
    if data.len() != width as usize * height as usize * channels {
        return Err(Error::Internal("WebP encoder got a short buffer".into()));
    }
    // SAFETY: `data` holds width × height pixels of `channels` bytes (checked above, and the
    // sides are at most 16383), which is all the import reads; the picture and writer are
    // initialised by libwebp before use and freed by `EncodeState`'s drop.
    unsafe {
        let mut config = std::mem::MaybeUninit::<webp::WebPConfig>::uninit();
        if webp::WebPConfigInitInternal(
            config.as_mut_ptr(),
            webp::WebPPreset::WEBP_PRESET_DEFAULT,
            f32::from(quality),
            webp::WEBP_ENCODER_ABI_VERSION as i32,
        ) == 0
        {
            return Err(fail("libwebp ABI mismatch".into()));
        }
        let mut config = config.assume_init();
        config.lossless = 0;
        config.alpha_compression = 1;
        if webp::WebPValidateConfig(&config) == 0 {
            return Err(fail("invalid configuration".into()));
        }
        let mut picture = std::mem::MaybeUninit::<webp::WebPPicture>::uninit();
        if webp::WebPPictureInitInternal(
            picture.as_mut_ptr(),
            webp::WEBP_ENCODER_ABI_VERSION as i32,
        ) == 0
        {
            return Err(fail("libwebp ABI mismatch".into()));
        }
        let mut writer = std::mem::MaybeUninit::<webp::WebPMemoryWriter>::uninit();
        webp::WebPMemoryWriterInit(writer.as_mut_ptr());
        let mut state = EncodeState {
            picture: picture.assume_init(),
            writer: writer.assume_init(),
        };
        let picture = &mut state.picture;
        picture.use_argb = 1;
        picture.width = width as i32;
        picture.height = height as i32;
        let stride = (width as usize * channels) as i32;
        let imported = if alpha {
            webp::WebPPictureImportRGBA(picture, data.as_ptr(), stride)
        } else {
            webp::WebPPictureImportRGB(picture, data.as_ptr(), stride)
        };
        if imported == 0 {
            return Err(fail(format!("import: {:?}", picture.error_code)));
        }
        picture.writer = Some(webp::WebPMemoryWrite);
        picture.custom_ptr = (&raw mut state.writer).cast();
        if webp::WebPEncode(&config, &mut state.picture) == 0 {
            return Err(fail(format!("{:?}", state.picture.error_code)));
        }
        let out = if state.writer.mem.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(state.writer.mem, state.writer.size).to_vec()
        };
        Ok(out)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{probe, InputFormat};
    use crate::Limits;

    /// A `w`×`h` gradient with a soft alpha ramp, in each layout the encoders take (the AVIF
    /// encoder's tests use it too).
    pub(super) fn sample(model: ColorModel, (w, h): (u32, u32)) -> Bitmap {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let (r, g, b, a) = ((x * 3) as u8, (y * 5) as u8, 128u8, (x * 255 / w) as u8);
                match model {
                    ColorModel::Gray => data.push(r),
                    ColorModel::GrayAlpha => data.extend([r, a]),
                    ColorModel::Rgb => data.extend([r, g, b]),
                    ColorModel::Rgba => data.extend([r, g, b, a]),
                    ColorModel::Cmyk => unreachable!(),
                }
            }
        }
        Bitmap::new(w, h, model, data)
    }

    #[test]
    fn webp_output_decodes_back() {
        for model in [
            ColorModel::Gray,
            ColorModel::GrayAlpha,
            ColorModel::Rgb,
            ColorModel::Rgba,
        ] {
            let bitmap = sample(model, (67, 41));
            let out = webp(&bitmap, 80).unwrap();
            let info = probe(&out, &Limits::default()).unwrap();
            assert_eq!(info.format, InputFormat::Webp);
            assert_eq!((info.width, info.height), (67, 41));
            let decoded = crate::decode::decode(&out, &info, 1, &Limits::default()).unwrap();
            let back = decoded.bitmap;
            assert_eq!((back.width, back.height), (67, 41));
            assert_eq!(back.model.has_alpha(), model.has_alpha(), "{model:?}");
            // Lossy: close to the source, not equal. Compare the first channel.
            let src_ch = model.channels();
            let back_ch = back.model.channels();
            let err = bitmap
                .data
                .chunks_exact(src_ch)
                .zip(back.data.chunks_exact(back_ch))
                .map(|(a, b)| (i32::from(a[0]) - i32::from(b[0])).abs())
                .sum::<i32>() as f64
                / f64::from(67 * 41);
            assert!(err < 6.0, "{model:?}: mean error {err}");
        }
    }

    /// The encoder's own `Average` subsampling of `bitmap` (what `Rgb420` replaces).
    fn averaged_by_the_encoder(bitmap: &Bitmap, quality: u8, progressive: bool) -> Vec<u8> {
        use jpeg_encoder::{ChromaSubsamplingMethod, ColorType, Encoder, SamplingFactor};
        let mut out = Vec::new();
        let mut encoder = Encoder::new(&mut out, quality);
        encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
        encoder.set_chroma_subsampling_method(ChromaSubsamplingMethod::Average);
        encoder.set_progressive(progressive);
        let (w, h) = dims_u16(bitmap).unwrap();
        encoder.encode(&bitmap.data, w, h, ColorType::Rgb).unwrap();
        out
    }

    /// Pseudo-random RGB: chroma that differs between every two neighbours.
    fn noise((w, h): (u32, u32)) -> Bitmap {
        let data = (0..w * h * 3)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        Bitmap::new(w, h, ColorModel::Rgb, data)
    }

    #[test]
    fn chroma_averaged_before_the_encoder_is_the_encoders_own_average() {
        // Whole 16×16 blocks: no padding, so the files are the same to the byte.
        for dims in [(16, 16), (48, 32), (256, 176)] {
            for progressive in [false, true] {
                let bitmap = noise(dims);
                let request = Request {
                    progressive,
                    ..Request::default()
                };
                let ours = jpeg(&bitmap, &request).unwrap();
                assert!(
                    ours == averaged_by_the_encoder(&bitmap, 80, progressive),
                    "{dims:?} progressive {progressive}"
                );
            }
        }
    }

    #[test]
    fn partial_blocks_differ_only_in_the_padding() {
        // Past the right or bottom edge the encoder averages copies of the edge pixels with
        // an alternating bias; `Rgb420` repeats one value there. Decoded, the visible pixels
        // stay within a rounding of each other.
        for dims in [(1, 1), (2, 3), (17, 15), (33, 18), (255, 171)] {
            let bitmap = noise(dims);
            let ours = jpeg(&bitmap, &Request::default()).unwrap();
            let theirs = averaged_by_the_encoder(&bitmap, 80, false);
            let decode = |data: &[u8]| {
                let info = probe(data, &Limits::default()).unwrap();
                assert_eq!((info.width, info.height), dims);
                crate::decode::decode(data, &info, 1, &Limits::default())
                    .unwrap()
                    .bitmap
                    .data
            };
            let worst = decode(&ours)
                .iter()
                .zip(decode(&theirs))
                .map(|(&a, b)| (i32::from(a) - i32::from(b)).abs())
                .max()
                .unwrap();
            assert!(worst <= 2, "{dims:?}: {worst}");
        }
    }

    #[test]
    fn webp_quality_changes_the_size() {
        let bitmap = sample(ColorModel::Rgb, (67, 41));
        let low = webp(&bitmap, 10).unwrap();
        let high = webp(&bitmap, 95).unwrap();
        assert!(low.len() < high.len(), "{} vs {}", low.len(), high.len());
        assert!(low.starts_with(b"RIFF") && &low[8..12] == b"WEBP");
    }
}
