//! Dates, times, timestamps and intervals in PostgreSQL's ISO text format,
//! and the conversions to PostgreSQL's binary epoch (2000-01-01).

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike};

use super::time_zone::SessionTimeZone;

/// Days from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
pub const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

fn unix_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")
}

fn push_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    let text = value.to_string();
    for _ in text.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(text.as_bytes());
}

/// "YYYY-MM-DD"; years before 1 AD get PostgreSQL's " BC" suffix.
fn write_ymd(out: &mut Vec<u8>, date: NaiveDate) -> bool {
    let year = date.year();
    let (display_year, bc) = if year <= 0 {
        (1 - year, true)
    } else {
        (year, false)
    };
    push_padded(out, display_year as u32, 4);
    out.push(b'-');
    push_padded(out, date.month(), 2);
    out.push(b'-');
    push_padded(out, date.day(), 2);
    bc
}

/// "HH:MM:SS[.ffffff]" with trailing fraction zeros trimmed.
fn write_hms(out: &mut Vec<u8>, seconds_of_day: u32, micros: u32) {
    push_padded(out, seconds_of_day / 3600, 2);
    out.push(b':');
    push_padded(out, (seconds_of_day / 60) % 60, 2);
    out.push(b':');
    push_padded(out, seconds_of_day % 60, 2);
    if micros > 0 {
        out.push(b'.');
        let mut fraction = format!("{micros:06}");
        while fraction.ends_with('0') {
            fraction.pop();
        }
        out.extend_from_slice(fraction.as_bytes());
    }
}

pub fn write_date(out: &mut Vec<u8>, days_since_unix: i32) {
    match unix_epoch().checked_add_signed(chrono::Duration::days(days_since_unix as i64)) {
        Some(date) => {
            if write_ymd(out, date) {
                out.extend_from_slice(b" BC");
            }
        }
        None => out.extend_from_slice(b"infinity"),
    }
}

pub fn write_time(out: &mut Vec<u8>, micros_since_midnight: i64) {
    let micros = micros_since_midnight.rem_euclid(MICROS_PER_DAY);
    write_hms(
        out,
        (micros / 1_000_000) as u32,
        (micros % 1_000_000) as u32,
    );
}

fn naive_from_micros(micros_since_unix: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros_since_unix).map(|dt| dt.naive_utc())
}

fn write_naive(out: &mut Vec<u8>, naive: NaiveDateTime) -> bool {
    let bc = write_ymd(out, naive.date());
    out.push(b' ');
    write_hms(
        out,
        naive.num_seconds_from_midnight(),
        naive.nanosecond() / 1000,
    );
    bc
}

pub fn write_timestamp(out: &mut Vec<u8>, micros_since_unix: i64) {
    match naive_from_micros(micros_since_unix) {
        Some(naive) => {
            if write_naive(out, naive) {
                out.extend_from_slice(b" BC");
            }
        }
        None => out.extend_from_slice(b"infinity"),
    }
}

/// Offset in seconds east of UTC of `zone` at the UTC instant `utc`.
fn offset_at(zone: &SessionTimeZone, utc: &NaiveDateTime) -> i32 {
    match zone {
        SessionTimeZone::Named(tz) => tz.offset_from_utc_datetime(utc).fix().local_minus_utc(),
        SessionTimeZone::Fixed(offset) => offset.local_minus_utc(),
    }
}

/// A UTC instant shown in the session's zone, with PostgreSQL's offset
/// suffix ("+01", "+05:30").
pub fn write_timestamptz(out: &mut Vec<u8>, micros_since_unix: i64, zone: &SessionTimeZone) {
    let Some(utc) = naive_from_micros(micros_since_unix) else {
        out.extend_from_slice(b"infinity");
        return;
    };
    let offset = offset_at(zone, &utc);
    let local = utc + chrono::Duration::seconds(offset as i64);
    let bc = write_naive(out, local);
    out.push(if offset < 0 { b'-' } else { b'+' });
    let magnitude = offset.unsigned_abs();
    push_padded(out, magnitude / 3600, 2);
    if !magnitude.is_multiple_of(3600) {
        out.push(b':');
        push_padded(out, (magnitude / 60) % 60, 2);
        if !magnitude.is_multiple_of(60) {
            out.push(b':');
            push_padded(out, magnitude % 60, 2);
        }
    }
    if bc {
        out.extend_from_slice(b" BC");
    }
}

