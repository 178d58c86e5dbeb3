//! Header first: sniff the format from magic bytes and read the dimensions without decoding,
//! so limits are enforced before any large allocation.

use crate::{Error, Limits};

/// A decodable input format, sniffed from magic bytes (never from a name or content type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InputFormat {
    /// JPEG (JFIF, Exif, Adobe, MPO first frame).
    Jpeg,
    /// PNG.
    Png,
    /// WebP: lossy, lossless, alpha; the first frame of an animation.
    Webp,
    /// GIF: the first frame on its logical screen.
    Gif,
    /// TIFF (and BigTIFF): the first page, or a reduced-resolution page large enough.
    Tiff,
    /// BMP (Windows bitmap), including RLE and palettes.
    Bmp,
    /// HEIF with HEVC (HEIC, iPhone photos); needs the `heif` feature.
    Heif,
    /// AVIF (HEIF with AV1); needs the `heif` feature.
    Avif,
}

impl InputFormat {
    /// Lower-case name, as used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Jpeg => "jpeg",
            InputFormat::Png => "png",
            InputFormat::Webp => "webp",
            InputFormat::Gif => "gif",
            InputFormat::Tiff => "tiff",
            InputFormat::Bmp => "bmp",
            InputFormat::Heif => "heif",
            InputFormat::Avif => "avif",
        }
    }

    /// MIME type, for HTTP and Cloud Storage `Content-Type`.
    pub fn mime_type(self) -> &'static str {
        match self {
            InputFormat::Jpeg => "image/jpeg",
            InputFormat::Png => "image/png",
            InputFormat::Webp => "image/webp",
            InputFormat::Gif => "image/gif",
            InputFormat::Tiff => "image/tiff",
            InputFormat::Bmp => "image/bmp",
            InputFormat::Heif => "image/heic",
            InputFormat::Avif => "image/avif",
        }
    }
}

/// JPEG coding process, from the SOF marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegCoding {
    /// SOF0/SOF1: sequential Huffman.
    Baseline,
    /// SOF2: progressive Huffman.
    Progressive,
    /// SOF9: sequential arithmetic coding.
    Arithmetic,
    /// SOF10: progressive arithmetic coding.
    ArithmeticProgressive,
    /// SOF3, SOF11 and the hierarchical processes: lossless or hierarchical, not decoded.
    Other,
}

impl JpegCoding {
    /// Progressive, Huffman or arithmetic: the file's scans refine the whole image in turn.
    pub fn is_progressive(self) -> bool {
        matches!(
            self,
            JpegCoding::Progressive | JpegCoding::ArithmeticProgressive
        )
    }

    /// Arithmetic-coded, sequential or progressive.
    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            JpegCoding::Arithmetic | JpegCoding::ArithmeticProgressive
        )
    }
}

/// What the header says, read without decoding any pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// Sniffed format.
    pub format: InputFormat,
    /// Stored width (before EXIF orientation).
    pub width: u32,
    /// Stored height (before EXIF orientation).
    pub height: u32,
    /// Colour channels stored in the file (1 gray, 2 gray+alpha, 3 colour, 4 RGBA or CMYK).
    pub channels: u8,
    /// JPEG only: coding process.
    pub jpeg_coding: Option<JpegCoding>,
    /// JPEG only: Adobe APP14 transform flag (0 = none/CMYK, 1 = YCbCr, 2 = YCCK), if present.
    pub adobe_transform: Option<u8>,
}

impl ImageInfo {
    /// Refuses, from the header alone, what no decoder here reads: callers that store an
    /// image for later (an upload) can refuse it now rather than fail it later.
    pub fn check_decodable(&self) -> Result<(), Error> {
        if self.jpeg_coding == Some(JpegCoding::Other) {
            return Err(Error::Unsupported(
                "lossless or hierarchical JPEG (DCT-based sequential and progressive only)".into(),
            ));
        }
        crate::decode::check_decodable(self)
    }

    /// Pixel count declared by the header.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Upper bound of the bytes a full-size decode of this image holds at once, from the
    /// header alone: the decoded pixels, decoder rows, and for a JPEG every coefficient (as a
    /// progressive file needs). The engine's shrink-on-load often needs far less;
    /// [`crate::stages::decode_bytes`] reads the scan layout and the path for a tighter bound.
    pub fn decode_budget_bytes(&self) -> u64 {
        crate::decode::full_decode_bytes(self)
    }
}

/// Sniffs the format and reads the header. Refuses what exceeds `limits` with a typed error.
pub fn probe(data: &[u8], limits: &Limits) -> Result<ImageInfo, Error> {
    if data.len() as u64 > limits.max_input_bytes {
        return Err(Error::InputTooLarge {
            size: data.len() as u64,
            limit: limits.max_input_bytes,
        });
    }
    let info = match sniff(data)? {
        InputFormat::Jpeg => jpeg_header(data)?,
        InputFormat::Png => png_header(data)?,
        other => crate::decode::header(other, data)?,
    };
    if info.width == 0 || info.height == 0 {
        return Err(Error::Corrupt {
            format: info.format.name(),
            detail: format!("zero dimension {}x{}", info.width, info.height),
        });
    }
    limits.check_dimensions(info.width, info.height)?;
    Ok(info)
}

