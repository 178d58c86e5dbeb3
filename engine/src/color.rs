//! Colour: embedded ICC profiles (RGB, gray, CMYK) to sRGB with moxcms; CMYK without a
//! profile through the embedded FOGRA39 profile. Runs on the reduced image, where it is cheap.

use std::sync::OnceLock;

use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

use crate::bitmap::{Bitmap, ColorModel};

/// Standard CMYK profile for CMYK/YCCK without an embedded one (see `profiles/README.md`).
const DEFAULT_CMYK_PROFILE: &[u8] = include_bytes!("../profiles/cmyk-fogra39.icc");

fn srgb() -> &'static ColorProfile {
    static SRGB: OnceLock<ColorProfile> = OnceLock::new();
    SRGB.get_or_init(ColorProfile::new_srgb)
}

fn default_cmyk() -> Option<&'static ColorProfile> {
    static CMYK: OnceLock<Option<ColorProfile>> = OnceLock::new();
    CMYK.get_or_init(|| ColorProfile::new_from_slice(DEFAULT_CMYK_PROFILE).ok())
        .as_ref()
}

/// Converts `bitmap` to sRGB (Gray and Gray+alpha stay gray when there is no profile; CMYK
/// always becomes RGB). A profile that is unreadable or does not match the pixel layout is
/// ignored (pixels are then taken as sRGB), as browsers do.
pub(crate) fn to_srgb(bitmap: Bitmap, icc: Option<&[u8]>) -> Bitmap {
    let embedded = icc.and_then(|bytes| ColorProfile::new_from_slice(bytes).ok());
    let expected = match bitmap.model {
        ColorModel::Gray | ColorModel::GrayAlpha => DataColorSpace::Gray,
        ColorModel::Rgb | ColorModel::Rgba => DataColorSpace::Rgb,
        ColorModel::Cmyk => DataColorSpace::Cmyk,
    };
    let profile = match embedded.as_ref() {
        Some(p) if p.color_space == expected => Some(p),
        _ if bitmap.model == ColorModel::Cmyk => default_cmyk(),
        _ => None,
    };
    let Some(profile) = profile else {
        return match bitmap.model {
            ColorModel::Cmyk => naive_cmyk_to_rgb(bitmap),
            _ => bitmap,
        };
    };
    let (src_layout, dst_layout, dst_model) = match bitmap.model {
        ColorModel::Gray => (Layout::Gray, Layout::Rgb, ColorModel::Rgb),
        ColorModel::GrayAlpha => (Layout::GrayAlpha, Layout::Rgba, ColorModel::Rgba),
        ColorModel::Rgb => (Layout::Rgb, Layout::Rgb, ColorModel::Rgb),
        ColorModel::Rgba => (Layout::Rgba, Layout::Rgba, ColorModel::Rgba),
        // moxcms takes 8-bit CMYK in the Rgba layout.
        ColorModel::Cmyk => (Layout::Rgba, Layout::Rgb, ColorModel::Rgb),
    };
    let transform =
        profile.create_transform_8bit(src_layout, srgb(), dst_layout, TransformOptions::default());
    let Ok(transform) = transform else {
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
        assert!(default_cmyk().is_some());
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
