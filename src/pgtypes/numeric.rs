//! `numeric` values: Arrow decimals as PostgreSQL text and binary.

/// Appends `unscaled / 10^scale` with exactly `scale` fraction digits, as
/// PostgreSQL prints a numeric of that display scale.
pub fn write_decimal(out: &mut Vec<u8>, unscaled: i128, scale: i8) {
    if scale <= 0 {
        let mut text = unscaled.to_string();
        if unscaled != 0 {
            for _ in 0..(-scale as usize) {
                text.push('0');
            }
        }
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let scale = scale as usize;
    let negative = unscaled < 0;
    let digits = unscaled.unsigned_abs().to_string();
    if negative {
        out.push(b'-');
    }
    if digits.len() <= scale {
        out.extend_from_slice(b"0.");
        for _ in digits.len()..scale {
            out.push(b'0');
        }
        out.extend_from_slice(digits.as_bytes());
    } else {
        let split = digits.len() - scale;
        out.extend_from_slice(&digits.as_bytes()[..split]);
        out.push(b'.');
        out.extend_from_slice(&digits.as_bytes()[split..]);
    }
}

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;

/// Appends PostgreSQL's binary `numeric`: ndigits, weight, sign, dscale and
/// base-10000 digits, most significant first.
pub fn write_decimal_binary(out: &mut Vec<u8>, unscaled: i128, scale: i8) {
    let negative = unscaled < 0;
    let (magnitude, dscale) = if scale >= 0 {
        (unscaled.unsigned_abs(), scale as i32)
    } else {
        (unscaled.unsigned_abs() * 10u128.pow((-scale) as u32), 0)
    };
    let text = magnitude.to_string();
    let (integer, fraction) = if dscale as usize >= text.len() {
        (
            "0".to_string(),
            format!("{}{}", "0".repeat(dscale as usize - text.len()), text),
        )
    } else {
        let split = text.len() - dscale as usize;
        (text[..split].to_string(), text[split..].to_string())
    };
    // Group the integer part from the decimal point leftwards, the fraction
    // rightwards, in base-10000 digits.
    let integer_padded = format!("{}{}", "0".repeat((4 - integer.len() % 4) % 4), integer);
    let fraction_padded = format!("{}{}", fraction, "0".repeat((4 - fraction.len() % 4) % 4));
    let mut groups: Vec<i16> = integer_padded
        .as_bytes()
        .chunks(4)
        .chain(fraction_padded.as_bytes().chunks(4))
        .map(|chunk| {
            chunk
                .iter()
                .fold(0i16, |acc, d| acc * 10 + (d - b'0') as i16)
        })
        .collect();
    let mut weight = (integer_padded.len() / 4) as i16 - 1;
    // Strip leading and trailing zero groups (PostgreSQL's canonical form).
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    let sign = if negative && !groups.is_empty() {
        NUMERIC_NEG
    } else {
        NUMERIC_POS
    };
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(dscale as u16).to_be_bytes());
    for group in groups {
        out.extend_from_slice(&group.to_be_bytes());
    }
}

