//! How the report writes numbers, sizes, times and table cells.

use std::time::{SystemTime, UNIX_EPOCH};

pub const KIB: f64 = 1024.0;
pub const MIB: f64 = 1024.0 * 1024.0;

/// A figure's value in its unit: ratios with two decimals, rates with thousands grouped.
pub fn value(v: f64, unit: &str) -> String {
    match unit {
        "ratio" => format!("{v:.2}"),
        "/s" => thousands(v),
        _ => num(v),
    }
}

pub fn with_unit(value: String, unit: &str) -> String {
    match unit {
        "" | "ratio" => value,
        "/s" => format!("{value}/s"),
        u => format!("{value} {u}"),
    }
}

/// About three significant digits, thousands grouped.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        thousands(v)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// `?` for a figure the file does not have.
pub fn num_or(v: Option<f64>) -> String {
    v.map_or("?".into(), num)
}

pub fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    if x < 0.0 && digits != "0" {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

pub fn size_name(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// A table cell: no line breaks, no bare pipes.
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(t: SystemTime) -> String {
    let secs = unix_secs(t) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_about_three_significant_digits() {
        assert_eq!(num(0.0123), "0.012");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(123.4), "123");
        assert_eq!(num(123_456.0), "123 456");
        assert_eq!(thousands(-1_234_567.0), "-1 234 567");
    }

    #[test]
    fn utc_writes_the_civil_date() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_796_428_800 + 3_661);
        assert_eq!(utc(t), "2026-12-05 01:01:01 UTC");
    }
}