/// An interval in PostgreSQL's default ("postgres") style:
/// "1 year 2 mons 3 days 04:05:06.5", "-1 days +02:00:00", "00:00:00".
pub fn write_interval(out: &mut Vec<u8>, months: i32, days: i32, micros: i64) {
    let mut parts: Vec<String> = Vec::new();
    let years = months / 12;
    let months = months % 12;
    let mut any_negative = false;
    let mut push_unit = |value: i32, singular: &str, plural: &str, parts: &mut Vec<String>| {
        if value != 0 {
            let sign = if value < 0 {
                any_negative = true;
                ""
            } else if any_negative {
                "+"
            } else {
                ""
            };
            let unit = if value == 1 { singular } else { plural };
            parts.push(format!("{sign}{value} {unit}"));
        }
    };
    push_unit(years, "year", "years", &mut parts);
    push_unit(months, "mon", "mons", &mut parts);
    push_unit(days, "day", "days", &mut parts);
    if micros != 0 || parts.is_empty() {
        let negative = micros < 0;
        let magnitude = micros.unsigned_abs();
        let mut time = Vec::new();
        if negative {
            time.push(b'-');
        } else if any_negative {
            time.push(b'+');
        }
        let total_seconds = magnitude / 1_000_000;
        let hours = total_seconds / 3600;
        time.extend_from_slice(format!("{hours:02}").as_bytes());
        time.push(b':');
        push_padded(&mut time, ((total_seconds / 60) % 60) as u32, 2);
        time.push(b':');
        push_padded(&mut time, (total_seconds % 60) as u32, 2);
        let fraction = (magnitude % 1_000_000) as u32;
        if fraction > 0 {
            let mut text = format!(".{fraction:06}");
            while text.ends_with('0') {
                text.pop();
            }
            time.extend_from_slice(text.as_bytes());
        }
        parts.push(String::from_utf8(time).expect("ascii"));
    }
    out.extend_from_slice(parts.join(" ").as_bytes());
}

// ---------------------------------------------------------------- parsing

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 9 {
        return None;
    }
    bytes.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + (b - b'0') as u32)
    })
}

/// Parses "YYYY-MM-DD" (optionally followed by " BC") into a date.
fn parse_ymd(text: &str) -> Option<(NaiveDate, &str)> {
    let bytes = text.as_bytes();
    let first_dash = bytes.iter().position(|b| *b == b'-')?;
    let year = digits(&bytes[..first_dash])? as i32;
    let rest = &bytes[first_dash + 1..];
    if rest.len() < 5 || rest[2] != b'-' {
        return None;
    }
    let month = digits(&rest[..2])?;
    let day = digits(&rest[3..5])?;
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    Some((date, &text[first_dash + 6..]))
}

/// Parses "HH:MM[:SS[.ffffff]]" into microseconds since midnight.
fn parse_hms(text: &str) -> Option<(i64, &str)> {
    let bytes = text.as_bytes();
    if bytes.len() < 5 || bytes[2] != b':' {
        return None;
    }
    let hours = digits(&bytes[..2])? as i64;
    let minutes = digits(&bytes[3..5])? as i64;
    let mut consumed = 5;
    let mut seconds = 0i64;
    let mut micros = 0i64;
    if bytes.len() >= 8 && bytes[5] == b':' {
        seconds = digits(&bytes[6..8])? as i64;
        consumed = 8;
        if bytes.len() > 8 && bytes[8] == b'.' {
            let fraction_end = bytes[9..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map(|p| p + 9)
                .unwrap_or(bytes.len());
            let fraction = &bytes[9..fraction_end];
            if fraction.is_empty() {
                return None;
            }
            let mut value = 0i64;
            for (i, d) in fraction.iter().enumerate() {
                if i < 6 {
                    value = value * 10 + (d - b'0') as i64;
                } else if i == 6 {
                    // Round to microseconds, as PostgreSQL does.
                    if *d >= b'5' {
                        value += 1;
                    }
                    break;
                }
            }
            for _ in fraction.len()..6 {
                value *= 10;
            }
            micros = value;
            consumed = fraction_end;
        }
    }
    if hours > 24 || minutes > 59 || seconds > 60 {
        return None;
    }
    let total = ((hours * 60 + minutes) * 60 + seconds) * 1_000_000 + micros;
    if total > MICROS_PER_DAY {
        return None;
    }
    Some((total, &text[consumed..]))
}

/// Parses a UTC offset suffix: "Z", "+02", "+0530", "+05:30", "-08:00:00".
fn parse_offset(text: &str) -> Option<i32> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body: Vec<u8> = text[1..].bytes().filter(|b| *b != b':').collect();
    let (hours, minutes, seconds) = match body.len() {
        1 | 2 => (digits(&body)?, 0, 0),
        4 => (digits(&body[..2])?, digits(&body[2..])?, 0),
        6 => (
            digits(&body[..2])?,
            digits(&body[2..4])?,
            digits(&body[4..])?,
        ),
        _ => return None,
    };
    if hours > 15 || minutes > 59 || seconds > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60 + seconds) as i32)
}

