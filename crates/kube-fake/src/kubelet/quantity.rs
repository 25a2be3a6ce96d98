//! Kubernetes resource quantities (`500m`, `2`, `1.5`, `1Gi`, `512Mi`, `1e9`, `1G`, `100k`),
//! as the scheduler and the kubelet read them: CPU in millicores, everything else in whole
//! units (bytes, devices), rounded up as the real server does.

/// The value of `q` in base units, or `None` if it is not a quantity.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let (num, suffix) = match suffix.strip_prefix(['e', 'E']) {
        // A decimal exponent: 1e9, 1E3.
        Some(exp)
            if !exp.is_empty()
                && exp
                    .trim_start_matches(['+', '-'])
                    .chars()
                    .all(|c| c.is_ascii_digit()) =>
        {
            let e: i32 = exp.parse().ok()?;
            return num.parse::<f64>().ok().map(|n| n * 10f64.powi(e));
        }
        _ => (num, suffix),
    };
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    (n >= 0.0).then_some(n * mult)
}

/// CPU quantity in millicores (rounded up).
pub fn cpu_millis(q: &str) -> Option<u64> {
    parse(q).map(|v| (v * 1000.0 - 1e-9).ceil().max(0.0) as u64)
}

/// A quantity in whole units (bytes, devices; rounded up).
pub fn units(q: &str) -> Option<u64> {
    parse(q).map(|v| (v - 1e-9).ceil().max(0.0) as u64)
}

/// Millicores as a quantity string (`2`, `1500m`).
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Bytes as the kubelet reports memory (`16318540Ki`).
pub fn format_memory(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("1.5"), Some(1500));
        assert_eq!(cpu_millis("0.1"), Some(100));
        assert_eq!(units("1Gi"), Some(1 << 30));
        assert_eq!(units("512Mi"), Some(512 << 20));
        assert_eq!(units("1e9"), Some(1_000_000_000));
        assert_eq!(units("1G"), Some(1_000_000_000));
        assert_eq!(units("100k"), Some(100_000));
        assert_eq!(units("2147483648"), Some(2_147_483_648));
        assert_eq!(units("1"), Some(1));
        assert_eq!(parse("x"), None);
        assert_eq!(parse("1Qi"), None);
        assert_eq!(format_cpu(1500), "1500m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_memory(2048), "2Ki");
    }
}
