//! A session's time zone (`SET TIME ZONE`): how timestamps without a zone
//! are read and how timestamps with one are printed.

use chrono::FixedOffset;

/// A session's time zone: an IANA zone or a fixed offset.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionTimeZone {
    Named(chrono_tz::Tz),
    Fixed(FixedOffset),
}

impl SessionTimeZone {
    /// The string DataFusion's `execution.time_zone` understands.
    pub fn datafusion_name(&self) -> String {
        match self {
            SessionTimeZone::Named(tz) => tz.name().to_string(),
            SessionTimeZone::Fixed(offset) => offset.to_string(),
        }
    }
}

/// Parses a PostgreSQL time zone setting. Returns the zone and its canonical
/// spelling for SHOW.
pub fn parse_time_zone(value: &str) -> Option<(SessionTimeZone, String)> {
    let trimmed = value.trim();
    if trimmed.eq_ignore_ascii_case("utc")
        || trimmed.eq_ignore_ascii_case("gmt")
        || trimmed.eq_ignore_ascii_case("z")
        || trimmed.eq_ignore_ascii_case("zulu")
    {
        return Some((SessionTimeZone::Named(chrono_tz::UTC), "UTC".to_string()));
    }
    if let Ok(tz) = trimmed.parse::<chrono_tz::Tz>() {
        return Some((SessionTimeZone::Named(tz), tz.name().to_string()));
    }
    if let Some(tz) = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(trimmed))
    {
        return Some((SessionTimeZone::Named(*tz), tz.name().to_string()));
    }
    // ISO 8601 offsets: "+05:30", "-08", "+0530". East of Greenwich is positive.
    if let Some(sign) = trimmed.chars().next().filter(|c| *c == '+' || *c == '-') {
        let digits: String = trimmed[1..].chars().filter(|c| *c != ':').collect();
        if !digits.is_empty() && digits.len() <= 4 && digits.chars().all(|c| c.is_ascii_digit()) {
            let (hours, minutes) = if digits.len() <= 2 {
                (digits.parse::<i32>().ok()?, 0)
            } else {
                let split = digits.len() - 2;
                (
                    digits[..split].parse::<i32>().ok()?,
                    digits[split..].parse::<i32>().ok()?,
                )
            };
            if hours > 15 || minutes > 59 {
                return None;
            }
            let seconds = (hours * 3600 + minutes * 60) * if sign == '-' { -1 } else { 1 };
            return FixedOffset::east_opt(seconds)
                .map(|o| (SessionTimeZone::Fixed(o), trimmed.to_string()));
        }
        return None;
    }
    // A bare number of hours: `SET TIME ZONE 5` (east of Greenwich).
    if let Ok(hours) = trimmed.parse::<f64>()
        && hours.abs() <= 15.0
    {
        let seconds = (hours * 3600.0).round() as i32;
        return FixedOffset::east_opt(seconds).map(|o| {
            (
                SessionTimeZone::Fixed(o),
                format!("{}", FixedOffsetDisplay(o)),
            )
        });
    }
    None
}

struct FixedOffsetDisplay(FixedOffset);

impl std::fmt::Display for FixedOffsetDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.0.local_minus_utc();
        let sign = if seconds < 0 { '-' } else { '+' };
        let seconds = seconds.abs();
        write!(
            f,
            "{sign}{:02}:{:02}",
            seconds / 3600,
            (seconds % 3600) / 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zones_and_offsets() {
        assert!(parse_time_zone("+05:30").is_some());
        assert!(parse_time_zone("-08").is_some());
        assert_eq!(parse_time_zone("5").unwrap().1, "+05:00");
        assert_eq!(parse_time_zone("utc").unwrap().1, "UTC");
        assert!(parse_time_zone("nowhere").is_none());
    }
}
