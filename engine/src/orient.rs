//! EXIF orientation: read the tag, then turn the (small) thumbnail upright, as browsers show it.

use crate::bitmap::Bitmap;

/// EXIF orientation 1–8 (TIFF tag 0x0112).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Orientation {
    /// 1: as stored.
    #[default]
    Normal,
    /// 2: mirrored left-right.
    FlipH,
    /// 3: rotated 180°.
    Rotate180,
    /// 4: mirrored top-bottom.
    FlipV,
    /// 5: mirrored along the main diagonal.
    Transpose,
    /// 6: needs a 90° clockwise turn.
    Rotate90,
    /// 7: mirrored along the anti-diagonal.
    Transverse,
    /// 8: needs a 90° counter-clockwise turn.
    Rotate270,
}

impl Orientation {
    /// Parses raw EXIF (a TIFF structure, with or without the `Exif\0\0` prefix). Unreadable
    /// or malformed EXIF means "as stored", as in browsers.
    pub(crate) fn from_exif(raw: &[u8]) -> Self {
        let raw = raw.strip_prefix(b"Exif\0\0").unwrap_or(raw);
        let reader = exif::Reader::new();
        let parsed = match reader.read_raw(raw.to_vec()) {
            Ok(exif) => exif,
            Err(exif::Error::PartialResult(partial)) => partial.into_inner().0,
            Err(_) => return Orientation::Normal,
        };
        parsed
            .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
            .and_then(|f| f.value.get_uint(0))
            .map_or(Orientation::Normal, Self::from_tag)
    }

    pub(crate) fn from_tag(value: u32) -> Self {
        match value {
            2 => Orientation::FlipH,
            3 => Orientation::Rotate180,
            4 => Orientation::FlipV,
            5 => Orientation::Transpose,
            6 => Orientation::Rotate90,
            7 => Orientation::Transverse,
            8 => Orientation::Rotate270,
            _ => Orientation::Normal,
        }
    }

    /// Whether the upright image has width and height swapped.
    pub(crate) fn swaps_axes(self) -> bool {
        matches!(
            self,
            Orientation::Transpose
                | Orientation::Rotate90
                | Orientation::Transverse
                | Orientation::Rotate270
        )
    }

    /// Returns the upright image.
    pub(crate) fn apply(self, src: Bitmap) -> Bitmap {
        if self == Orientation::Normal {
            return src;
        }
        let (w, h) = (src.width as usize, src.height as usize);
        let (ow, oh) = if self.swaps_axes() { (h, w) } else { (w, h) };
        let ch = src.model.channels();
        let mut out = vec![0u8; src.data.len()];
        for y in 0..oh {
            for x in 0..ow {
                let (sx, sy) = match self {
                    Orientation::Normal => (x, y),
                    Orientation::FlipH => (w - 1 - x, y),
                    Orientation::Rotate180 => (w - 1 - x, h - 1 - y),
                    Orientation::FlipV => (x, h - 1 - y),
                    Orientation::Transpose => (y, x),
                    Orientation::Rotate90 => (y, h - 1 - x),
                    Orientation::Transverse => (w - 1 - y, h - 1 - x),
                    Orientation::Rotate270 => (w - 1 - y, x),
                };
                let s = (sy * w + sx) * ch;
                let d = (y * ow + x) * ch;
                out[d..d + ch].copy_from_slice(&src.data[s..s + ch]);
            }
        }
        Bitmap::new(ow as u32, oh as u32, src.model, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitmap::ColorModel;

    /// 2×1 image [A B]; where does A end up for each orientation?
    #[test]
    fn every_orientation_moves_pixels_as_exif_specifies() {
        let src = Bitmap::new(2, 1, ColorModel::Gray, vec![1, 2]);
        let cases = [
            (1, (2, 1), vec![1, 2]),
            (2, (2, 1), vec![2, 1]),
            (3, (2, 1), vec![2, 1]),
            (4, (2, 1), vec![1, 2]),
            (5, (1, 2), vec![1, 2]),
            (6, (1, 2), vec![1, 2]),
            (7, (1, 2), vec![2, 1]),
            (8, (1, 2), vec![2, 1]),
        ];
        for (tag, (w, h), data) in cases {
            let out = Orientation::from_tag(tag).apply(src.clone());
            assert_eq!((out.width, out.height, out.data), (w, h, data), "tag {tag}");
        }
    }

    #[test]
    fn malformed_exif_is_normal() {
        assert_eq!(Orientation::from_exif(b"garbage"), Orientation::Normal);
        assert_eq!(Orientation::from_exif(b""), Orientation::Normal);
    }
}
