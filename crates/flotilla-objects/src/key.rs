//! Validated object keys and the layout prefixes (`uploads/`, `processed/`, `resources/`).

use std::fmt;

use crate::ObjectsError;

/// Longest key accepted, in bytes (the S3 limit).
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest segment produced by [`ObjectKey::sanitize_segment`], in bytes (file systems allow 255).
pub const MAX_SEGMENT_BYTES: usize = 200;
/// Longest extension kept when a long name is shortened, dot included.
const MAX_KEPT_EXTENSION: usize = 16;
/// Name used when sanitising leaves nothing.
const EMPTY_NAME_REPLACEMENT: &str = "file";

/// Prefix for originals as uploaded.
pub const UPLOADS_PREFIX: &str = "uploads";
/// Prefix for pipeline outputs (renditions, transcripts, posters).
pub const PROCESSED_PREFIX: &str = "processed";
/// Prefix for static inputs such as logos, intros and watermarks.
pub const RESOURCES_PREFIX: &str = "resources";

/// A validated relative key: segments separated by `/`, none empty, `.` or `..`; no backslash, no `#`,
/// no control character, no leading `/`, at most [`MAX_KEY_BYTES`] bytes.
///
/// `#` is refused because the local backend reserves `name#123` for its staging files; refusing it everywhere
/// keeps the two backends interchangeable.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `s` as a key; the error names the rule that failed.
    pub fn parse(s: &str) -> Result<Self, ObjectsError> {
        check_key(s).map_err(|reason| ObjectsError::InvalidKey {
            key: printable(s),
            reason,
        })?;
        Ok(Self(s.to_owned()))
    }

    /// `uploads/<asset>/<file name>`; both parts are sanitised, so the key always stays in the asset's folder.
    pub fn upload(asset_id: &str, file_name: &str) -> Self {
        Self::from_segments(&[
            UPLOADS_PREFIX,
            &Self::sanitize_segment(asset_id),
            &Self::sanitize_segment(file_name),
        ])
    }

    /// `processed/<asset>/<name>`; `name` may have sub-folders (`hls/seg1.ts`), each segment sanitised and
    /// segments that sanitise to nothing (`..`, empty) dropped.
    pub fn processed(asset_id: &str, name: &str) -> Self {
        let mut segments = vec![
            PROCESSED_PREFIX.to_owned(),
            Self::sanitize_segment(asset_id),
        ];
        segments.extend(
            name.split(['/', '\\'])
                .filter(|part| !part.trim_start_matches('.').is_empty())
                .map(Self::sanitize_segment),
        );
        if segments.len() == 2 {
            segments.push(EMPTY_NAME_REPLACEMENT.to_owned());
        }
        Self(segments.join("/"))
    }

    /// `resources/<name>`; resources are named by operators, so a bad name is refused rather than rewritten.
    pub fn resource(name: &str) -> Result<Self, ObjectsError> {
        Self::parse(&format!("{RESOURCES_PREFIX}/{name}"))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key `self/name`, validated.
    pub fn join(&self, name: &str) -> Result<Self, ObjectsError> {
        Self::parse(&format!("{}/{name}", self.0))
    }

    /// Makes one key segment out of untrusted text: keeps `[A-Za-z0-9._-]`, replaces anything else with `_`,
    /// strips leading dots, caps the length at [`MAX_SEGMENT_BYTES`] (keeping a short extension) and never
    /// returns an empty string.
    pub fn sanitize_segment(raw: &str) -> String {
        let replaced: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let trimmed = replaced.trim_start_matches('.');
        let capped = cap_keeping_extension(trimmed);
        if capped.is_empty() {
            EMPTY_NAME_REPLACEMENT.to_owned()
        } else {
            capped
        }
    }

    fn from_segments(segments: &[&str]) -> Self {
        Self(segments.join("/"))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({:?})", self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn check_key(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("key is empty");
    }
    if s.len() > MAX_KEY_BYTES {
        return Err("key is longer than 1024 bytes");
    }
    if s.starts_with('/') {
        return Err("key must be relative (no leading '/')");
    }
    if let Some(bad) = s
        .chars()
        .find(|c| c.is_control() || matches!(c, '\\' | '#'))
    {
        return Err(match bad {
            '\\' => "key contains a backslash",
            '#' => "key contains '#'",
            _ => "key contains a control character",
        });
    }
    for segment in s.split('/') {
        match segment {
            "" => return Err("key has an empty segment"),
            "." | ".." => return Err("key has a '.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Shortens an ASCII name to [`MAX_SEGMENT_BYTES`], keeping its extension when that is short.
fn cap_keeping_extension(name: &str) -> String {
    if name.len() <= MAX_SEGMENT_BYTES {
        return name.to_owned();
    }
    let extension = name
        .rfind('.')
        .map(|dot| &name[dot..])
        .filter(|ext| ext.len() <= MAX_KEPT_EXTENSION)
        .unwrap_or("");
    let stem = &name[..MAX_SEGMENT_BYTES - extension.len()];
    format!("{stem}{extension}")
}

/// A key as it may appear in an error message: control characters escaped, length capped.
fn printable(s: &str) -> String {
    const MAX_SHOWN: usize = 120;
    let escaped: String = s.chars().flat_map(char::escape_debug).collect();
    match escaped.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_ordinary_keys() {
        for key in ["a", "uploads/x/photo.jpg", "a b/ü%20.txt", "a/b/c/d.e.f"] {
            assert_eq!(ObjectKey::parse(key).unwrap().as_str(), key);
        }
    }

    #[test]
    fn parse_refuses_escapes_and_odd_characters() {
        let long = "a".repeat(MAX_KEY_BYTES + 1);
        for key in [
            "",
            "../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "a/..",
            "a\\b",
            "a/",
            "a\u{0}b",
            "a\nb",
            "x#1",
            &long,
        ] {
            let err = ObjectKey::parse(key).unwrap_err();
            assert_eq!(err.code(), "invalid_key", "{key:?}");
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn upload_sanitises_the_file_name_into_the_asset_folder() {
        let key = ObjectKey::upload("a1", "../../etc/passwd");
        assert_eq!(key.as_str(), "uploads/a1/_.._etc_passwd");
        assert_eq!(
            ObjectKey::upload("../evil", "x").as_str(),
            "uploads/_evil/x"
        );
        assert_eq!(ObjectKey::upload("a1", "...").as_str(), "uploads/a1/file");
        assert_eq!(ObjectKey::upload("a1", "").as_str(), "uploads/a1/file");
        assert_eq!(
            ObjectKey::upload("a1", "Été 2024 (1).JPG").as_str(),
            "uploads/a1/_t__2024__1_.JPG"
        );
        assert_eq!(
            ObjectKey::upload("a1", ".bashrc").as_str(),
            "uploads/a1/bashrc"
        );
    }

    #[test]
    fn long_names_are_capped_and_keep_their_extension() {
        let name = format!("{}.webp", "x".repeat(400));
        let segment = ObjectKey::sanitize_segment(&name);
        assert_eq!(segment.len(), MAX_SEGMENT_BYTES);
        assert!(segment.ends_with(".webp"));
    }

    #[test]
    fn processed_keeps_sub_folders_but_never_escapes() {
        assert_eq!(
            ObjectKey::processed("a1", "hls/seg001.ts").as_str(),
            "processed/a1/hls/seg001.ts"
        );
        assert_eq!(
            ObjectKey::processed("a1", "../../x/./y").as_str(),
            "processed/a1/x/y"
        );
        assert_eq!(
            ObjectKey::processed("a1", "..").as_str(),
            "processed/a1/file"
        );
        for name in ["../../x", "a\\..\\b", "/abs", "."] {
            let key = ObjectKey::processed("a1", name);
            assert!(ObjectKey::parse(key.as_str()).is_ok(), "{key:?}");
            assert!(key.as_str().starts_with("processed/a1/"), "{key:?}");
        }
    }

    #[test]
    fn resource_names_are_validated_not_rewritten() {
        assert_eq!(
            ObjectKey::resource("logos/flotilla.png").unwrap().as_str(),
            "resources/logos/flotilla.png"
        );
        assert_eq!(
            ObjectKey::resource("../x").unwrap_err().code(),
            "invalid_key"
        );
    }

    #[test]
    fn error_messages_escape_control_characters() {
        let err = ObjectKey::parse("a\u{1b}[31mb").unwrap_err();
        assert!(!err.to_string().contains('\u{1b}'));
    }
}
