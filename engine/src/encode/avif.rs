//! Lossy AVIF through the system libheif (1.14+) and its aom encoder plugin (`avif` feature).
//!
//! Chosen by measurement over ravif/rav1e: at 256 px, libheif + aom at speed 9 costs about as
//! much CPU as libwebp, ravif 4–16× more. One binary, one libheif, shared with the decoder.
//!
//! Settings: 8-bit YCbCr 4:2:0 (libheif converts from the sRGB pixels and writes its default
//! colour description, which its own decoder and the engine's read back as sRGB), one encoder
//! thread (the engine runs one image per core already), alpha as an auxiliary AV1 image at the
//! same quality, no metadata.

use std::os::raw::{c_int, c_void};
use std::ptr;

use libheif_sys as lh;

use crate::bitmap::{Bitmap, ColorModel};
use crate::libheif::{self, Context, Handle, Image};
use crate::Error;

/// aom's speed preset (0 slowest … 9 fastest in libheif 1.15's plugin), good-quality usage.
///
/// Measured on 11 corpus photos at 256 px, one thread, libheif quality 63 (q80): speed 9
/// takes 0.6–0.9× libwebp's time (q80, method 4) and 5× jpeg-encoder's; speed 8 makes files
/// 9 % smaller at the same PSNR but takes 2.2–2.7× libwebp's time, too close to the 3× budget;
/// speed 7 3.7×, speed 6 6.6×.
const SPEED: c_int = 9;

/// The request's quality (1–100, JPEG's scale) → libheif's lossy quality `Q` (0–100), so that
/// the same number gives about the PSNR of this engine's JPEG (4:2:0) at that quality.
///
/// libheif 1.15's aom plugin turns `Q` into aom's constant-quality level
/// `cq = (100 − Q) × 63 / 100` (0 best … 63 worst). Measured at speed 9 on 11 corpus photos
/// at 256 px (mean PSNR against the lossless thumbnail, mean bytes; `cargo run -p thumbd-tests
/// --features heif,avif --example avif_measure -- -q N`):
///
/// | q | JPEG dB, bytes | Q | AVIF dB, bytes | WebP dB, bytes |
/// |---|---|---|---|---|
/// | 30 | 30.5, 3480 | 36 | 30.6, 2081 | 31.8, 2226 |
/// | 50 | 32.0, 4498 | 44 | 32.2, 2733 | 33.4, 2988 |
/// | 70 | 34.1, 5792 | 55 | 34.2, 3899 | 34.6, 3753 |
/// | 80 | 35.4, 7028 | 63 | 35.5, 4916 | 36.0, 4789 |
/// | 90 | 37.4, 9938 | 81 | 37.4, 7233 | 38.1, 7457 |
///
/// Linear between those points, 18 at q1 and 100 at q100 (JPEG's q95–100 is 39–41 dB, which
/// AV1 at 4:2:0 reaches only near 100): monotonic, so a higher quality never gives a smaller
/// file. PSNR favours JPEG's sharp blocks over AV1's smoothing (aom tuned for SSIM), so at
/// the same q AVIF looks at least as good; it is 30–40 % smaller than JPEG, about as large as
/// WebP at the same q (whose PSNR is 0.5–1.4 dB higher).
pub(crate) fn libheif_quality(quality: u8) -> c_int {
    const KNOTS: [(c_int, c_int); 7] = [
        (1, 18),
        (30, 36),
        (50, 44),
        (70, 55),
        (80, 63),
        (90, 81),
        (100, 100),
    ];
    let q = c_int::from(quality.clamp(1, 100));
    let upper = KNOTS
        .iter()
        .position(|&(k, _)| k >= q)
        .unwrap_or(KNOTS.len() - 1);
    if upper == 0 {
        return KNOTS[0].1;
    }
    let ((q0, v0), (q1, v1)) = (KNOTS[upper - 1], KNOTS[upper]);
    v0 + ((v1 - v0) * (q - q0) + (q1 - q0) / 2) / (q1 - q0)
}