/// Reads PostgreSQL's binary `numeric` into its decimal text form.
pub fn read_decimal_binary(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 8 {
        return None;
    }
    let ndigits = i16::from_be_bytes([bytes[0], bytes[1]]);
    let weight = i16::from_be_bytes([bytes[2], bytes[3]]) as i32;
    let sign = u16::from_be_bytes([bytes[4], bytes[5]]);
    let dscale = u16::from_be_bytes([bytes[6], bytes[7]]) as usize;
    if ndigits < 0 || bytes.len() != 8 + ndigits as usize * 2 {
        return None;
    }
    match sign {
        0xC000 => return Some("NaN".to_string()),
        0xD000 => return Some("Infinity".to_string()),
        0xF000 => return Some("-Infinity".to_string()),
        NUMERIC_POS | NUMERIC_NEG => {}
        _ => return None,
    }
    let digits: Vec<i32> = bytes[8..]
        .chunks(2)
        .map(|c| i16::from_be_bytes([c[0], c[1]]) as i32)
        .collect();
    if digits.iter().any(|d| !(0..10000).contains(d)) {
        return None;
    }
    let mut integer = String::new();
    for position in 0..=weight {
        let digit = digits.get(position as usize).copied().unwrap_or(0);
        if integer.is_empty() {
            integer = digit.to_string();
        } else {
            integer.push_str(&format!("{digit:04}"));
        }
    }
    if integer.is_empty() {
        integer.push('0');
    }
    let mut fraction = String::new();
    let mut index = weight + 1;
    while fraction.len() < dscale {
        let digit = if index >= 0 {
            digits.get(index as usize).copied().unwrap_or(0)
        } else {
            0
        };
        fraction.push_str(&format!("{digit:04}"));
        index += 1;
    }
    fraction.truncate(dscale);
    let mut text = String::new();
    if sign == NUMERIC_NEG {
        text.push('-');
    }
    text.push_str(&integer);
    if dscale > 0 {
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
}

/// Parses decimal text into an unscaled integer at `scale`, rounding half
/// away from zero as PostgreSQL does. `None` if malformed or out of range
/// for `precision` digits.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let text = text.trim();
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if integer.is_empty() && fraction.is_empty() {
        return None;
    }
    if !integer.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits: String = format!("{integer}{fraction}");
    // value = digits * 10^(exponent - fraction.len()); we want value * 10^scale.
    let shift = exponent - fraction.len() as i32 + scale as i32;
    let digits = digits.trim_start_matches('0');
    let mut value: i128 = 0;
    let unscaled = if shift >= 0 {
        for d in digits.bytes() {
            value = value.checked_mul(10)?.checked_add((d - b'0') as i128)?;
        }
        value.checked_mul(10i128.checked_pow(shift as u32)?)?
    } else {
        let keep = digits.len() as i32 + shift;
        if keep < 0 {
            0
        } else {
            let (kept, dropped) = digits.split_at(keep as usize);
            for d in kept.bytes() {
                value = value.checked_mul(10)?.checked_add((d - b'0') as i128)?;
            }
            if dropped.as_bytes().first().is_some_and(|d| *d >= b'5') {
                value = value.checked_add(1)?;
            }
            value
        }
    };
    let limit = 10i128.checked_pow(precision as u32)?;
    if unscaled >= limit {
        return None;
    }
    Some(if negative { -unscaled } else { unscaled })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(unscaled: i128, scale: i8) -> String {
        let mut out = Vec::new();
        write_decimal(&mut out, unscaled, scale);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_with_display_scale() {
        assert_eq!(text(1250, 2), "12.50");
        assert_eq!(text(-5, 2), "-0.05");
        assert_eq!(text(0, 2), "0.00");
        assert_eq!(text(7, 0), "7");
        assert_eq!(text(12, -2), "1200");
    }

    #[test]
    fn binary_round_trip() {
        for (unscaled, scale) in [
            (1250i128, 2i8),
            (-5, 2),
            (0, 3),
            (123456789012345678, 4),
            (10000, 0),
            (1, 10),
            (-99999999, 8),
        ] {
            let mut out = Vec::new();
            write_decimal_binary(&mut out, unscaled, scale);
            assert_eq!(
                read_decimal_binary(&out).unwrap(),
                text(unscaled, scale),
                "{unscaled} {scale}"
            );
        }
    }

    #[test]
    fn binary_matches_postgres_layout() {
        // 12.50 in PostgreSQL: ndigits 2, weight 0, sign 0, dscale 2, digits [12, 5000].
        let mut out = Vec::new();
        write_decimal_binary(&mut out, 1250, 2);
        assert_eq!(out, vec![0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x13, 0x88]);
    }

    #[test]
    fn parses_and_rounds() {
        assert_eq!(parse_decimal("12.5", 10, 2), Some(1250));
        assert_eq!(parse_decimal("-0.005", 10, 2), Some(-1));
        assert_eq!(parse_decimal("1.004", 10, 2), Some(100));
        assert_eq!(parse_decimal("1e3", 10, 2), Some(100000));
        assert_eq!(parse_decimal("12345", 4, 0), None);
        assert_eq!(parse_decimal("abc", 10, 2), None);
        assert_eq!(parse_decimal(".5", 10, 1), Some(5));
    }
}
