//! The version this binary reports: `orrery version`, the API's `/info`, `orrery status`, the
//! pages' footer and the state it writes all read it here.
//!
//! It is `Cargo.toml`'s version, kept in a fixed-size *stamp* in the binary so a release tool can
//! set it after the build without recompiling (as Go's `-ldflags -X` does):
//! `packaging/stamp-version.sh BINARY VERSION`. The installer's tests use that to make a
//! "newer" and an "older" copy of one build and prove that upgrades keep everything and
//! downgrades are refused.

/// Where the stamp starts: the marker the stamping tool looks for (it must occur once).
pub const STAMP_MARKER: &str = "ORRERY_VERSION_STAMP:";

/// The marker's length, computed at compile time (so the marker itself is not kept as a second
/// string in the binary: the stamping tool wants exactly one).
const STAMP_MARKER_LEN: usize = STAMP_MARKER.len();

/// Bytes for the marker plus the version (NUL-padded).
pub const STAMP_LEN: usize = 64;

/// The stamp itself: the marker, then the version, then NULs.
static STAMP: [u8; STAMP_LEN] = stamp(env!("CARGO_PKG_VERSION"));

const fn stamp(version: &str) -> [u8; STAMP_LEN] {
    let marker = STAMP_MARKER.as_bytes();
    let version = version.as_bytes();
    let mut out = [0u8; STAMP_LEN];
    let mut i = 0;
    while i < marker.len() {
        out[i] = marker[i];
        i += 1;
    }
    let mut j = 0;
    while j < version.len() && i < STAMP_LEN - 1 {
        out[i] = version[j];
        i += 1;
        j += 1;
    }
    out
}

/// The version, e.g. `0.1.0`.
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        // `black_box`: the bytes must be read from the binary at run time, not folded into the
        // code at compile time, or a stamped binary would still say the built version.
        let stamp: &'static [u8; STAMP_LEN] = std::hint::black_box(&STAMP);
        let body = &stamp[STAMP_MARKER_LEN..];
        let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
        std::str::from_utf8(&body[..end])
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or(env!("CARGO_PKG_VERSION"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unstamped_binary_says_the_crate_version() {
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
        assert!(STAMP.starts_with(STAMP_MARKER.as_bytes()));
        assert_eq!(STAMP[STAMP_LEN - 1], 0, "the stamp always ends in a NUL");
    }
}
