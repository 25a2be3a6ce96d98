//! Durations (`10m`) and sizes (`2G`) as people write them in the config file.
//!
//! Both accept what The Littlest JupyterHub accepts (a bare number: seconds for durations,
//! bytes for sizes) and a short human form, and both write themselves back in a short
//! exact human form (`"10m"`, `"2G"`), so `orrery config get` and `show --effective` print what a person would
//! have typed.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Why a duration or size string was refused; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnitError {
    #[error(
        "invalid duration {0:?}: use a number of seconds or a number with s, m, h or d, \
         e.g. \"10m\" or \"1h30m\""
    )]
    Duration(String),
    #[error("duration {0:?} is too long")]
    DurationOverflow(String),
    #[error(
        "invalid size {0:?}: use a number of bytes or a number with K, M, G or T \
         (powers of 1024), e.g. \"512M\" or \"2G\""
    )]
    Size(String),
    #[error("size {0:?} is too large")]
    SizeOverflow(String),
}

// ---------------------------------------------------------------------------------------------
// Duration
// ---------------------------------------------------------------------------------------------

/// A span of time written as seconds (`600`) or with units (`"10m"`, `"1h30m"`, `"500ms"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Units a duration may be written in, largest first (the order `Display` tries them).
const DURATION_UNITS: [(&str, u128); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl Duration {
    /// A duration of whole seconds (TLJH writes every duration this way).
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// A duration of whole milliseconds, the finest unit the file can express.
    pub const fn from_millis(millis: u64) -> Self {
        Duration(std::time::Duration::from_millis(millis))
    }

    /// The standard-library duration, for timers and comparisons.
    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    pub const fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    /// A bare number is seconds; otherwise one or more `<number><unit>` parts with units
    /// `ms`, `s`, `m`, `h`, `d` (`"1h30m"`, `"1h 30m"`). Numbers may have a fraction
    /// (`"1.5h"`); the result is kept to the millisecond.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || UnitError::Duration(raw.to_string());
        let text = raw.trim();
        if text.is_empty() {
            return Err(bad());
        }
        if let Some(millis) = parse_decimal_scaled(text, 1_000) {
            return millis_to_duration(millis, raw);
        }
        let mut rest = text;
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            if num_len == 0 {
                return Err(bad());
            }
            let (number, after) = rest.split_at(num_len);
            let unit_len = after
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let scale = DURATION_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(bad)?;
            let part = parse_decimal_scaled(number, scale).ok_or_else(bad)?;
            total = total
                .checked_add(part)
                .ok_or_else(|| UnitError::DurationOverflow(raw.to_string()))?;
            rest = after.trim_start();
        }
        millis_to_duration(total, raw)
    }
}

fn millis_to_duration(millis: u128, raw: &str) -> Result<Duration, UnitError> {
    let millis = u64::try_from(millis).map_err(|_| UnitError::DurationOverflow(raw.to_string()))?;
    Ok(Duration::from_millis(millis))
}