fn special_timestamp(text: &str) -> bool {
    matches!(
        text.to_lowercase().as_str(),
        "infinity" | "-infinity" | "+infinity"
    )
}

/// Days since 1970-01-01 of a date literal.
pub fn parse_date(text: &str) -> Option<i32> {
    let text = text.trim();
    let (date, rest) = parse_ymd(text)?;
    let date = match rest.trim() {
        "" => date,
        suffix if suffix.eq_ignore_ascii_case("bc") => {
            NaiveDate::from_ymd_opt(1 - date.year(), date.month(), date.day())?
        }
        // A zone after a date is accepted and ignored, as PostgreSQL does
        // (pgJDBC sends `setDate` values as "2024-01-01 +00").
        suffix if parse_offset(suffix).is_some() => date,
        _ => return None,
    };
    Some((date - unix_epoch()).num_days() as i32)
}

pub fn parse_time(text: &str) -> Option<i64> {
    let (micros, rest) = parse_hms(text.trim())?;
    rest.trim().is_empty().then_some(micros)
}

/// Splits "date[ T]time[offset]" into local microseconds and an optional
/// offset in seconds east of UTC.
fn parse_timestamp_parts(text: &str) -> Option<(i64, Option<i32>)> {
    let text = text.trim();
    let (date, rest) = parse_ymd(text)?;
    let days = (date - unix_epoch()).num_days();
    let rest = rest.trim_start_matches([' ', 'T', 't']);
    if rest.is_empty() {
        return Some((days * MICROS_PER_DAY, None));
    }
    let (time, rest) = parse_hms(rest)?;
    let rest = rest.trim();
    let offset = if rest.is_empty() {
        None
    } else {
        Some(parse_offset(rest)?)
    };
    Some((days * MICROS_PER_DAY + time, offset))
}

/// A timestamp literal in PostgreSQL's input forms ("2024-05-01 00:00+02",
/// "2024-05-01", fractional seconds, "Z") rewritten in the RFC 3339 form
/// Arrow parses: UTC with "Z" when the literal has an offset, a local time
/// without one otherwise (which the reader's zone then interprets). For
/// `timestamp` (`with_zone` false) an offset is ignored, as PostgreSQL does.
pub fn normalize_timestamp_literal(text: &str, with_zone: bool) -> Option<String> {
    if special_timestamp(text) {
        return None;
    }
    let (local, offset) = parse_timestamp_parts(text)?;
    let offset = offset.filter(|_| with_zone);
    let (micros, suffix) = match offset {
        Some(offset) => (local - offset as i64 * 1_000_000, "Z"),
        None => (local, ""),
    };
    let naive = naive_from_micros(micros)?;
    if naive.year() < 1 {
        return None;
    }
    Some(format!("{}{suffix}", naive.format("%Y-%m-%dT%H:%M:%S%.6f")))
}

/// Microseconds since the Unix epoch of a `timestamp` literal (any offset
/// is ignored, as PostgreSQL does for timestamp without time zone).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if special_timestamp(text) {
        return None;
    }
    parse_timestamp_parts(text).map(|(local, _)| local)
}

/// Microseconds since the Unix epoch (UTC) of a `timestamptz` literal; a
/// literal without an offset is local time in `zone`.
pub fn parse_timestamptz(text: &str, zone: &SessionTimeZone) -> Option<i64> {
    if special_timestamp(text) {
        return None;
    }
    let (local, offset) = parse_timestamp_parts(text)?;
    let offset = match offset {
        Some(offset) => offset,
        None => {
            let naive = naive_from_micros(local)?;
            match zone {
                SessionTimeZone::Named(tz) => tz
                    .from_local_datetime(&naive)
                    .earliest()
                    .or_else(|| {
                        // In a DST gap: PostgreSQL moves forward.
                        tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                            .earliest()
                    })?
                    .offset()
                    .fix()
                    .local_minus_utc(),
                SessionTimeZone::Fixed(offset) => offset.local_minus_utc(),
            }
        }
    };
    Some(local - offset as i64 * 1_000_000)
}

