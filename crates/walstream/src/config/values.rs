//! Scalar values as Litestream's YAML library reads them: Go durations, YAML 1.1 booleans and
//! byte sizes, with serde helpers that turn a bad value into an error at its line and column.
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Parses a Go duration (`time.ParseDuration`): `500ms`, `1s`, `5m`, `24h`, `1h30m`, `1.5h`,
/// `0`. Units: `ns`, `us` (`µs`), `ms`, `s`, `m`, `h`. Negative durations are `None`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    match parse_go_duration(s.trim()) {
        Ok((false, d)) => Some(d),
        _ => None,
    }
}

/// Go's `time.ParseDuration`: `(negative, magnitude)`, or what is wrong.
fn parse_go_duration(s: &str) -> Result<(bool, Duration), &'static str> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok((neg, Duration::ZERO));
    }
    if rest.is_empty() {
        return Err("empty duration");
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, tail) = rest.split_at(int_len);
        let (frac, tail) = match tail.strip_prefix('.') {
            Some(t) => {
                let n = t.bytes().take_while(u8::is_ascii_digit).count();
                t.split_at(n)
            }
            None => ("", tail),
        };
        if int.is_empty() && frac.is_empty() {
            return Err("expected a number");
        }
        let unit_len = tail
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(tail.len(), |(i, _)| i);
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("missing unit"),
            _ => return Err("unknown unit"),
        };
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| "number too large")?
        };
        let mut nanos = int.checked_mul(scale).ok_or("number too large")?;
        // Fraction digits beyond what the unit can resolve are dropped, as in Go.
        let mut place = scale;
        for d in frac.bytes().take(40) {
            place /= 10;
            nanos += u128::from(d - b'0') * place;
        }
        total = total.checked_add(nanos).ok_or("number too large")?;
        rest = tail;
    }
    if total > i64::MAX as u128 {
        return Err("number too large");
    }
    Ok((neg, Duration::from_nanos(total as u64)))
}

/// Formats a duration the way Go prints one (`1h30m0s`, `500ms`, `0s`), for messages.
pub fn fmt_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        return match nanos {
            n if n < 1_000 => format!("{n}ns"),
            n if n < 1_000_000 => format!("{}µs", trim_frac(n, 1_000)),
            n => format!("{}ms", trim_frac(n, 1_000_000)),
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let frac = d.subsec_nanos();
    let s = if frac == 0 {
        s.to_string()
    } else {
        trim_frac(
            u128::from(s) * 1_000_000_000 + u128::from(frac),
            1_000_000_000,
        )
    };
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

fn trim_frac(n: u128, unit: u128) -> String {
    let (int, frac) = (n / unit, n % unit);
    if frac == 0 {
        return int.to_string();
    }
    let width = unit.ilog10() as usize;
    let frac = format!("{frac:0width$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// Parses a byte size as Litestream does (go-humanize's `ParseBytes`): a plain number of bytes,
/// or a number with an SI (`kB`, `MB`, `K`, `M` = powers of 1000) or IEC (`KiB`, `MiB`, `Ki` =
/// powers of 1024) unit, case-insensitive, e.g. `5MB`, `5 MiB`, `1.5GB`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let num_len = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ','))
        .map_or(s.len(), |(i, _)| i);
    let (num, unit) = s.split_at(num_len);
    let num: f64 = num.replace(',', "").parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024f64.powi(2),
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024f64.powi(3),
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pi" | "pib" => 1024f64.powi(5),
        "e" | "eb" => 1e18,
        "ei" | "eib" => 1024f64.powi(6),
        _ => return None,
    };
    let v = num * mult;
    (v.is_finite() && (0.0..9.2e18).contains(&v)).then_some(v as u64)
}

/// A YAML 1.1 boolean word, as Litestream's YAML library (yaml.v2) reads unquoted scalars.
fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            Some(false)
        }
        _ => None,
    }
}