/// Upper bound of the heap libheif and aom hold to encode a `width`×`height` image (the
/// pixels passed in and the file returned not included): 4 MiB plus 32 bytes a pixel of the
/// image grown by 64 px each way.
///
/// aom sizes its buffers for the frame: libheif's YCbCr 4:2:0 copy of the RGB pixels, aom's
/// source and lookahead copies, the reconstruction and reference frame buffers with their
/// borders, per-block mode info and coefficients, then the alpha image the same way after
/// the colour image's encoder is released. Measured under engine-peak's malloc counter
/// (speed 9, one thread, patterned pixels): 1.8 MiB for 1×1; 3.3 MiB at 256×256; 24–30 bytes
/// a pixel from 1024×1024 to 8192×8192 (1552 MiB), with alpha up to 30.3; a strip's borders
/// dominate (8192×1: 14.9 MiB, 1×8192: 15.4 MiB), hence the 64 px on each side. The closest
/// of them to this bound: 2048×1280 with alpha, 75.3 MiB against 90.6.
pub(crate) fn encoder_bytes(width: u32, height: u32) -> u64 {
    let (w, h) = (u64::from(width) + 64, u64::from(height) + 64);
    (4 << 20) + 32 * w * h
}

/// Encodes `bitmap` (gray, gray+alpha, RGB or RGBA) as AVIF at `quality` (1–100).
pub(crate) fn encode(bitmap: &Bitmap, quality: u8) -> Result<Vec<u8>, Error> {
    let (data, alpha) = match bitmap.model {
        ColorModel::Rgb => (std::borrow::Cow::Borrowed(&bitmap.data[..]), false),
        ColorModel::Rgba => (std::borrow::Cow::Borrowed(&bitmap.data[..]), true),
        ColorModel::Gray => (bitmap.data.iter().flat_map(|&v| [v, v, v]).collect(), false),
        ColorModel::GrayAlpha => (
            bitmap
                .data
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect(),
            true,
        ),
        ColorModel::Cmyk => return Err(Error::Internal("AVIF encoder got CMYK".into())),
    };
    let channels = if alpha { 4 } else { 3 };
    let (width, height) = (bitmap.width as usize, bitmap.height as usize);
    if data.len() != width * height * channels {
        return Err(Error::Internal("AVIF encoder got a short buffer".into()));
    }
    let (w, h) = match (
        c_int::try_from(bitmap.width),
        c_int::try_from(bitmap.height),
    ) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 && w <= 16384 && h <= 16384 => (w, h),
        _ => {
            return Err(Error::InvalidRequest(format!(
                "output {}x{} is outside AVIF's 1..=16384 px a side",
                bitmap.width, bitmap.height
            )))
        }
    };
    let ctx = Context::alloc()?;
    let image = rgb_image(&data, w, h, alpha)?;
    let encoder = Encoder::av1(&ctx)?;
    encoder.configure(libheif_quality(quality))?;

    // SAFETY: valid context, image and encoder; the options come from libheif's allocator
    // (its layout may be newer than our bindings, so only version-1 fields are written) and
    // are freed before returning; the handle libheif gives back is released by its guard.
    unsafe {
        let options = lh::heif_encoding_options_alloc();
        if options.is_null() {
            return Err(Error::Internal("heif_encoding_options_alloc failed".into()));
        }
        (*options).save_alpha_channel = u8::from(alpha);
        let mut handle = ptr::null_mut();
        let err = lh::heif_context_encode_image(ctx.0, image.0, encoder.0, options, &mut handle);
        lh::heif_encoding_options_free(options);
        if !handle.is_null() {
            drop(Handle(handle));
        }
        check(err)?;
    }
    write(&ctx, width * height / 4 + 1024)
}