/// Identifies the format from its magic bytes.
pub(crate) fn sniff(data: &[u8]) -> Result<InputFormat, Error> {
    const FORMATS: &[(&[u8], usize, InputFormat)] = &[
        (b"\xff\xd8\xff", 0, InputFormat::Jpeg),
        (b"\x89PNG\r\n\x1a\n", 0, InputFormat::Png),
        (b"GIF87a", 0, InputFormat::Gif),
        (b"GIF89a", 0, InputFormat::Gif),
        (b"II*\0", 0, InputFormat::Tiff),
        (b"MM\0*", 0, InputFormat::Tiff),
        (b"II+\0", 0, InputFormat::Tiff),
        (b"MM\0+", 0, InputFormat::Tiff),
    ];
    const OTHERS: &[(&[u8], usize, &str)] = &[
        (b"\0\0\0\x0cjP  ", 0, "JPEG 2000"),
        (b"\xff\x0a", 0, "JPEG XL"),
        (b"\0\0\0\x0cJXL ", 0, "JPEG XL"),
        (b"%PDF", 0, "PDF"),
        (b"<svg", 0, "SVG"),
        (b"<?xml", 0, "XML/SVG"),
    ];
    if data.is_empty() {
        return Err(Error::Unsupported("empty input (0 bytes)".into()));
    }
    for (magic, offset, format) in FORMATS {
        if data.get(*offset..offset + magic.len()) == Some(magic) {
            return Ok(*format);
        }
    }
    if data.starts_with(b"RIFF") && data.get(8..12) == Some(b"WEBP") {
        return Ok(InputFormat::Webp);
    }
    if is_bmp(data) {
        return Ok(InputFormat::Bmp);
    }
    if let Some(format) = heif_brand(data) {
        return Ok(format);
    }
    for (magic, offset, name) in OTHERS {
        if data.get(*offset..offset + magic.len()) == Some(magic) {
            return Err(Error::Unsupported(format!("{name} input is not supported")));
        }
    }
    Err(Error::Unsupported(
        "not an image format thumbd reads (unrecognised magic bytes)".into(),
    ))
}

/// "BM" followed, at offset 14, by one of the DIB header sizes Windows and OS/2 define: two
/// bytes alone match too much text.
fn is_bmp(data: &[u8]) -> bool {
    let dib = data
        .get(14..18)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    data.starts_with(b"BM") && matches!(dib, Some(12 | 16 | 40 | 52 | 56 | 64 | 108 | 124))
}

/// AVIF or HEIC from an ISO-BMFF `ftyp` box: its major and compatible brands. `mif1`/`msf1`
/// alone (the generic HEIF brands) are HEIF.
fn heif_brand(data: &[u8]) -> Option<InputFormat> {
    if data.get(4..8) != Some(b"ftyp") {
        return None;
    }
    let size = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let end = size.clamp(16, 4096).min(data.len());
    // The major brand at 8, the minor version at 12, the compatible brands from 16.
    let brands: Vec<&[u8]> = std::iter::once(data.get(8..12)?)
        .chain(data.get(16..end).unwrap_or(&[]).chunks_exact(4))
        .collect();
    let any = |set: &[&[u8]]| brands.iter().any(|b| set.contains(b));
    if any(&[b"avif", b"avis"]) {
        Some(InputFormat::Avif)
    } else if any(&[
        b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
    ]) {
        Some(InputFormat::Heif)
    } else {
        None
    }
}

fn png_header(data: &[u8]) -> Result<ImageInfo, Error> {
    // Signature (8) + IHDR length (4) + "IHDR" (4) + 13 bytes of IHDR data.
    let truncated = || Error::Truncated {
        format: "png",
        detail: "file ends inside the IHDR header".into(),
    };
    let ihdr = data.get(8..29).ok_or_else(truncated)?;
    if &ihdr[4..8] != b"IHDR" {
        return Err(Error::Corrupt {
            format: "png",
            detail: "first chunk is not IHDR".into(),
        });
    }
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let channels = match ihdr[17] {
        0 => 1,
        2 => 3,
        3 => 3,
        4 => 2,
        6 => 4,
        other => {
            return Err(Error::Corrupt {
                format: "png",
                detail: format!("invalid colour type {other}"),
            })
        }
    };
    Ok(ImageInfo {
        format: InputFormat::Png,
        width: be32(&ihdr[8..12]),
        height: be32(&ihdr[12..16]),
        channels,
        jpeg_coding: None,
        adobe_transform: None,
    })
}

