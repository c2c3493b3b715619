//! How benchmarks write their figures: times in milliseconds as `f64`, and the rounding of the
//! final JSON line (two decimals for most figures, three for CPU cores).

use std::time::Duration;

/// A duration in milliseconds, with its fraction.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Rounded to two decimals.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Rounded to three decimals.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_and_rounding() {
        assert_eq!(millis(Duration::from_micros(1500)), 1.5);
        assert_eq!(round2(1.23456), 1.23);
        assert_eq!(round3(1.23456), 1.235);
    }
}