/// The RGB(A) image libheif encodes from: one interleaved 8-bit plane, rows copied in
/// (libheif pads its rows to its own stride).
fn rgb_image(data: &[u8], w: c_int, h: c_int, alpha: bool) -> Result<Image, Error> {
    let chroma = if alpha {
        lh::heif_chroma_heif_chroma_interleaved_RGBA
    } else {
        lh::heif_chroma_heif_chroma_interleaved_RGB
    };
    let channel = lh::heif_channel_heif_channel_interleaved;
    let row = w as usize * if alpha { 4 } else { 3 };
    // SAFETY: the image is created, then guarded before anything can fail; the plane has
    // `h` rows of `stride` >= `row` bytes (checked), and `data` has `h` rows of `row` bytes
    // (checked by the caller).
    unsafe {
        let mut raw = ptr::null_mut();
        let err = lh::heif_image_create(
            w,
            h,
            lh::heif_colorspace_heif_colorspace_RGB,
            chroma,
            &mut raw,
        );
        check(err)?;
        if raw.is_null() {
            return Err(Error::Internal("heif_image_create gave no image".into()));
        }
        let image = Image(raw);
        check(lh::heif_image_add_plane(image.0, channel, w, h, 8))?;
        let mut stride: c_int = 0;
        let plane = lh::heif_image_get_plane(image.0, channel, &mut stride);
        let stride = usize::try_from(stride).unwrap_or(0);
        if plane.is_null() || stride < row {
            return Err(Error::Internal("libheif gave no pixel plane".into()));
        }
        for (y, src) in data.chunks_exact(row).take(h as usize).enumerate() {
            ptr::copy_nonoverlapping(src.as_ptr(), plane.add(y * stride), row);
        }
        Ok(image)
    }
}

/// libheif's AV1 encoder (the aom plugin), released on drop.
struct Encoder(*mut lh::heif_encoder);

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: an encoder libheif gave us, released once.
        unsafe { lh::heif_encoder_release(self.0) }
    }
}

impl Encoder {
    fn av1(ctx: &Context) -> Result<Self, Error> {
        let mut raw = ptr::null_mut();
        // SAFETY: valid context; the out pointer is written on success.
        let err = unsafe {
            lh::heif_context_get_encoder_for_format(
                ctx.0,
                lh::heif_compression_format_heif_compression_AV1,
                &mut raw,
            )
        };
        if !libheif::is_ok(&err) || raw.is_null() {
            return Err(Error::Encode {
                format: "avif",
                detail: format!(
                    "no AV1 encoder in this libheif (Debian: libheif1 with libaom3): {}",
                    libheif::describe(&err)
                ),
            });
        }
        Ok(Encoder(raw))
    }

    /// Lossy at libheif quality `q` (colour and alpha), [`SPEED`], one thread, 4:2:0.
    fn configure(&self, q: c_int) -> Result<(), Error> {
        // SAFETY: valid encoder; parameter names are NUL-terminated literals.
        unsafe {
            check(lh::heif_encoder_set_lossy_quality(self.0, q))?;
            check(lh::heif_encoder_set_lossless(self.0, 0))?;
            check(lh::heif_encoder_set_parameter_integer(
                self.0,
                c"speed".as_ptr(),
                SPEED,
            ))?;
            check(lh::heif_encoder_set_parameter_integer(
                self.0,
                c"threads".as_ptr(),
                1,
            ))?;
            check(lh::heif_encoder_set_parameter_string(
                self.0,
                c"chroma".as_ptr(),
                c"420".as_ptr(),
            ))?;
            check(lh::heif_encoder_set_parameter_integer(
                self.0,
                c"alpha-quality".as_ptr(),
                q,
            ))?;
        }
        Ok(())
    }
}

/// The context's file, written to memory through libheif's writer callback.
fn write(ctx: &Context, capacity: usize) -> Result<Vec<u8>, Error> {
    unsafe extern "C" fn append(
        _ctx: *mut lh::heif_context,
        data: *const c_void,
        size: usize,
        userdata: *mut c_void,
    ) -> lh::heif_error {
        // SAFETY: `userdata` is the `Vec` passed to heif_context_write below, alive and not
        // otherwise borrowed during the call; libheif passes `size` readable bytes at `data`.
        unsafe {
            let out = &mut *userdata.cast::<Vec<u8>>();
            if size > 0 && !data.is_null() {
                out.extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), size));
            }
        }
        lh::heif_error {
            code: lh::heif_error_code_heif_error_Ok,
            subcode: lh::heif_suberror_code_heif_suberror_Unspecified,
            message: c"Success".as_ptr(),
        }
    }
    let mut out: Vec<u8> = Vec::with_capacity(capacity);
    let mut writer = lh::heif_writer {
        writer_api_version: 1,
        write: Some(append),
    };
    // SAFETY: valid context; the writer and `out` outlive the call, which is synchronous.
    let err =
        unsafe { lh::heif_context_write(ctx.0, &mut writer, (&raw mut out).cast::<c_void>()) };
    check(err)?;
    Ok(out)
}