/// Walks the JPEG markers up to the first SOF. Tolerates junk between segments, as libjpeg does.
fn jpeg_header(data: &[u8]) -> Result<ImageInfo, Error> {
    let truncated = || Error::Truncated {
        format: "jpeg",
        detail: "file ends before the frame header (SOF)".into(),
    };
    let mut pos = 2;
    let mut adobe_transform = None;
    loop {
        // Find the next 0xFF, skipping extraneous bytes, then skip fill bytes.
        while *data.get(pos).ok_or_else(truncated)? != 0xFF {
            pos += 1;
        }
        while *data.get(pos).ok_or_else(truncated)? == 0xFF {
            pos += 1;
        }
        let marker = data[pos];
        pos += 1;
        match marker {
            0x00 | 0x01 | 0xD0..=0xD8 => continue, // stuffing, TEM, RSTn, SOI: no length
            0xD9 | 0xDA => {
                return Err(Error::Corrupt {
                    format: "jpeg",
                    detail: "no frame header (SOF) before the image data".into(),
                })
            }
            _ => {}
        }
        let len_bytes = data.get(pos..pos + 2).ok_or_else(truncated)?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        if len < 2 {
            return Err(Error::Corrupt {
                format: "jpeg",
                detail: format!("segment length {len} for marker {marker:#04x}"),
            });
        }
        let segment = data.get(pos + 2..pos + len).ok_or_else(truncated)?;
        match marker {
            0xEE if segment.len() >= 12 && segment.starts_with(b"Adobe") => {
                adobe_transform = Some(segment[11]);
            }
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if segment.len() < 6 {
                    return Err(truncated());
                }
                let coding = match marker {
                    0xC0 | 0xC1 => JpegCoding::Baseline,
                    0xC2 => JpegCoding::Progressive,
                    0xC9 => JpegCoding::Arithmetic,
                    0xCA => JpegCoding::ArithmeticProgressive,
                    _ => JpegCoding::Other,
                };
                let height = u32::from(u16::from_be_bytes([segment[1], segment[2]]));
                let width = u32::from(u16::from_be_bytes([segment[3], segment[4]]));
                if height == 0 {
                    return Err(Error::Unsupported(
                        "JPEG with height defined by a DNL marker".into(),
                    ));
                }
                return Ok(ImageInfo {
                    format: InputFormat::Jpeg,
                    width,
                    height,
                    channels: segment[5],
                    jpeg_coding: Some(coding),
                    adobe_transform,
                });
            }
            _ => {}
        }
        pos += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_magic_not_name() {
        assert_eq!(sniff(b"\xff\xd8\xff\xe0").unwrap(), InputFormat::Jpeg);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n").unwrap(), InputFormat::Png);
        assert_eq!(sniff(b"GIF89a....").unwrap(), InputFormat::Gif);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(), InputFormat::Webp);
        assert_eq!(sniff(b"MM\0*\0\0\0\x08").unwrap(), InputFormat::Tiff);
        let bmp = b"BM\0\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0";
        assert_eq!(sniff(bmp).unwrap(), InputFormat::Bmp);
        assert!(sniff(b"BMW is a car maker, not a bitmap").is_err());
        let ftyp = |major: &[u8], compatible: &[u8]| {
            let mut b = ((16 + compatible.len()) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(b"ftyp");
            b.extend_from_slice(major);
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(compatible);
            b
        };
        assert_eq!(
            sniff(&ftyp(b"heic", b"mif1heic")).unwrap(),
            InputFormat::Heif
        );
        assert_eq!(
            sniff(&ftyp(b"mif1", b"mif1heic")).unwrap(),
            InputFormat::Heif
        );
        assert_eq!(
            sniff(&ftyp(b"avif", b"mif1avif")).unwrap(),
            InputFormat::Avif
        );
        assert_eq!(
            sniff(&ftyp(b"mif1", b"mif1miafavif")).unwrap(),
            InputFormat::Avif
        );
        assert!(
            sniff(&ftyp(b"isom", b"isomiso2mp41")).is_err(),
            "an MP4 video"
        );
        let pdf = sniff(b"%PDF-1.7").unwrap_err();
        assert!(pdf.to_string().contains("PDF"), "{pdf}");
        assert!(matches!(sniff(b""), Err(Error::Unsupported(_))));
        assert!(matches!(sniff(b"hello"), Err(Error::Unsupported(_))));
    }

    #[test]
    fn refuses_hostile_png_header_without_decoding() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&50_000u32.to_be_bytes());
        png.extend_from_slice(&50_000u32.to_be_bytes());
        png.extend_from_slice(&[1, 0, 0, 0, 0]);
        let err = probe(&png, &Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooManyPixels {
                    pixels: 2_500_000_000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn truncated_jpeg_header_is_typed() {
        let err = probe(b"\xff\xd8\xff\xe0\x00\x10JFIF", &Limits::default()).unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
    }

    #[test]
    fn input_size_limit() {
        let limits = Limits {
            max_input_bytes: 4,
            ..Limits::default()
        };
        let err = probe(b"\xff\xd8\xff\xe0\0\0", &limits).unwrap_err();
        assert!(matches!(err, Error::InputTooLarge { size: 6, limit: 4 }));
    }
}
