//! Numbers the store keeps as `f32` (vector components, scores) go out as Qdrant writes them: the
//! shortest decimal that reads back as the same `f32` (`0.15`), not the `f64` widening of it
//! (`0.15000000596046448`) that `serde_json::Value::from(f32)` gives.

use serde_json::{Number, Value};

/// One `f32` as JSON; not-a-number and infinities (which JSON cannot carry) are `null`.
pub fn f32_value(x: f32) -> Value {
    // Rust's `Display` for f32 prints the shortest string that round-trips the f32; as an f64 it is the
    // decimal a reader expects.
    format!("{x}")
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// A list of `f32`s as a JSON array.
pub fn f32_array(values: &[f32]) -> Value {
    Value::Array(values.iter().copied().map(f32_value).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32s_read_back_as_stored_not_widened() {
        // Issue 16, item 6.
        assert_eq!(serde_json::to_string(&f32_value(0.15)).unwrap(), "0.15");
        assert_eq!(
            serde_json::to_string(&f32_array(&[0.1, -2.5, 1e-7, 3.4028235e38])).unwrap(),
            "[0.1,-2.5,1e-7,3.4028235e+38]"
        );
        assert_eq!(f32_value(f32::NAN), Value::Null);
        for x in [0.15f32, 1.0 / 3.0, 123456.79, 1e-30] {
            let back = serde_json::to_string(&f32_value(x)).unwrap();
            assert_eq!(back.parse::<f32>().unwrap(), x, "{back}");
        }
    }
}