impl fmt::Display for Duration {
    /// An exact form a person would write: a single unit while the number stays small
    /// (`"10m"`, `"90s"`, `"36h"`), otherwise a compound (`"1h1m1s"` rather than `"3661s"`).
    /// Below a millisecond is not expressible in the file and is dropped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        if let Some((name, scale)) = DURATION_UNITS
            .iter()
            .find(|(_, scale)| millis.is_multiple_of(*scale))
        {
            if millis / scale < 100 {
                return write!(f, "{}{}", millis / scale, name);
            }
        }
        let mut compound = String::new();
        let mut rest = millis;
        for (name, scale) in DURATION_UNITS {
            if rest >= scale {
                compound.push_str(&format!("{}{}", rest / scale, name));
                rest %= scale;
            }
        }
        f.write_str(&compound)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: a number of seconds or a string such as \"10m\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom(format!("duration {v} is negative")))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                if !v.is_finite() || v < 0.0 {
                    return Err(E::custom(format!("duration {v} is not a positive number")));
                }
                std::time::Duration::try_from_secs_f64(v)
                    .map(|d| Duration::from_millis(d.as_millis().min(u64::MAX as u128) as u64))
                    .map_err(|_| E::custom(format!("duration {v} is too long")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Size
// ---------------------------------------------------------------------------------------------

/// A number of bytes written as bytes (`1073741824`) or with a binary unit (`"1G"`, `"512M"`,
/// `"1.5G"`). As in TLJH, `K`, `M`, `G`, `T` are powers of 1024; `Ki`/`KiB`/`KB` (and the same
/// for the other units, any case) mean the same thing, because a memory limit is always meant
/// in binary units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(u64);

const SIZE_UNITS: [(char, u128); 5] = [
    ('P', 1 << 50),
    ('T', 1 << 40),
    ('G', 1 << 30),
    ('M', 1 << 20),
    ('K', 1 << 10),
];

impl Size {
    pub const fn from_bytes(bytes: u64) -> Self {
        Size(bytes)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = UnitError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || UnitError::Size(raw.to_string());
        let text = raw.trim();
        let num_len = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        if num_len == 0 {
            return Err(bad());
        }
        let (number, unit) = text.split_at(num_len);
        let unit = unit.trim_start().to_ascii_uppercase();
        // "", "B" are bytes; otherwise a letter, then optionally "I", then optionally "B".
        let scale = match unit.as_str() {
            "" | "B" => 1,
            _ => {
                let mut chars = unit.chars();
                let letter = chars.next().ok_or_else(bad)?;
                let suffix: String = chars.collect();
                if !matches!(suffix.as_str(), "" | "I" | "B" | "IB") {
                    return Err(bad());
                }
                SIZE_UNITS
                    .iter()
                    .find(|(name, _)| *name == letter)
                    .map(|(_, scale)| *scale)
                    .ok_or_else(bad)?
            }
        };
        let bytes = parse_decimal_scaled(number, scale).ok_or_else(bad)?;
        u64::try_from(bytes)
            .map(Size)
            .map_err(|_| UnitError::SizeOverflow(raw.to_string()))
    }
}

impl fmt::Display for Size {
    /// The largest unit that states the size exactly: `2G`, `1536M`, `100` (bytes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = u128::from(self.0);
        if bytes != 0 {
            if let Some((name, scale)) = SIZE_UNITS.iter().find(|(_, scale)| bytes % scale == 0) {
                return write!(f, "{}{}", bytes / scale, name);
            }
        }
        write!(f, "{bytes}")
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a number of bytes or a string such as \"2G\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("size {v} is negative")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------

/// `number * scale` for a non-negative decimal `number` ("12", "1.5", "2."), exactly, rounding
/// down what falls below one unit of the result. `None` if it is not such a number or overflows.
fn parse_decimal_scaled(number: &str, scale: u128) -> Option<u128> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Leading zeros are harmless; too many digits simply overflow below.
    let int_value: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let mut total = int_value.checked_mul(scale)?;
    if !frac_part.is_empty() {
        let digits = frac_part.len().min(30) as u32;
        let frac_value: u128 = frac_part[..digits as usize].parse().ok()?;
        let denominator = 10u128.checked_pow(digits)?;
        total = total.checked_add(frac_value.checked_mul(scale)? / denominator)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dur(s: &str) -> Duration {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn durations_parse() {
        assert_eq!(dur("600"), Duration::from_secs(600));
        assert_eq!(dur("90s"), Duration::from_secs(90));
        assert_eq!(dur("10m"), Duration::from_secs(600));
        assert_eq!(dur("1h"), Duration::from_secs(3600));
        assert_eq!(dur("2d"), Duration::from_secs(2 * 86400));
        assert_eq!(dur("1h30m"), Duration::from_secs(5400));
        assert_eq!(dur("1h 30m"), Duration::from_secs(5400));
        assert_eq!(dur(" 1d2h3m4s5ms "), Duration::from_millis(93_784_005));
        assert_eq!(dur("500ms"), Duration::from_millis(500));
        assert_eq!(dur("1.5h"), Duration::from_secs(5400));
        assert_eq!(dur("0"), Duration::from_secs(0));
        assert_eq!(dur("2.5"), Duration::from_millis(2500));
    }

    #[test]
    fn bad_durations_say_what_is_accepted() {
        for bad in ["", "10x", "m", "1h30", "-5", "1.2.3s", "10 minutes", "h1"] {
            let err = bad.parse::<Duration>().expect_err(bad);
            assert!(matches!(err, UnitError::Duration(_)), "{bad:?}: {err}");
        }
        let msg = "10x".parse::<Duration>().unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid duration \"10x\": use a number of seconds or a number with s, m, h or d, \
             e.g. \"10m\" or \"1h30m\""
        );
        assert!("99999999999999999999d".parse::<Duration>().is_err());
    }

    #[test]
    fn durations_display_shortest() {
        let cases = [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m"),
            (90, "90s"),
            (600, "10m"),
            (3600, "1h"),
            (5400, "90m"),
            (7200, "2h"),
            (3600 + 61, "1h1m1s"),
            (150, "2m30s"),
            (26 * 3600, "26h"),
            (100 * 86400, "100d"),
            (86400 + 3600 + 60, "1d1h1m"),
            (86400, "1d"),
            (14 * 86400, "14d"),
            (36 * 3600, "36h"),
        ];
        for (secs, want) in cases {
            assert_eq!(Duration::from_secs(secs).to_string(), want, "{secs}s");
            assert_eq!(dur(want), Duration::from_secs(secs), "round trip {want}");
        }
        assert_eq!(Duration::from_millis(1500).to_string(), "1s500ms");
        assert_eq!(Duration::from_millis(250).to_string(), "250ms");
        assert_eq!(Duration::from_millis(86_400_001).to_string(), "1d1ms");
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Holder {
        d: Duration,
        s: Size,
    }

    #[test]
    fn serde_accepts_numbers_and_strings() {
        let h: Holder = toml::from_str("d = 600\ns = 1024").unwrap();
        assert_eq!(
            h,
            Holder {
                d: Duration::from_secs(600),
                s: Size::from_bytes(1024)
            }
        );
        let h: Holder = toml::from_str("d = \"1h\"\ns = \"2G\"").unwrap();
        assert_eq!(h.d, Duration::from_secs(3600));
        assert_eq!(h.s.bytes(), 2 << 30);
        assert_eq!(toml::to_string(&h).unwrap(), "d = \"1h\"\ns = \"2G\"\n");
        let err = toml::from_str::<Holder>("d = -1\ns = 1").unwrap_err();
        assert!(err.message().contains("negative"), "{err}");
        let err = toml::from_str::<Holder>("d = \"10x\"\ns = 1").unwrap_err();
        assert!(err.message().contains("invalid duration \"10x\""), "{err}");
        let err = toml::from_str::<Holder>("d = true\ns = 1").unwrap_err();
        assert!(err.message().contains("a duration"), "{err}");
    }

    fn size(s: &str) -> u64 {
        s.parse::<Size>()
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .bytes()
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(size("0"), 0);
        assert_eq!(size("100"), 100);
        assert_eq!(size("100B"), 100);
        assert_eq!(size("100K"), 100 * 1024);
        assert_eq!(size("512M"), 512 << 20);
        assert_eq!(size("2G"), 2 << 30);
        assert_eq!(size("2g"), 2 << 30);
        assert_eq!(size("1.5G"), 3 << 29);
        assert_eq!(size("1T"), 1 << 40);
        for same in ["2Gi", "2GiB", "2GB", "2gb", "2 G"] {
            assert_eq!(size(same), 2 << 30, "{same}");
        }
        assert_eq!(size("1Ki"), 1024);
        assert_eq!(size("1MB"), 1 << 20);
        assert_eq!(size("0.5K"), 512);
    }

    #[test]
    fn bad_sizes_say_what_is_accepted() {
        for bad in ["", "G", "2X", "2GG", "2Gx", "-1G", "1.2.3G", "two"] {
            let err = bad.parse::<Size>().expect_err(bad);
            assert!(matches!(err, UnitError::Size(_)), "{bad:?}: {err}");
        }
        assert!(matches!(
            "100000000P".parse::<Size>(),
            Err(UnitError::SizeOverflow(_))
        ));
        assert!("2X"
            .parse::<Size>()
            .unwrap_err()
            .to_string()
            .contains("e.g. \"512M\""));
    }

    #[test]
    fn sizes_display_shortest_exact() {
        assert_eq!(Size::from_bytes(0).to_string(), "0");
        assert_eq!(Size::from_bytes(100).to_string(), "100");
        assert_eq!(Size::from_bytes(1024).to_string(), "1K");
        assert_eq!(Size::from_bytes(2 << 30).to_string(), "2G");
        assert_eq!(Size::from_bytes(3 << 29).to_string(), "1536M");
        assert_eq!(Size::from_bytes(1 << 40).to_string(), "1T");
        assert_eq!(Size::from_bytes(1025).to_string(), "1025");
        for s in ["2G", "1536M", "100", "1T", "7K"] {
            assert_eq!(size(s).to_string(), size(s).to_string());
            assert_eq!(s.parse::<Size>().unwrap().to_string(), s);
        }
    }
}
