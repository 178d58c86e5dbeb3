//! Colour: embedded ICC profiles (RGB, gray, CMYK) to sRGB with moxcms; CMYK without a
//! profile through the embedded FOGRA39 profile. Runs on the reduced image, where it is cheap.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use moxcms::{ColorProfile, DataColorSpace, Layout, Transform8BitExecutor, TransformOptions};

use crate::bitmap::{Bitmap, ColorModel};

/// Standard CMYK profile for CMYK/YCCK without an embedded one (see `profiles/README.md`).
const DEFAULT_CMYK_PROFILE: &[u8] = include_bytes!("../profiles/cmyk-fogra39.icc");

fn srgb() -> &'static ColorProfile {
    static SRGB: OnceLock<ColorProfile> = OnceLock::new();
    SRGB.get_or_init(ColorProfile::new_srgb)
}

/// Converts `bitmap` to sRGB (Gray and Gray+alpha stay gray when there is no profile; CMYK
/// always becomes RGB). A profile that is unreadable or does not match the pixel layout is
/// ignored (pixels are then taken as sRGB), as browsers do.
pub(crate) fn to_srgb(bitmap: Bitmap, icc: Option<&[u8]>) -> Bitmap {
    let (src_layout, dst_layout, dst_model) = match bitmap.model {
        ColorModel::Gray => (Layout::Gray, Layout::Rgb, ColorModel::Rgb),
        ColorModel::GrayAlpha => (Layout::GrayAlpha, Layout::Rgba, ColorModel::Rgba),
        ColorModel::Rgb => (Layout::Rgb, Layout::Rgb, ColorModel::Rgb),
        ColorModel::Rgba => (Layout::Rgba, Layout::Rgba, ColorModel::Rgba),
        // moxcms takes 8-bit CMYK in the Rgba layout.
        ColorModel::Cmyk => (Layout::Rgba, Layout::Rgb, ColorModel::Rgb),
    };
    let transform = match icc {
        Some(bytes) => cached_transform(bytes, bitmap.model, src_layout, dst_layout),
        None => None,
    };
    // CMYK without a usable embedded profile goes through the standard CMYK profile.
    let transform = transform.or_else(|| {
        (bitmap.model == ColorModel::Cmyk)
            .then(default_cmyk_transform)
            .flatten()
    });
    let Some(transform) = transform else {
        return match bitmap.model {
            ColorModel::Cmyk => naive_cmyk_to_rgb(bitmap),
            _ => bitmap,
        };
    };
    let pixels = bitmap.width as usize * bitmap.height as usize;
    let mut out = vec![0u8; pixels * dst_model.channels()];
    if transform.transform(&bitmap.data, &mut out).is_err() {
        return match bitmap.model {
            ColorModel::Cmyk => naive_cmyk_to_rgb(bitmap),
            _ => bitmap,
        };
    }
    Bitmap::new(bitmap.width, bitmap.height, dst_model, out)
}

type Transform = Arc<Transform8BitExecutor>;

thread_local! {
    /// Transforms by (profile bytes, layout). Building one costs up to tens of milliseconds for
    /// LUT profiles, far more than applying it to a thumbnail; uploads mostly share a handful
    /// of camera profiles. `None` remembers profiles that are unusable.
    static TRANSFORMS: RefCell<HashMap<(u64, u8), Option<Transform>>> = RefCell::new(HashMap::new());
}

/// Entries kept per thread before the cache is cleared (a few MB at most).
const MAX_CACHED_TRANSFORMS: usize = 32;

fn cached_transform(
    icc: &[u8],
    model: ColorModel,
    src_layout: Layout,
    dst_layout: Layout,
) -> Option<Transform> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    icc.hash(&mut hasher);
    let key = (hasher.finish(), src_layout as u8);
    TRANSFORMS.with_borrow_mut(|cache| {
        if let Some(hit) = cache.get(&key) {
            return hit.clone();
        }
        let transform = build_transform(icc, model, src_layout, dst_layout);
        if cache.len() >= MAX_CACHED_TRANSFORMS {
            cache.clear();
        }
        cache.insert(key, transform.clone());
        transform
    })
}

/// The transform through the standard CMYK profile, built once per process rather than once per
/// thread: moxcms samples the profile's 9⁴ A2B table on its own 17⁴ grid, about 145 M
/// instructions (as much as the LZW decode of a 0.5 MP CMYK TIFF), while applying it to a
/// thumbnail costs about 6 M.
fn default_cmyk_transform() -> Option<Transform> {
    static DEFAULT: OnceLock<Option<Transform>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            build_transform(
                DEFAULT_CMYK_PROFILE,
                ColorModel::Cmyk,
                Layout::Rgba,
                Layout::Rgb,
            )
        })
        .clone()
}

/// The 8-bit transform from `icc` (which must describe `model`'s colour space) to sRGB.
fn build_transform(
    icc: &[u8],
    model: ColorModel,
    src_layout: Layout,
    dst_layout: Layout,
) -> Option<Transform> {
    let expected = match model {
        ColorModel::Gray | ColorModel::GrayAlpha => DataColorSpace::Gray,
        ColorModel::Rgb | ColorModel::Rgba => DataColorSpace::Rgb,
        ColorModel::Cmyk => DataColorSpace::Cmyk,
    };
    ColorProfile::new_from_slice(icc)
        .ok()
        .filter(|profile| profile.color_space == expected)
        .and_then(|profile| {
            profile
                .create_transform_8bit(src_layout, srgb(), dst_layout, TransformOptions::default())
                .ok()
        })
}

/// Last resort when no CMYK profile can be built (should not happen: the default is embedded).
fn naive_cmyk_to_rgb(bitmap: Bitmap) -> Bitmap {
    let data = bitmap
        .data
        .chunks_exact(4)
        .flat_map(|p| {
            let k = 255 - u16::from(p[3]);
            [0, 1, 2].map(|i| ((255 - u16::from(p[i])) * k / 255) as u8)
        })
        .collect();
    Bitmap::new(bitmap.width, bitmap.height, ColorModel::Rgb, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cmyk_profile_parses_and_maps_paper_and_ink() {
        assert!(ColorProfile::new_from_slice(DEFAULT_CMYK_PROFILE).is_ok());
        // No ink → paper white; full K → near black; full cyan → blue-green.
        let cmyk = Bitmap::new(
            3,
            1,
            ColorModel::Cmyk,
            vec![0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0],
        );
        let rgb = to_srgb(cmyk, None);
        assert_eq!(rgb.model, ColorModel::Rgb);
        let px = |i: usize| &rgb.data[i * 3..i * 3 + 3];
        assert!(px(0).iter().all(|&v| v > 225), "paper {:?}", px(0));
        assert!(px(1).iter().all(|&v| v < 70), "black {:?}", px(1));
        let cyan = px(2);
        assert!(cyan[0] < 60 && cyan[2] > 180, "cyan {cyan:?}");
    }

    #[test]
    fn rgb_without_profile_is_untouched() {
        let b = Bitmap::new(1, 1, ColorModel::Rgb, vec![1, 2, 3]);
        assert_eq!(to_srgb(b.clone(), None), b);
        assert_eq!(to_srgb(b.clone(), Some(b"not a profile")), b);
    }
}
