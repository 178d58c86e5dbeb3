//! HEIC/HEIF (HEVC) and AVIF (AV1) through the system libheif (1.14 or later; Debian 12 has
//! 1.15 with its libde265, dav1d and aom plugins), behind the `heif` feature. Without the
//! feature every such file is refused as `unsupported` from its header.
//!
//! Handles: the primary image (a grid's tiles included) at its displayed size, libheif having
//! applied its transformations (irot, imir, clap) once, so EXIF orientation is not applied
//! again (the HEIF rule, as libvips and pillow-heif do); alpha; 8 to 16 bits, delivered as
//! 8-bit RGB/RGBA; ICC profiles (`prof`/`rICC`; nclx reads as sRGB); an embedded thumbnail
//! when it is at least the shrink-on-load size, as libvips does.
//!
//! Refuses: image sequences without a still primary item (libheif 1.15 reads no sequences),
//! sides over libheif's limit of 32768 px, and what libheif or its codecs reject.

#[cfg(not(feature = "heif"))]
use super::{DecodeBytes, Decoded};
use crate::probe::ImageInfo;
#[cfg(not(feature = "heif"))]
use crate::probe::InputFormat;
#[cfg(not(feature = "heif"))]
use crate::{Error, Limits};

#[cfg(not(feature = "heif"))]
fn not_built(format: InputFormat) -> Error {
    Error::Unsupported(format!(
        "{} input needs thumbd built with the `heif` feature (system libheif)",
        format.name()
    ))
}

#[cfg(not(feature = "heif"))]
pub(super) fn check_decodable(format: InputFormat) -> Result<(), Error> {
    Err(not_built(format))
}

#[cfg(not(feature = "heif"))]
pub(super) fn header(format: InputFormat, _data: &[u8]) -> Result<ImageInfo, Error> {
    Err(not_built(format))
}

#[cfg(not(feature = "heif"))]
pub(super) fn decode(
    _data: &[u8],
    info: &ImageInfo,
    _shrink: u32,
    _limits: &Limits,
) -> Result<Decoded, Error> {
    Err(not_built(info.format))
}

#[cfg(not(feature = "heif"))]
pub(super) fn decode_bytes(_data: &[u8], info: &ImageInfo, _shrink: u32) -> DecodeBytes {
    let full = full_bytes(info);
    DecodeBytes {
        planned: full,
        full,
    }
}

#[cfg(feature = "heif")]
pub(super) use with_libheif::{check_decodable, decode, decode_bytes, header};

/// Upper bound of a full-size decode from the header alone: bit depth unknown, so 16-bit
/// samples, and the canvas may be a grid's (see [`bytes_for`]).
pub(super) fn full_bytes(info: &ImageInfo) -> u64 {
    let side = u64::from(info.width.max(info.height));
    bytes_for(side, side, true)
}

/// Upper bound of the bytes libheif and this module hold to decode a canvas of `w`×`h`.
///
/// Callers pass the coded size (`ispe`, before clap crops it), or `side`×`side` (the largest
/// side) when the file may hold a grid or overlay: their canvas size sits in the `grid`/`iovl`
/// box, which libheif 1.15 does not expose, so [`with_libheif`] caps every canvas side at the
/// declared largest side through libheif's size limit, and the bound covers that square. Each
/// side gets 128 px for the codec's padding (64-px coding blocks, dav1d's borders).
///
/// Per canvas pixel, with `s` bytes a sample (1 up to 8 bits, 2 above): the codec's own
/// picture (YCbCr 4:4:4 plus alpha: 4 samples), libheif's copy of it or a grid's RGB canvas
/// plus alpha (4 samples), one colour-conversion step between them and the 8-bit result (4
/// samples), the converted 8-bit RGBA (4 bytes) and our packed copy (4 bytes): 20 bytes at
/// 8 bits, 32 above; not all live at once. Plus 16 MiB for codec contexts and per-tile state.
/// Measured (maximum RSS of the test process): the 2560×1600 8-bit HEIC peaks at 38 MB
/// whole process, against a bound of 109 MB.
fn bytes_for(w: u64, h: u64, high_bit_depth: bool) -> u64 {
    let s = if high_bit_depth { 2 } else { 1 };
    let per_pixel = 12 * s + 8;
    w.saturating_add(128)
        .saturating_mul(h.saturating_add(128))
        .saturating_mul(per_pixel)
        .saturating_add(16 << 20)
}