/// Parses the interval forms clients send: PostgreSQL style ("1 day
/// 02:03:04", "3 hours", "-1 mons"), plain "HH:MM:SS", and ISO 8601
/// ("P1DT2H"). Returns (months, days, microseconds).
pub fn parse_interval(text: &str) -> Option<(i32, i32, i64)> {
    let text = text.trim();
    if let Some(iso) = text.strip_prefix(['P', 'p']) {
        return parse_iso_interval(iso);
    }
    let mut months = 0i64;
    let mut days = 0i64;
    let mut micros = 0i64;
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    let mut ago = false;
    while i < tokens.len() {
        let token = tokens[i].trim_start_matches('@');
        if token.is_empty() {
            i += 1;
            continue;
        }
        if token.eq_ignore_ascii_case("ago") {
            ago = true;
            i += 1;
            continue;
        }
        if token.contains(':') {
            let (negative, body) = match token.as_bytes()[0] {
                b'-' => (true, &token[1..]),
                b'+' => (false, &token[1..]),
                _ => (false, token),
            };
            let mut fields = body.split(':');
            let hours: i64 = fields.next()?.parse().ok()?;
            let minutes: i64 = fields.next()?.parse().ok()?;
            let seconds: f64 = fields.next().unwrap_or("0").parse().ok()?;
            let value = (hours * 3600 + minutes * 60) * 1_000_000 + (seconds * 1e6).round() as i64;
            micros += if negative { -value } else { value };
            i += 1;
            continue;
        }
        let number: f64 = token.parse().ok()?;
        let unit = tokens
            .get(i + 1)
            .map(|u| u.to_lowercase())
            .unwrap_or_default();
        let unit = unit.trim_end_matches(',');
        let (m, d, us) = match unit {
            "year" | "years" | "yr" | "yrs" | "y" => (number * 12.0, 0.0, 0.0),
            "mon" | "mons" | "month" | "months" => (number, 0.0, 0.0),
            "week" | "weeks" | "w" => (0.0, number * 7.0, 0.0),
            "day" | "days" | "d" => (0.0, number, 0.0),
            "hour" | "hours" | "hr" | "hrs" | "h" => (0.0, 0.0, number * 3.6e9),
            "minute" | "minutes" | "min" | "mins" | "m" => (0.0, 0.0, number * 6e7),
            "second" | "seconds" | "sec" | "secs" | "s" | "" => (0.0, 0.0, number * 1e6),
            "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => (0.0, 0.0, number * 1e3),
            "microsecond" | "microseconds" | "us" | "usec" | "usecs" => (0.0, 0.0, number),
            _ => return None,
        };
        months += m.trunc() as i64;
        // Fractional months/days spill into smaller units, like PostgreSQL.
        let day_part = d + m.fract() * 30.0;
        days += day_part.trunc() as i64;
        micros += (us + day_part.fract() * 8.64e10).round() as i64;
        i += if tokens.get(i + 1).is_some() && !unit.is_empty() {
            2
        } else {
            1
        };
    }
    if ago {
        months = -months;
        days = -days;
        micros = -micros;
    }
    Some((
        i32::try_from(months).ok()?,
        i32::try_from(days).ok()?,
        micros,
    ))
}

