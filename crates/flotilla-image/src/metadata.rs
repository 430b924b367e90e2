//! EXIF metadata read with `kamadak-exif`: the orientation and a selection of readable tags.
//!
//! EXIF is untrusted metadata: a block that does not parse is ignored (orientation 1, no
//! tags) rather than failing an image whose pixels are fine, and values are length-capped.

use std::collections::BTreeMap;
use std::io::{BufRead, Seek};

use exif::{Exif, Field, In, Tag, Value};

/// Longest tag value kept, in characters; EXIF strings are attacker-controlled.
const MAX_VALUE_CHARS: usize = 256;

/// Tags copied into [`ImageInfo::exif`](crate::ImageInfo::exif), by their EXIF names.
const SELECTED_TAGS: &[Tag] = &[
    Tag::Make,
    Tag::Model,
    Tag::LensModel,
    Tag::Software,
    Tag::Artist,
    Tag::Copyright,
    Tag::ImageDescription,
    Tag::DateTime,
    Tag::DateTimeOriginal,
    Tag::OffsetTimeOriginal,
    Tag::ExposureTime,
    Tag::FNumber,
    Tag::PhotographicSensitivity,
    Tag::FocalLength,
    Tag::FocalLengthIn35mmFilm,
    Tag::Flash,
    Tag::GPSAltitude,
    Tag::GPSDateStamp,
];

/// What this crate takes from an image's EXIF block.
#[derive(Debug, Default)]
pub(crate) struct ExifSummary {
    /// EXIF orientation 1..=8; 1 when absent or invalid.
    pub(crate) orientation: u8,
    /// Selected tags, readable values.
    pub(crate) tags: BTreeMap<String, String>,
}

/// Reads the EXIF block of a JPEG, PNG, WebP or TIFF stream positioned at its start.
pub(crate) fn read_exif<R: BufRead + Seek>(reader: &mut R) -> ExifSummary {
    match exif::Reader::new().read_from_container(reader) {
        Ok(exif) => summarize(&exif),
        Err(_) => ExifSummary {
            orientation: 1,
            tags: BTreeMap::new(),
        },
    }
}

fn summarize(exif: &Exif) -> ExifSummary {
    let mut tags = BTreeMap::new();
    for &tag in SELECTED_TAGS {
        if let Some(field) = exif.get_field(tag, In::PRIMARY) {
            insert_capped(&mut tags, tag, readable_value(exif, field));
        }
    }
    for (tag, reference) in [
        (Tag::GPSLatitude, Tag::GPSLatitudeRef),
        (Tag::GPSLongitude, Tag::GPSLongitudeRef),
    ] {
        if let Some(degrees) = gps_degrees(exif, tag, reference) {
            insert_capped(&mut tags, tag, format!("{degrees:.6}"));
        }
    }
    ExifSummary {
        orientation: orientation(exif),
        tags,
    }
}

fn insert_capped(tags: &mut BTreeMap<String, String>, tag: Tag, value: String) {
    let value: String = value.chars().take(MAX_VALUE_CHARS).collect();
    if !value.is_empty() {
        tags.insert(tag.to_string(), value);
    }
}

fn orientation(exif: &Exif) -> u8 {
    exif.get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|field| field.value.get_uint(0))
        .and_then(|value| u8::try_from(value).ok())
        .filter(|value| (1..=8).contains(value))
        .unwrap_or(1)
}

/// ASCII values without the quotes `kamadak-exif` puts around them; others with units
/// ("1/125 s", "f/2.8").
fn readable_value(exif: &Exif, field: &Field) -> String {
    match &field.value {
        // Rendered as "2024-05-06 07:08:09".
        Value::Ascii(_) if matches!(field.tag, Tag::DateTime | Tag::DateTimeOriginal) => {
            field.display_value().to_string()
        }
        Value::Ascii(parts) => parts
            .iter()
            .map(|part| {
                String::from_utf8_lossy(part)
                    .trim_end_matches('\0')
                    .trim()
                    .to_owned()
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => field.display_value().with_unit(exif).to_string(),
    }
}

/// A GPS coordinate as signed decimal degrees (south and west negative).
fn gps_degrees(exif: &Exif, tag: Tag, reference: Tag) -> Option<f64> {
    let Value::Rational(parts) = &exif.get_field(tag, In::PRIMARY)?.value else {
        return None;
    };
    let [degrees, minutes, seconds] = parts.as_slice() else {
        return None;
    };
    let value = degrees.to_f64() + minutes.to_f64() / 60.0 + seconds.to_f64() / 3600.0;
    if !value.is_finite() {
        return None;
    }
    let negative = exif
        .get_field(reference, In::PRIMARY)
        .map(|field| field.display_value().to_string())
        .is_some_and(|r| r.contains('S') || r.contains('W'));
    Some(if negative { -value } else { value })
}
