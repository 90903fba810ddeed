//! LEB128 varints: an unsigned integer as 7-bit groups, lowest first, with the high bit of each
//! byte set while more follow. The byte format inside stored NID sets ([`crate::nid_set`]) and
//! state blocks ([`crate::state_blocks`]): NIDs and their deltas are mostly small, so most take
//! one or two bytes instead of eight.
//!
//! Reading never panics: stored bytes may be corrupt, and a corrupt value must be an error, not a
//! wrong number.

use std::fmt;

/// Why a varint could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarintError {
    /// The input ends inside a varint (its last byte says more follow).
    Truncated,
    /// The value needs more than 64 bits: a tenth byte above 1, or an eleventh byte.
    TooLong,
}

impl fmt::Display for VarintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VarintError::Truncated => "truncated varint",
            VarintError::TooLong => "varint longer than 64 bits",
        })
    }
}

/// Appends `value` to `out` in as few bytes as it takes (1 to 10).
pub fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads the varint that starts at `*pos` and moves `*pos` past it. A redundant zero group (as in
/// `[0x80, 0x00]` for 0) is accepted: it still names one value.
#[inline]
pub fn read_u64(bytes: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    let (mut value, mut shift) = (0u64, 0u32);
    loop {
        let byte = *bytes.get(*pos).ok_or(VarintError::Truncated)?;
        *pos += 1;
        // The tenth byte carries bit 63 alone: a larger group, or one more byte, overflows.
        if shift == 63 && byte > 1 {
            return Err(VarintError::TooLong);
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// How many varints end within `bytes` (each ends in its one byte below 0x80), without reading
/// them: an upper bound on what decoding yields, cheap enough to check before allocating.
pub fn count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b < 0x80).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_u64(&mut out, value);
        out
    }

    #[test]
    fn round_trips_with_the_expected_lengths() {
        let cases: [(u64, usize); 10] = [
            (0, 1),
            (1, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::from(u32::MAX), 5),
            (i64::MAX as u64, 9),
            (1 << 63, 10),
            (u64::MAX, 10),
        ];
        for (value, len) in cases {
            let bytes = encoded(value);
            assert_eq!(bytes.len(), len, "{value}");
            let mut pos = 0;
            assert_eq!(read_u64(&bytes, &mut pos), Ok(value));
            assert_eq!(pos, len);
        }
        assert_eq!(encoded(300), [0xac, 0x02]);
    }

    #[test]
    fn reads_one_value_after_another() {
        let mut bytes = Vec::new();
        for v in [5, 300, 0, u64::MAX] {
            write_u64(&mut bytes, v);
        }
        let mut pos = 0;
        let values: Vec<u64> = std::iter::from_fn(|| (pos < bytes.len()).then(|| read_u64(&bytes, &mut pos).unwrap())).collect();
        assert_eq!(values, [5, 300, 0, u64::MAX]);
        assert_eq!(count(&bytes), 4);
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert_eq!(read_u64(&[], &mut 0), Err(VarintError::Truncated));
        assert_eq!(read_u64(&[0x80], &mut 0), Err(VarintError::Truncated));
        assert_eq!(read_u64(&[0xff; 9], &mut 0), Err(VarintError::Truncated));
        let mut pos = 1;
        assert_eq!(read_u64(&[0x05], &mut pos), Err(VarintError::Truncated), "reading past the end");
    }

    #[test]
    fn values_past_64_bits_are_errors() {
        // The tenth byte may only carry bit 63.
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert_eq!(read_u64(&overflow, &mut 0), Err(VarintError::TooLong));
        overflow[9] = 0x7f;
        assert_eq!(read_u64(&overflow, &mut 0), Err(VarintError::TooLong));
        // Eleven bytes, even of zero groups.
        let mut over_long = vec![0x80; 10];
        over_long.push(0x00);
        assert_eq!(read_u64(&over_long, &mut 0), Err(VarintError::TooLong));
        let mut eleven = vec![0xff; 10];
        eleven.push(0x01);
        assert_eq!(read_u64(&eleven, &mut 0), Err(VarintError::TooLong));
    }

    #[test]
    fn redundant_zero_groups_name_the_same_value() {
        assert_eq!(read_u64(&[0x80, 0x00], &mut 0), Ok(0));
        assert_eq!(read_u64(&[0x81, 0x80, 0x00], &mut 0), Ok(1));
    }

    #[test]
    fn errors_read_as_what_went_wrong() {
        assert_eq!(VarintError::Truncated.to_string(), "truncated varint");
        assert_eq!(VarintError::TooLong.to_string(), "varint longer than 64 bits");
    }
}
