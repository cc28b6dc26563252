//! One non-NULL value as PostgreSQL types it, borrowed from wherever it is
//! held (an Arrow array, an online store row), and its text and binary
//! forms. Every value the server sends is written by [`Datum::write_text`]
//! or [`Datum::write_binary`], so an online lookup (which never builds Arrow
//! arrays) prints values exactly as a query does.

use super::datetime::{
    PG_EPOCH_DAYS, PG_EPOCH_MICROS, write_date, write_interval, write_time, write_timestamp,
    write_timestamptz,
};
use super::float::{write_f32, write_f64};
use super::numeric::{write_decimal, write_decimal_binary};
use super::output::OutputContext;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Datum<'a> {
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    /// PostgreSQL's unsigned 32-bit type.
    Oid(u32),
    Float4(f32),
    Float8(f64),
    /// `unscaled / 10^scale`.
    Numeric(i128, i8),
    Text(&'a str),
    Bytea(&'a [u8]),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Wall-clock microseconds since 1970-01-01 00:00.
    Timestamp(i64),
    /// Microseconds since 1970-01-01 00:00 UTC.
    TimestampTz(i64),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
}

impl Datum<'_> {
    /// Appends the text form.
    pub fn write_text(&self, ctx: &OutputContext, out: &mut Vec<u8>) {
        match *self {
            Datum::Bool(v) => out.push(if v { b't' } else { b'f' }),
            Datum::Int2(v) => write_int(out, v as i64),
            Datum::Int4(v) => write_int(out, v as i64),
            Datum::Int8(v) => write_int(out, v),
            Datum::Oid(v) => write_int(out, v as i64),
            Datum::Float4(v) => write_f32(out, v, ctx.extra_float_digits),
            Datum::Float8(v) => write_f64(out, v, ctx.extra_float_digits),
            Datum::Numeric(unscaled, scale) => write_decimal(out, unscaled, scale),
            Datum::Text(v) => out.extend_from_slice(v.as_bytes()),
            Datum::Bytea(v) => write_bytea_hex(out, v),
            Datum::Date(days) => write_date(out, days),
            Datum::Time(micros) => write_time(out, micros),
            Datum::Timestamp(micros) => write_timestamp(out, micros),
            Datum::TimestampTz(micros) => write_timestamptz(out, micros, &ctx.time_zone),
            Datum::Interval {
                months,
                days,
                micros,
            } => write_interval(out, months, days, micros),
        }
    }

    /// Appends the binary form, as PostgreSQL's `typsend`.
    pub fn write_binary(&self, out: &mut Vec<u8>) {
        match *self {
            Datum::Bool(v) => out.push(v as u8),
            Datum::Int2(v) => out.extend_from_slice(&v.to_be_bytes()),
            Datum::Int4(v) => out.extend_from_slice(&v.to_be_bytes()),
            Datum::Int8(v) => out.extend_from_slice(&v.to_be_bytes()),
            Datum::Oid(v) => out.extend_from_slice(&v.to_be_bytes()),
            Datum::Float4(v) => out.extend_from_slice(&v.to_be_bytes()),
            Datum::Float8(v) => out.extend_from_slice(&v.to_be_bytes()),
            Datum::Numeric(unscaled, scale) => write_decimal_binary(out, unscaled, scale),
            Datum::Text(v) => out.extend_from_slice(v.as_bytes()),
            Datum::Bytea(v) => out.extend_from_slice(v),
            Datum::Date(days) => out.extend_from_slice(&(days - PG_EPOCH_DAYS).to_be_bytes()),
            Datum::Time(micros) => out.extend_from_slice(&micros.to_be_bytes()),
            Datum::Timestamp(micros) | Datum::TimestampTz(micros) => {
                out.extend_from_slice(&(micros - PG_EPOCH_MICROS).to_be_bytes())
            }
            Datum::Interval {
                months,
                days,
                micros,
            } => {
                out.extend_from_slice(&micros.to_be_bytes());
                out.extend_from_slice(&days.to_be_bytes());
                out.extend_from_slice(&months.to_be_bytes());
            }
        }
    }
}

fn write_int(out: &mut Vec<u8>, value: i64) {
    let mut buffer = itoa::Buffer::new();
    out.extend_from_slice(buffer.format(value).as_bytes());
}

fn write_bytea_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 + bytes.len() * 2);
    out.extend_from_slice(b"\\x");
    for byte in bytes {
        out.push(HEX[(byte >> 4) as usize]);
        out.push(HEX[(byte & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(datum: Datum) -> String {
        let mut out = Vec::new();
        datum.write_text(&OutputContext::default(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_forms() {
        assert_eq!(text(Datum::Bool(true)), "t");
        assert_eq!(text(Datum::Int8(-42)), "-42");
        assert_eq!(text(Datum::Numeric(12345, 2)), "123.45");
        assert_eq!(
            text(Datum::Numeric(u64::MAX as i128, 0)),
            u64::MAX.to_string()
        );
        assert_eq!(text(Datum::Bytea(&[0xde, 0xad])), "\\xdead");
        assert_eq!(text(Datum::Date(0)), "1970-01-01");
        assert_eq!(text(Datum::Timestamp(1_500_000)), "1970-01-01 00:00:01.5");
        assert_eq!(text(Datum::TimestampTz(0)), "1970-01-01 00:00:00+00");
        assert_eq!(text(Datum::Float8(0.1)), "0.1");
    }

    #[test]
    fn binary_forms() {
        let mut out = Vec::new();
        Datum::Date(PG_EPOCH_DAYS).write_binary(&mut out);
        assert_eq!(out, 0i32.to_be_bytes());
        out.clear();
        Datum::Interval {
            months: 1,
            days: 2,
            micros: 3,
        }
        .write_binary(&mut out);
        assert_eq!(out.len(), 16);
    }
}
