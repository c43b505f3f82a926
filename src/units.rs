//! Sizes and durations as users write them.
//!
//! - Size: an integer (bytes), or a number with `B`, `KiB`, `MiB`, `GiB` (powers of 1024) or
//!   `KB`, `MB`, `GB` (powers of 1000). `0` is allowed (it disables spooling).
//! - Duration: a number with `ms`, `s`, `m`, `h` or `d`, e.g. `500ms`, `2s`, `1.5s`, `1m`, `18h`.
//!
//! Shown back: a size in binary units with at most one decimal (`256 B`, `1.5 KiB`, `64 MiB`),
//! a duration in the largest unit that keeps it whole (`500ms`, `2s`, `18h`), which parses back.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("invalid size {0:?}: expected bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB")]
    Size(String),
    #[error(
        "invalid duration {0:?}: expected a number with ms, s, m, h or d (e.g. 500ms, 2s, 1m, 18h)"
    )]
    Duration(String),
}

/// Splits "1.5KiB" into ("1.5", "KiB").
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim_start())
}

/// Parses a byte size.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Size(input.to_owned());
    let s = input.trim();
    let (number, unit) = split_number(s);
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(err()),
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(err());
    }
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(multiplier).ok_or_else(err);
    }
    // A fraction is fine as long as it comes to whole bytes ("1.5KiB"); "1.5" bytes is not.
    let (whole, frac) = number.split_once('.').ok_or_else(err)?;
    if frac.contains('.') || frac.len() > 9 {
        return Err(err());
    }
    let whole: u64 = whole.parse().map_err(|_| err())?;
    let scale = 10u128.pow(frac.len() as u32);
    let frac: u128 = frac.parse().map_err(|_| err())?;
    let total = u128::from(whole) * scale + frac;
    let bytes = total * u128::from(multiplier);
    if !bytes.is_multiple_of(scale) {
        return Err(err());
    }
    u64::try_from(bytes / scale).map_err(|_| err())
}

/// Parses a duration.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let err = || UnitError::Duration(input.to_owned());
    let s = input.trim();
    let (number, unit) = split_number(s);
    let millis_per_unit = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(err()),
    };
    if number.is_empty()
        || number.starts_with('.')
        || number.ends_with('.')
        || number.matches('.').count() > 1
    {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let millis = value * millis_per_unit;
    if !millis.is_finite() || millis > 1e12 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(millis / 1_000.0))
}

/// A byte size for people: `256 B`, `1.5 KiB`, `64 MiB`, `2 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let shown = format!("{value:.1}");
    let shown = shown.strip_suffix(".0").unwrap_or(&shown);
    format!("{shown} {}", UNITS[unit])
}

/// A duration as [`parse_duration`] reads it, in the largest unit that keeps it whole.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("12B"), Ok(12));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("5KB"), Ok(5_000));
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1_536));
        assert_eq!(parse_size(" 8 MiB "), Ok(8 << 20));
    }

    #[test]
    fn sizes_and_durations_are_shown_in_the_units_they_are_read_in() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(256), "256 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size((64 << 20) - 1), "64 MiB");
        assert_eq!(format_size(5 << 30), "5 GiB");
        for d in ["500ms", "2s", "90s", "1m", "18h", "7d", "0ms", "1500ms"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }

    #[test]
    fn bad_sizes_are_refused_with_the_value_named() {
        for bad in [
            "",
            "-1",
            "ten",
            "1.5",
            "1.5.1KiB",
            "5kb",
            "5 TB",
            "MiB",
            ".5MiB",
            "99999999999999999999",
            "18446744073709551615GiB",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_take_ms_s_m_h_and_d() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("18h"), Ok(Duration::from_secs(18 * 3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in [
            "", "2", "2w", "-1s", "s", "1.s", "1e3s", "NaNs", "inf ms", "40000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