fn parse_iso_interval(text: &str) -> Option<(i32, i32, i64)> {
    let (date_part, time_part) = match text.find(['T', 't']) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let mut months = 0f64;
    let mut days = 0f64;
    let mut micros = 0f64;
    let mut number = String::new();
    for c in date_part.chars() {
        match c {
            '0'..='9' | '.' | '-' => number.push(c),
            'Y' | 'y' => months += number.parse::<f64>().ok()? * 12.0,
            'M' | 'm' => months += number.parse::<f64>().ok()?,
            'W' | 'w' => days += number.parse::<f64>().ok()? * 7.0,
            'D' | 'd' => days += number.parse::<f64>().ok()?,
            _ => return None,
        }
        if c.is_ascii_alphabetic() {
            number.clear();
        }
    }
    for c in time_part.chars() {
        match c {
            '0'..='9' | '.' | '-' => number.push(c),
            'H' | 'h' => micros += number.parse::<f64>().ok()? * 3.6e9,
            'M' | 'm' => micros += number.parse::<f64>().ok()? * 6e7,
            'S' | 's' => micros += number.parse::<f64>().ok()? * 1e6,
            _ => return None,
        }
        if c.is_ascii_alphabetic() {
            number.clear();
        }
    }
    if !number.is_empty() {
        return None;
    }
    Some((months as i32, days as i32, micros.round() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_literals_normalize_to_arrow_form() {
        let n = |text, zone| normalize_timestamp_literal(text, zone);
        assert_eq!(
            n("2024-05-01 10:00+02", true).as_deref(),
            Some("2024-05-01T08:00:00.000000Z")
        );
        assert_eq!(
            n("2024-05-01 10:00+02", false).as_deref(),
            Some("2024-05-01T10:00:00.000000")
        );
        assert_eq!(
            n("2024-05-01", true).as_deref(),
            Some("2024-05-01T00:00:00.000000")
        );
        assert_eq!(
            n(" 2024-05-01T10:00:00.5Z ", true).as_deref(),
            Some("2024-05-01T10:00:00.500000Z")
        );
        assert_eq!(n("infinity", true), None);
        assert_eq!(n("yesterday", true), None);
    }

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_like_postgres() {
        assert_eq!(s(|o| write_date(o, 19_723)), "2024-01-01");
        assert_eq!(s(|o| write_date(o, -719_163)), "0001-12-31 BC");
        assert_eq!(
            s(|o| write_timestamp(o, 1_704_067_200_000_000)),
            "2024-01-01 00:00:00"
        );
        assert_eq!(
            s(|o| write_timestamp(o, 1_704_067_200_123_400)),
            "2024-01-01 00:00:00.1234"
        );
        let paris = SessionTimeZone::Named(chrono_tz::Europe::Paris);
        assert_eq!(
            s(|o| write_timestamptz(o, 1_704_067_200_000_000, &paris)),
            "2024-01-01 01:00:00+01"
        );
        let kolkata = SessionTimeZone::Named(chrono_tz::Asia::Kolkata);
        assert_eq!(
            s(|o| write_timestamptz(o, 1_704_067_200_000_000, &kolkata)),
            "2024-01-01 05:30:00+05:30"
        );
        assert_eq!(s(|o| write_time(o, 45_296_500_000)), "12:34:56.5");
        assert_eq!(
            s(|o| write_interval(o, 14, 3, 14_706_000_000)),
            "1 year 2 mons 3 days 04:05:06"
        );
        assert_eq!(
            s(|o| write_interval(o, 0, -1, 7_200_000_000)),
            "-1 days +02:00:00"
        );
        assert_eq!(s(|o| write_interval(o, 0, 0, 0)), "00:00:00");
        assert_eq!(s(|o| write_interval(o, 0, 1, 0)), "1 day");
    }

    #[test]
    fn parses_literals() {
        assert_eq!(parse_date("2024-01-01"), Some(19_723));
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(parse_date("2024-01-01 +00"), Some(19_723));
        assert_eq!(parse_date("2024-01-01+02:00"), Some(19_723));
        assert_eq!(parse_date("2024-01-01 nonsense"), None);
        assert_eq!(
            parse_timestamp("2024-01-01 00:00:00"),
            Some(1_704_067_200_000_000)
        );
        assert_eq!(
            parse_timestamp("2024-01-01T00:00:00.5"),
            Some(1_704_067_200_500_000)
        );
        assert_eq!(parse_timestamp("2024-01-01"), Some(1_704_067_200_000_000));
        let utc = SessionTimeZone::Named(chrono_tz::UTC);
        assert_eq!(
            parse_timestamptz("2024-01-01 01:00:00+01", &utc),
            Some(1_704_067_200_000_000)
        );
        assert_eq!(
            parse_timestamptz("2024-01-01 05:30:00+05:30", &utc),
            Some(1_704_067_200_000_000)
        );
        let paris = SessionTimeZone::Named(chrono_tz::Europe::Paris);
        assert_eq!(
            parse_timestamptz("2024-01-01 01:00:00", &paris),
            Some(1_704_067_200_000_000)
        );
        assert_eq!(parse_timestamp("not a time"), None);
        assert_eq!(parse_time("12:34:56.5"), Some(45_296_500_000));
        assert_eq!(
            parse_interval("1 day 02:00:00"),
            Some((0, 1, 7_200_000_000))
        );
        assert_eq!(parse_interval("3 hours"), Some((0, 0, 10_800_000_000)));
        assert_eq!(parse_interval("1 year 2 mons"), Some((14, 0, 0)));
        assert_eq!(parse_interval("P1DT2H"), Some((0, 1, 7_200_000_000)));
    }
}