fn check(err: lh::heif_error) -> Result<(), Error> {
    if libheif::is_ok(&err) {
        return Ok(());
    }
    Err(Error::Encode {
        format: "avif",
        detail: libheif::describe(&err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::tests::sample;

    #[test]
    fn quality_mapping_is_monotonic_and_keeps_the_measured_points() {
        let all: Vec<c_int> = (1..=100).map(libheif_quality).collect();
        assert!(all.windows(2).all(|w| w[0] <= w[1]), "{all:?}");
        assert_eq!(libheif_quality(1), 18);
        assert_eq!(libheif_quality(80), 63);
        assert_eq!(libheif_quality(100), 100);
        assert_eq!(libheif_quality(0), 18, "clamped");
    }

    #[test]
    fn every_layout_and_odd_sizes_encode_as_avif() {
        for model in [
            ColorModel::Gray,
            ColorModel::GrayAlpha,
            ColorModel::Rgb,
            ColorModel::Rgba,
        ] {
            for size in [(1, 1), (67, 41), (3, 200)] {
                let out = encode(&sample(model, size), 80).expect("encodes");
                assert_eq!(&out[4..12], b"ftypavif", "{model:?} {size:?}");
            }
        }
        assert!(matches!(
            encode(&Bitmap::new(2, 2, ColorModel::Cmyk, vec![0; 16]), 80),
            Err(Error::Internal(_))
        ));
    }

    #[test]
    fn quality_changes_the_size() {
        let bitmap = sample(ColorModel::Rgb, (96, 64));
        let low = encode(&bitmap, 10).unwrap();
        let high = encode(&bitmap, 95).unwrap();
        assert!(low.len() < high.len(), "{} vs {}", low.len(), high.len());
    }

    #[cfg(feature = "heif")]
    #[test]
    fn output_decodes_back_with_alpha_through_the_engine() {
        use crate::probe::{probe, InputFormat};
        use crate::Limits;
        for model in [ColorModel::Rgb, ColorModel::Rgba, ColorModel::GrayAlpha] {
            let bitmap = sample(model, (67, 41));
            let out = encode(&bitmap, 80).unwrap();
            let info = probe(&out, &Limits::default()).unwrap();
            assert_eq!(info.format, InputFormat::Avif);
            assert_eq!((info.width, info.height), (67, 41));
            let back = crate::decode::decode(&out, &info, 1, &Limits::default())
                .unwrap()
                .bitmap;
            assert_eq!((back.width, back.height), (67, 41));
            assert_eq!(back.model.has_alpha(), model.has_alpha(), "{model:?}");
            // Lossy: close to the source. Compare the first channel and, with alpha, alpha.
            let (sc, bc) = (model.channels(), back.model.channels());
            let mean_err = |src_at: usize, back_at: usize| {
                bitmap
                    .data
                    .chunks_exact(sc)
                    .zip(back.data.chunks_exact(bc))
                    .map(|(a, b)| (i32::from(a[src_at]) - i32::from(b[back_at])).abs())
                    .sum::<i32>() as f64
                    / f64::from(67 * 41)
            };
            assert!(mean_err(0, 0) < 6.0, "{model:?}: {}", mean_err(0, 0));
            if model.has_alpha() {
                let err = mean_err(sc - 1, bc - 1);
                assert!(err < 6.0, "{model:?} alpha: {err}");
            }
        }
    }
}
