//! Values as operators type them: sizes (`64GiB`, `512MiB`, `1.5G`) and durations (`500ms`,
//! `2s`, `1m`, `0`).

/// A size in bytes: a number with an optional unit (B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB;
/// all binary multiples, as memory is counted).
pub fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. 512MiB or 2GiB"))?;
    let multiple: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{other:?} is not a size unit; use B, KiB, MiB, GiB or TiB"
            ));
        }
    };
    let bytes = number * multiple as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// A duration in milliseconds: a number with a unit (ms, s, m, h, d); a bare 0 is zero.
pub fn duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 500ms, 5s or 1m"))?;
    let millis = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        "" => return Err(format!("{text:?} needs a unit: ms, s, m, h or d")),
        other => {
            return Err(format!(
                "{other:?} is not a duration unit; use ms, s, m, h or d"
            ));
        }
    };
    Ok((number * millis) as u64)
}

/// CPUs as a decimal (`0.5`, `2`), in thousandths.
pub fn cpus_milli(text: &str) -> Result<u64, String> {
    let cpus: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of CPUs; write e.g. 0.5 or 2"))?;
    if !cpus.is_finite() || cpus < 0.0 {
        return Err(format!("{text:?} is not a number of CPUs"));
    }
    Ok((cpus * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_cpus() {
        assert_eq!(size("64GiB").unwrap(), 64 << 30);
        assert_eq!(size("512MiB").unwrap(), 512 << 20);
        assert_eq!(size("1.5G").unwrap(), 3 << 29);
        assert_eq!(size("4096").unwrap(), 4096);
        assert!(size("lots").is_err());
        assert!(size("3 furlongs").is_err());
        assert_eq!(duration_ms("500ms").unwrap(), 500);
        assert_eq!(duration_ms("2s").unwrap(), 2000);
        assert_eq!(duration_ms("1.5m").unwrap(), 90_000);
        assert_eq!(duration_ms("0").unwrap(), 0);
        assert_eq!(duration_ms("90d").unwrap(), 90 * 86_400_000);
        assert!(duration_ms("5").is_err());
        assert_eq!(cpus_milli("0.5").unwrap(), 500);
        assert_eq!(cpus_milli("2").unwrap(), 2000);
        assert!(cpus_milli("-1").is_err());
    }
}