#[cfg(feature = "heif")]
mod with_libheif {
    use std::marker::PhantomData;
    use std::os::raw::c_int;
    use std::ptr;

    use libheif_sys as lh;

    use super::bytes_for;
    use crate::bitmap::{Bitmap, ColorModel};
    use crate::decode::{DecodeBytes, Decoded};
    use crate::libheif::{self, Handle, Image};
    use crate::orient::Orientation;
    use crate::probe::{ImageInfo, InputFormat};
    use crate::{Error, Limits};

    /// libheif 1.15's own default, set explicitly: no side of any item above this is read.
    const MAX_SIDE: c_int = 32768;
    /// Thumbnails looked at (files carry one or two).
    const MAX_THUMBNAILS: usize = 16;

    pub(in crate::decode) fn check_decodable(_format: InputFormat) -> Result<(), Error> {
        Ok(())
    }

    /// A libheif context over `data`, which it reads in place (hence the lifetime).
    struct Context<'a> {
        raw: libheif::Context,
        format: InputFormat,
        _data: PhantomData<&'a [u8]>,
    }

    /// Where an error came from: a size limit hit while reading the boxes is a real (too
    /// large) image; hit while decoding, an inner size that lies about the declared one.
    #[derive(Clone, Copy, PartialEq)]
    enum Stage {
        Read,
        Decode,
    }

    fn check(format: InputFormat, err: lh::heif_error, stage: Stage) -> Result<(), Error> {
        if libheif::is_ok(&err) {
            return Ok(());
        }
        let name = format.name();
        let detail = libheif::describe(&err);
        Err(match (err.code, err.subcode) {
            (_, lh::heif_suberror_code_heif_suberror_End_of_data) => Error::Truncated {
                format: name,
                detail,
            },
            (
                lh::heif_error_code_heif_error_Unsupported_filetype
                | lh::heif_error_code_heif_error_Unsupported_feature,
                _,
            ) => Error::Unsupported(format!("{name}: {detail}")),
            (_, lh::heif_suberror_code_heif_suberror_Security_limit_exceeded)
                if stage == Stage::Read =>
            {
                Error::Unsupported(format!("{name}: {detail}"))
            }
            _ => Error::Corrupt {
                format: name,
                detail,
            },
        })
    }

    impl<'a> Context<'a> {
        fn open(format: InputFormat, data: &'a [u8]) -> Result<Self, Error> {
            let ctx = Context {
                raw: libheif::Context::alloc()?,
                format,
                _data: PhantomData,
            };
            // SAFETY: the context is valid; `data` outlives the context ('a), as the without-copy
            // read requires.
            unsafe {
                // 0: a grid's tiles are decoded on the calling thread, not a pool of libheif's
                // own; the engine runs one image per core already. The codecs' threads are
                // not libheif's to set in 1.15: see [`one_cpu`].
                lh::heif_context_set_max_decoding_threads(ctx.raw.0, 0);
                lh::heif_context_set_maximum_image_size_limit(ctx.raw.0, MAX_SIDE);
                let err = lh::heif_context_read_from_memory_without_copy(
                    ctx.raw.0,
                    data.as_ptr().cast(),
                    data.len(),
                    ptr::null(),
                );
                check(format, err, Stage::Read)?;
            }
            Ok(ctx)
        }

        fn primary(&self) -> Result<Handle, Error> {
            let mut handle = ptr::null_mut();
            // SAFETY: valid context; the out pointer is written on success.
            let err = unsafe { lh::heif_context_get_primary_image_handle(self.raw.0, &mut handle) };
            check(self.format, err, Stage::Read)?;
            if handle.is_null() {
                return Err(self.corrupt("no primary image"));
            }
            Ok(Handle(handle))
        }

        fn corrupt(&self, detail: &str) -> Error {
            Error::Corrupt {
                format: self.format.name(),
                detail: detail.into(),
            }
        }
    }

    impl Handle {
        /// Displayed size (after irot/clap), libheif's width and height.
        fn size(&self) -> (u32, u32) {
            // SAFETY: valid handle.
            let (w, h) = unsafe {
                (
                    lh::heif_image_handle_get_width(self.0),
                    lh::heif_image_handle_get_height(self.0),
                )
            };
            (u32::try_from(w).unwrap_or(0), u32::try_from(h).unwrap_or(0))
        }

        /// The largest side, displayed or coded (`ispe`, before clap crops it).
        fn max_side(&self) -> u64 {
            let (w, h) = self.size();
            // SAFETY: valid handle.
            let (iw, ih) = unsafe {
                (
                    lh::heif_image_handle_get_ispe_width(self.0),
                    lh::heif_image_handle_get_ispe_height(self.0),
                )
            };
            [
                w,
                h,
                u32::try_from(iw).unwrap_or(0),
                u32::try_from(ih).unwrap_or(0),
            ]
            .into_iter()
            .max()
            .map_or(0, u64::from)
        }

        fn has_alpha(&self) -> bool {
            // SAFETY: valid handle.
            unsafe { lh::heif_image_handle_has_alpha_channel(self.0) != 0 }
        }

        fn high_bit_depth(&self) -> bool {
            // SAFETY: valid handle. -1 (undefined) counts as high: the bound must hold.
            let bits = unsafe { lh::heif_image_handle_get_luma_bits_per_pixel(self.0) };
            !(1..=8).contains(&bits)
        }

        /// [`bytes_for`] this image; `composite`: the file may hold a grid or overlay.
        fn bytes(&self, composite: bool) -> u64 {
            let side = self.max_side();
            let (w, h) = if composite {
                (side, side)
            } else {
                let (w, h) = self.coded_size();
                (u64::from(w), u64::from(h))
            };
            bytes_for(w, h, self.high_bit_depth())
        }

        /// The coded size (`ispe`, before rotation and clap), or the displayed size when that
        /// is larger (no `ispe`).
        fn coded_size(&self) -> (u32, u32) {
            let (w, h) = self.size();
            // SAFETY: valid handle.
            let (iw, ih) = unsafe {
                (
                    lh::heif_image_handle_get_ispe_width(self.0),
                    lh::heif_image_handle_get_ispe_height(self.0),
                )
            };
            let (iw, ih) = (
                u32::try_from(iw).unwrap_or(0),
                u32::try_from(ih).unwrap_or(0),
            );
            if u64::from(iw) * u64::from(ih) >= u64::from(w) * u64::from(h) {
                (iw, ih)
            } else {
                (w, h)
            }
        }

        /// The embedded ICC profile; none for nclx (a colour space we treat as sRGB).
        fn icc(&self) -> Option<Vec<u8>> {
            // SAFETY: valid handle; the buffer has the size libheif reports.
            unsafe {
                let kind = lh::heif_image_handle_get_color_profile_type(self.0);
                if kind != lh::heif_color_profile_type_heif_color_profile_type_prof
                    && kind != lh::heif_color_profile_type_heif_color_profile_type_rICC
                {
                    return None;
                }
                let size = lh::heif_image_handle_get_raw_color_profile_size(self.0);
                if size == 0 || size > 16 << 20 {
                    return None;
                }
                let mut icc = vec![0u8; size];
                let err =
                    lh::heif_image_handle_get_raw_color_profile(self.0, icc.as_mut_ptr().cast());
                (err.code == lh::heif_error_code_heif_error_Ok).then_some(icc)
            }
        }

        /// The smallest embedded thumbnail at least `target` on both sides, of the primary's
        /// aspect ratio (within 2 %) and alpha: what libvips would load instead.
        fn thumbnail(&self, target: (u32, u32)) -> Option<Handle> {
            let (w, h) = self.size();
            // SAFETY: valid handle; the id buffer holds as many ids as we pass as its length.
            let ids = unsafe {
                let n = lh::heif_image_handle_get_number_of_thumbnails(self.0);
                let n = usize::try_from(n).unwrap_or(0).min(MAX_THUMBNAILS);
                let mut ids = vec![0 as lh::heif_item_id; n];
                let got = lh::heif_image_handle_get_list_of_thumbnail_IDs(
                    self.0,
                    ids.as_mut_ptr(),
                    n as c_int,
                );
                ids.truncate(usize::try_from(got).unwrap_or(0));
                ids
            };
            let mut best: Option<(u64, Handle)> = None;
            for id in ids {
                let mut ptr = ptr::null_mut();
                // SAFETY: valid handle and an id it listed.
                let err = unsafe { lh::heif_image_handle_get_thumbnail(self.0, id, &mut ptr) };
                if err.code != lh::heif_error_code_heif_error_Ok || ptr.is_null() {
                    continue;
                }
                let thumb = Handle(ptr);
                let (tw, th) = thumb.size();
                let same_aspect =
                    (u64::from(tw) * u64::from(h)).abs_diff(u64::from(th) * u64::from(w)) * 50
                        <= u64::from(tw) * u64::from(h);
                let fits = tw >= target.0 && th >= target.1 && tw < w && th < h;
                if !fits || !same_aspect || thumb.has_alpha() != self.has_alpha() {
                    continue;
                }
                let pixels = u64::from(tw) * u64::from(th);
                if best.as_ref().is_none_or(|(p, _)| pixels < *p) {
                    best = Some((pixels, thumb));
                }
            }
            best.map(|(_, thumb)| thumb)
        }
    }

    pub(in crate::decode) fn header(format: InputFormat, data: &[u8]) -> Result<ImageInfo, Error> {
        let ctx = Context::open(format, data)?;
        let primary = ctx.primary()?;
        let (width, height) = primary.size();
        Ok(ImageInfo {
            format,
            width,
            height,
            channels: if primary.has_alpha() { 4 } else { 3 },
            jpeg_coding: None,
            adobe_transform: None,
        })
    }

    fn shrink_target(info: &ImageInfo, shrink: u32) -> (u32, u32) {
        let shrink = shrink.max(1);
        (info.width.div_ceil(shrink), info.height.div_ceil(shrink))
    }

    /// The handle a decode at `shrink` reads: a large enough thumbnail, else the primary.
    fn planned(primary: Handle, info: &ImageInfo, shrink: u32) -> Handle {
        if shrink > 1 {
            if let Some(thumb) = primary.thumbnail(shrink_target(info, shrink)) {
                return thumb;
            }
        }
        primary
    }

    /// Whether the file may hold a grid or overlay item (whose canvas size libheif 1.15 does
    /// not expose): their item types appear as bytes somewhere, or they are absent.
    fn may_be_composite(data: &[u8]) -> bool {
        memchr::memmem::find(data, b"grid").is_some()
            || memchr::memmem::find(data, b"iovl").is_some()
    }

    pub(in crate::decode) fn decode_bytes(
        data: &[u8],
        info: &ImageInfo,
        shrink: u32,
    ) -> DecodeBytes {
        let composite = may_be_composite(data);
        let bounds = Context::open(info.format, data).and_then(|ctx| {
            let primary = ctx.primary()?;
            let full = primary.bytes(composite);
            let planned = planned(primary, info, shrink).bytes(composite);
            Ok(DecodeBytes { planned, full })
        });
        bounds.unwrap_or_else(|_| {
            let full = super::full_bytes(info);
            DecodeBytes {
                planned: full,
                full,
            }
        })
    }

    pub(in crate::decode) fn decode(
        data: &[u8],
        info: &ImageInfo,
        shrink: u32,
        limits: &Limits,
    ) -> Result<Decoded, Error> {
        let ctx = Context::open(info.format, data)?;
        let primary = ctx.primary()?;
        if primary.size() != (info.width, info.height) {
            return Err(ctx.corrupt("primary image size changed between reads"));
        }
        let primary_icc = primary.icc();
        let handle = planned(primary, info, shrink);
        let icc = handle.icc().or(primary_icc);
        let (width, height) = handle.size();
        let alpha = handle.has_alpha();
        limits.afford_decode(|| handle.bytes(may_be_composite(data)))?;

        let max_side = c_int::try_from(handle.max_side())
            .unwrap_or(MAX_SIDE)
            .min(MAX_SIDE - 1);
        // SAFETY: valid pointers throughout; the options come from libheif's allocator (its
        // layout may be newer than our bindings, so only version-1/2 fields are written).
        let image = unsafe {
            // A grid canvas larger than the declared size is refused before it is allocated
            // (libheif refuses a canvas side >= the limit).
            lh::heif_context_set_maximum_image_size_limit(ctx.raw.0, max_side + 1);
            let options = lh::heif_decoding_options_alloc();
            if options.is_null() {
                return Err(Error::Internal("heif_decoding_options_alloc failed".into()));
            }
            if (*options).version >= 2 {
                (*options).convert_hdr_to_8bit = 1;
            }
            let mut image = ptr::null_mut();
            // dav1d sizes its thread pool from this thread's CPU affinity (see `one_cpu`).
            let _one_cpu = one_cpu::Pinned::here();
            let chroma = if alpha {
                lh::heif_chroma_heif_chroma_interleaved_RGBA
            } else {
                lh::heif_chroma_heif_chroma_interleaved_RGB
            };
            let err = lh::heif_decode_image(
                handle.0,
                &mut image,
                lh::heif_colorspace_heif_colorspace_RGB,
                chroma,
                options,
            );
            lh::heif_decoding_options_free(options);
            check(info.format, err, Stage::Decode)?;
            if image.is_null() {
                return Err(ctx.corrupt("libheif returned no image"));
            }
            Image(image)
        };
        let model = if alpha {
            ColorModel::Rgba
        } else {
            ColorModel::Rgb
        };
        let bitmap = copy_interleaved(&ctx, &image, width, height, model)?;
        Ok(Decoded {
            bitmap,
            icc,
            // libheif applied irot/imir/clap; EXIF orientation is informative only in HEIF.
            orientation: Orientation::default(),
        })
    }

    /// One codec thread per image, which libheif 1.15 has no setting for.
    ///
    /// What the codecs start, per decoder instance (one per image, one more for an alpha
    /// image, one per grid tile, each closed before the next opens):
    ///
    /// - libde265 (HEVC): libheif 1.15's plugin calls `de265_start_worker_threads(ctx, 1)`,
    ///   a fixed single worker, while the calling thread waits for it: one core's work, one
    ///   extra thread and its stack, no extra heap worth counting.
    /// - dav1d (AV1, preferred over aom's decoder): the plugin opens it with
    ///   `dav1d_default_settings`, `n_threads = 0`, which dav1d 1.0 resolves to the number of
    ///   CPUs in the calling thread's affinity mask (`pthread_getaffinity_np`), and frame
    ///   contexts to about its square root. Not the pod's CPU limit: under a CFS quota the
    ///   mask is the whole node, so a 64-core node gets 64 dav1d workers per image (per tile
    ///   of a grid), each image's threads competing with the other engine threads for the
    ///   pod's quota, and more heap with every thread and frame context (2 threads: 37.8
    ///   against 23.5 MiB for a 2560×1600 AVIF; on 64 cores not measurable here, so not
    ///   boundable by the admission estimate).
    ///
    /// Neither `heif_decoding_options` (1.15: version 4, ending with `decoder_id`) nor the
    /// plugin interface passes a thread count; dav1d reads no environment. Choosing aom's
    /// decoder through `decoder_id` is no cure: libheif 1.15 applies it to the primary image
    /// only (a grid's tiles and the alpha image still go to dav1d), and aom decodes with more
    /// CPU and heap (2560×1600: 160 against 108 ms, 62 against 24 MiB). So the decode runs
    /// with this thread pinned to the CPU it is on: dav1d then counts one CPU and starts no
    /// thread at all (decoding on the caller), libde265's one worker inherits the pin, and
    /// the previous mask comes back when the guard drops. A thread that runs is alone on its
    /// CPU, so engine threads pinned this way never share one; the cost is that the
    /// scheduler cannot move the decode to another CPU for its duration.
    #[cfg(target_os = "linux")]
    mod one_cpu {
        use std::os::raw::{c_int, c_ulong};

        /// glibc's `cpu_set_t`: 1024 CPUs.
        #[repr(C)]
        #[derive(Clone, Copy)]
        pub(super) struct CpuSet(pub(super) [c_ulong; 16]);

        const BITS: usize = c_ulong::BITS as usize;

        extern "C" {
            fn sched_getaffinity(pid: c_int, size: usize, mask: *mut CpuSet) -> c_int;
            fn sched_setaffinity(pid: c_int, size: usize, mask: *const CpuSet) -> c_int;
            fn sched_getcpu() -> c_int;
        }

        /// The calling thread's affinity mask (pid 0: this thread), if it can be read.
        pub(super) fn current() -> Option<CpuSet> {
            let mut mask = CpuSet([0; 16]);
            // SAFETY: the mask is a writable cpu_set_t of the size passed.
            let ok = unsafe { sched_getaffinity(0, size_of::<CpuSet>(), &mut mask) } == 0;
            ok.then_some(mask)
        }

        impl CpuSet {
            pub(super) fn count(&self) -> u32 {
                self.0.iter().map(|w| w.count_ones()).sum()
            }
        }

        /// This thread pinned to one CPU until dropped, then given its mask back.
        pub(in crate::decode) struct Pinned(Option<CpuSet>);

        impl Pinned {
            /// Pins to the CPU this thread runs on; does nothing when the mask cannot be read
            /// or set (a cgroup or seccomp policy), or already holds one CPU.
            pub(in crate::decode) fn here() -> Self {
                let Some(before) = current().filter(|m| m.count() > 1) else {
                    return Pinned(None);
                };
                // SAFETY: no arguments; -1 on failure.
                let cpu = unsafe { sched_getcpu() };
                let Ok(cpu) = usize::try_from(cpu) else {
                    return Pinned(None);
                };
                if cpu >= 16 * BITS || before.0[cpu / BITS] & (1 << (cpu % BITS)) == 0 {
                    return Pinned(None);
                }
                let mut one = CpuSet([0; 16]);
                one.0[cpu / BITS] = 1 << (cpu % BITS);
                // SAFETY: a valid cpu_set_t of the size passed, for this thread.
                let pinned = unsafe { sched_setaffinity(0, size_of::<CpuSet>(), &one) } == 0;
                Pinned(pinned.then_some(before))
            }
        }

        impl Drop for Pinned {
            fn drop(&mut self) {
                if let Some(before) = self.0 {
                    // SAFETY: the mask read before pinning, for this thread.
                    unsafe { sched_setaffinity(0, size_of::<CpuSet>(), &before) };
                }
            }
        }
    }

    /// Elsewhere the codecs' thread counts stand (dav1d's follows the CPU count).
    #[cfg(not(target_os = "linux"))]
    mod one_cpu {
        pub(in crate::decode) struct Pinned;
        impl Pinned {
            pub(in crate::decode) fn here() -> Self {
                Pinned
            }
        }
    }

    #[cfg(all(test, target_os = "linux"))]
    #[test]
    fn the_decode_pin_holds_one_cpu_and_gives_the_mask_back() {
        let before = one_cpu::current().expect("affinity readable");
        {
            let _pin = one_cpu::Pinned::here();
            assert_eq!(one_cpu::current().unwrap().count(), 1);
        }
        assert_eq!(one_cpu::current().unwrap().0, before.0);
    }

    /// The decoded interleaved plane, packed (libheif pads its rows), checked against the
    /// size the handle declared.
    fn copy_interleaved(
        ctx: &Context,
        image: &Image,
        width: u32,
        height: u32,
        model: ColorModel,
    ) -> Result<Bitmap, Error> {
        let channel = lh::heif_channel_heif_channel_interleaved;
        let mut stride: c_int = 0;
        // SAFETY: valid image; the plane pointer stays valid while `image` lives, and is read
        // only within height × stride bytes, which libheif allocated.
        unsafe {
            let (w, h) = (
                lh::heif_image_get_width(image.0, channel),
                lh::heif_image_get_height(image.0, channel),
            );
            let bits = lh::heif_image_get_bits_per_pixel_range(image.0, channel);
            if (u32::try_from(w), u32::try_from(h)) != (Ok(width), Ok(height)) {
                return Err(ctx.corrupt(&format!(
                    "decoded {w}x{h}, the file declares {width}x{height}"
                )));
            }
            if bits != 8 {
                return Err(Error::Internal(format!(
                    "libheif delivered {bits}-bit samples, 8 requested"
                )));
            }
            let plane = lh::heif_image_get_plane_readonly(image.0, channel, &mut stride);
            let row = width as usize * model.channels();
            let stride = usize::try_from(stride).unwrap_or(0);
            if plane.is_null() || stride < row {
                return Err(ctx.corrupt("libheif returned no pixel plane"));
            }
            let mut data = Vec::with_capacity(row * height as usize);
            for y in 0..height as usize {
                data.extend_from_slice(std::slice::from_raw_parts(plane.add(y * stride), row));
            }
            Ok(Bitmap::new(width, height, model, data))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_grows_with_bit_depth_and_covers_the_square_canvas() {
        let low = bytes_for(4032, 3024, false);
        let high = bytes_for(4032, 3024, true);
        assert!(low >= 4032 * 3024 * 20);
        assert!(high >= 4032 * 3024 * 32);
        assert!(high > low);
        let info = ImageInfo {
            format: crate::probe::InputFormat::Heif,
            width: 4032,
            height: 3024,
            channels: 3,
            jpeg_coding: None,
            adobe_transform: None,
        };
        assert!(full_bytes(&info) >= 4032 * 4032 * 32);
    }
}

#[cfg(all(test, feature = "heif"))]
mod libheif_tests {
    use super::*;
    use crate::bitmap::ColorModel;
    use crate::decode::Decoded;
    use crate::orient::Orientation;
    use crate::probe::{probe, InputFormat};
    use crate::{Error, Limits};

    use super::super::formats_corpus as corpus;

    fn decode_full(name: &str, shrink: u32) -> (ImageInfo, Decoded) {
        let data = corpus(name);
        let info = probe(&data, &Limits::default()).expect(name);
        let decoded = decode(&data, &info, shrink, &Limits::default()).expect(name);
        (info, decoded)
    }

    #[test]
    fn corpus_files_decode_at_their_displayed_size() {
        for (name, format, w, h, model) in [
            (
                "derived_heic_8bit_q50_Kite.heic",
                InputFormat::Heif,
                2560,
                1600,
                ColorModel::Rgb,
            ),
            (
                "derived_heic_10bit_coffee.heic",
                InputFormat::Heif,
                600,
                400,
                ColorModel::Rgb,
            ),
            (
                "libheifrs_alpha.heif",
                InputFormat::Heif,
                256,
                256,
                ColorModel::Rgba,
            ),
            (
                "libheifrs_test.heic",
                InputFormat::Heif,
                1652,
                1791,
                ColorModel::Rgb,
            ),
            (
                "derived_avif_10bit_444_coffee.avif",
                InputFormat::Avif,
                600,
                400,
                ColorModel::Rgb,
            ),
            (
                "derived_avif_alpha_420_astronaut.avif",
                InputFormat::Avif,
                512,
                512,
                ColorModel::Rgba,
            ),
            (
                "kimageformats_avif_rgba.avif",
                InputFormat::Avif,
                32,
                32,
                ColorModel::Rgba,
            ),
            (
                "kimageformats_avif_rotated090_left-to-right.avif",
                InputFormat::Avif,
                480,
                160,
                ColorModel::Rgb,
            ),
            (
                "libheifrs_grid.heif",
                InputFormat::Avif,
                960,
                720,
                ColorModel::Rgb,
            ),
        ] {
            let (info, decoded) = decode_full(name, 1);
            assert_eq!(
                (info.format, info.width, info.height),
                (format, w, h),
                "{name}"
            );
            let b = &decoded.bitmap;
            assert_eq!((b.width, b.height, b.model), (w, h, model), "{name}");
            assert_eq!(b.data.len(), (w * h) as usize * model.channels(), "{name}");
            assert_eq!(decoded.orientation, Orientation::default(), "{name}");
        }
    }

    #[test]
    fn irot_is_applied_once_and_exif_orientation_never() {
        for name in [
            "derived_heic_irot270_exif6_truck.heic",
            "derived_heic_irot_exif6_truck.heic",
        ] {
            let (info, decoded) = decode_full(name, 2);
            assert_eq!((info.width, info.height), (768, 512), "{name}");
            assert!(decoded.bitmap.width >= 384 && decoded.bitmap.height >= 256);
            assert_eq!(
                decoded.bitmap.width * 512,
                decoded.bitmap.height * 768,
                "{name}"
            );
            assert_eq!(decoded.orientation, Orientation::default(), "{name}");
        }
    }

    #[test]
    fn icc_profile_is_returned_and_nclx_is_none() {
        let (_, kite) = decode_full("derived_heic_8bit_q50_Kite.heic", 1);
        assert!(kite.icc.is_some_and(|icc| icc.len() > 128));
        let (_, coffee) = decode_full("derived_avif_10bit_444_coffee.avif", 1);
        assert!(coffee.icc.is_none());
    }

    #[test]
    fn truncated_files_give_typed_errors() {
        for name in [
            "derived_bad_trunc60_avif_ColorfulCups.avif",
            "derived_bad_trunc60_heic_Kite.heic",
        ] {
            let data = corpus(name);
            let err = probe(&data, &Limits::default())
                .and_then(|info| decode(&data, &info, 1, &Limits::default()).map(|_| ()))
                .expect_err(name);
            assert!(
                matches!(err, Error::Truncated { .. } | Error::Corrupt { .. }),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn image_sequence_is_ok_or_a_typed_error() {
        let data = corpus("libheifrs_star-8bpc.avifs");
        match probe(&data, &Limits::default()) {
            Ok(info) => match decode(&data, &info, 1, &Limits::default()) {
                Ok(d) => assert_eq!((d.bitmap.width, d.bitmap.height), (159, 159)),
                Err(e) => assert_ne!(e.kind(), crate::ErrorKind::Internal, "{e}"),
            },
            Err(e) => assert_ne!(e.kind(), crate::ErrorKind::Internal, "{e}"),
        }
    }

    /// Every prefix length (coarsely) and single-byte damage across the header: a typed error
    /// or an image, never a panic or an internal error.
    #[test]
    fn hostile_prefixes_and_damage_never_panic() {
        for name in [
            "libheifrs_alpha.heif",
            "kimageformats_avif_rgba.avif",
            "libheifrs_grid.heif",
        ] {
            let data = corpus(name);
            let mut inputs: Vec<Vec<u8>> = (0..data.len())
                .step_by((data.len() / 97).max(1))
                .map(|n| data[..n].to_vec())
                .collect();
            for at in (0..data.len().min(1200)).step_by(7) {
                let mut damaged = data.clone();
                damaged[at] ^= 0xa5;
                inputs.push(damaged);
            }
            for input in inputs {
                let result = probe(&input, &Limits::default()).and_then(|info| {
                    let _ = decode_bytes(&input, &info, 2);
                    decode(&input, &info, 2, &Limits::default()).map(|_| ())
                });
                if let Err(e) = result {
                    assert_ne!(e.kind(), crate::ErrorKind::Internal, "{name}: {e}");
                }
            }
        }
    }

    /// `libheifrs_grid.heif`'s grid box (2×2 tiles of 480×360 onto 960×720) sits at byte 95:
    /// version, flags, rows − 1, columns − 1, then the canvas size as two u16.
    fn patched_grid(rows_minus_one: u8, cols_minus_one: u8, canvas: (u16, u16)) -> Vec<u8> {
        let mut data = corpus("libheifrs_grid.heif");
        assert_eq!(data[95..103], [0, 0, 1, 1, 0x03, 0xc0, 0x02, 0xd0]);
        data[97] = rows_minus_one;
        data[98] = cols_minus_one;
        data[99..101].copy_from_slice(&canvas.0.to_be_bytes());
        data[101..103].copy_from_slice(&canvas.1.to_be_bytes());
        data
    }

    #[test]
    fn a_grid_canvas_beyond_the_declared_size_is_refused_before_allocation() {
        // 30000×30000 would be 5.4 GB of 16-bit RGB planes; ispe still says 960×720.
        let data = patched_grid(1, 1, (30000, 30000));
        let info = probe(&data, &Limits::default()).unwrap();
        assert_eq!((info.width, info.height), (960, 720));
        let err = decode(&data, &info, 1, &Limits::default())
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        // Refused by the side limit set from the declared size, not by libheif's default.
        assert!(err.to_string().contains("961x961"), "{err}");
    }

    #[test]
    fn a_grid_of_65536_tiles_with_four_is_a_typed_error() {
        // 256×256 tiles (the most the box can say) of which the file has 4.
        let data = patched_grid(255, 255, (960, 720));
        let result = probe(&data, &Limits::default())
            .and_then(|info| decode(&data, &info, 1, &Limits::default()).map(|_| ()));
        let err = result.unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { .. } | Error::Truncated { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn embedded_thumbnail_is_used_when_large_enough() {
        // 1652×1791 with a thumbnail item; at a shrink of 13 the target is 128×138.
        let data = corpus("libheifrs_test.heic");
        let info = probe(&data, &Limits::default()).unwrap();
        let small = decode(&data, &info, 13, &Limits::default()).unwrap().bitmap;
        assert!(
            small.width >= 128 && small.height >= 138,
            "{}x{}",
            small.width,
            small.height
        );
        assert!(small.width < 1652, "the thumbnail, not the primary image");
        let bytes = decode_bytes(&data, &info, 13);
        assert!(bytes.planned < bytes.full);
        // At a shrink of 2 (826×896) the thumbnail is too small: the primary image.
        let large = decode(&data, &info, 2, &Limits::default()).unwrap().bitmap;
        assert_eq!((large.width, large.height), (1652, 1791));
        assert_eq!(decode_bytes(&data, &info, 2).planned, bytes.full);
    }

    #[test]
    fn decode_is_refused_over_the_allowance_with_the_bound_it_needs() {
        let data = corpus("derived_heic_8bit_q50_Kite.heic");
        let info = probe(&data, &Limits::default()).unwrap();
        let bytes = decode_bytes(&data, &info, 1);
        assert!(bytes.planned <= bytes.full);
        assert!(bytes.full >= 2560 * 1600 * 20);
        let tight = Limits {
            max_decode_bytes: bytes.full - 1,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&data, &info, 1, &tight),
            Err(Error::OverBudget { .. })
        ));
        let enough = Limits {
            max_decode_bytes: bytes.full,
            ..Limits::default()
        };
        assert!(decode(&data, &info, 1, &enough).is_ok());
    }
}