struct DurationVisitor;

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as 500ms, 1s, 5m or 24h")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    // yaml.v2 reads a bare number into a Go duration as nanoseconds.
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Duration::from_nanos(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(|v| Some(Duration::from_nanos(v)))
            .map_err(|_| E::custom(format!("invalid duration {v}: must not be negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match parse_go_duration(v.trim()) {
            Ok((false, d)) => Ok(Some(d)),
            Ok((true, _)) if v.trim() == "-0" => Ok(Some(Duration::ZERO)),
            Ok((true, _)) => Err(E::custom(format!(
                "invalid duration {v:?}: must not be negative"
            ))),
            Err(why) => Err(E::custom(format!(
                "invalid duration {v:?} ({why}): expected e.g. 500ms, 1s, 5m, 24h"
            ))),
        }
    }
}

/// serde `deserialize_with` for `Option<Duration>` fields: a Go duration string, a bare number
/// (nanoseconds, as yaml.v2 reads it), or null.
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    d.deserialize_option(DurationVisitor)
}

struct BoolVisitor;

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = Option<bool>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("true or false")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(BoolVisitor)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        yaml11_bool(v)
            .map(Some)
            .ok_or_else(|| E::custom(format!("invalid boolean {v:?}: expected true or false")))
    }
}

/// serde `deserialize_with` for `Option<bool>`: YAML booleans and the YAML 1.1 words
/// (`yes`/`no`/`on`/`off`/`y`/`n`) that Litestream's parser accepts.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    d.deserialize_option(BoolVisitor)
}

struct SizeVisitor;

impl<'de> Visitor<'de> for SizeVisitor {
    type Value = Option<serde_norway::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a size such as 5242880, 5MB or 5MiB")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(SizeVisitor)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(serde_norway::Value::from(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("invalid size {v}: must not be negative"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match parse_size(v) {
            Some(_) => Ok(Some(serde_norway::Value::from(v))),
            None => Err(E::custom(format!(
                "invalid size {v:?}: expected bytes or e.g. 5MB, 5MiB"
            ))),
        }
    }
}

/// serde `deserialize_with` for a byte size kept as written (number or string), checked with
/// [`parse_size`].
pub fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_norway::Value>, D::Error> {
    d.deserialize_option(SizeVisitor)
}

/// The bytes of a size value kept by [`opt_size`].
pub fn size_of(v: &serde_norway::Value) -> Option<u64> {
    match v {
        serde_norway::Value::Number(n) => n.as_u64(),
        serde_norway::Value::String(s) => parse_size(s),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_duration_go_forms() {
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration(".5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10us"), Some(Duration::from_micros(10)));
        assert_eq!(parse_duration("10µs"), Some(Duration::from_micros(10)));
        assert_eq!(parse_duration("7ns"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_duration("+2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(
            parse_duration("1.0000000001s"),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn parse_duration_rejects_bad_forms() {
        for s in [
            "",
            "5",
            "5 parsecs",
            "abc",
            "1x",
            "s",
            ".s",
            "-1s",
            "1h-5m",
            "1e3s",
            "99999999999h",
        ] {
            assert_eq!(parse_duration(s), None, "{s:?}");
        }
    }

    #[test]
    fn fmt_duration_like_go() {
        assert_eq!(fmt_duration(Duration::ZERO), "0s");
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_duration(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(fmt_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn parse_size_si_and_iec() {
        assert_eq!(parse_size("5242880"), Some(5_242_880));
        assert_eq!(parse_size("5MB"), Some(5_000_000));
        assert_eq!(parse_size("5 MiB"), Some(5 << 20));
        assert_eq!(parse_size("5mib"), Some(5 << 20));
        assert_eq!(parse_size("1.5GB"), Some(1_500_000_000));
        assert_eq!(parse_size("64K"), Some(64_000));
        assert_eq!(parse_size("1,000"), Some(1000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("5XB"), None);
    }

    #[test]
    fn yaml11_bool_words() {
        assert_eq!(yaml11_bool("yes"), Some(true));
        assert_eq!(yaml11_bool("OFF"), Some(false));
        assert_eq!(yaml11_bool("maybe"), None);
    }
}
