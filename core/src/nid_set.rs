//! Compact sets of NIDs: sorted, as deltas in LEB128 varints. The auth chain of a state event
//! is stored this way: NIDs of one room's chain sit close together, so most deltas take one or
//! two bytes instead of eight.

use crate::error::{Error, Result};

/// Encodes a set (any order, duplicates allowed) of positive NIDs.
pub fn encode(nids: impl IntoIterator<Item = i64>) -> Vec<u8> {
    let mut sorted: Vec<i64> = nids.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::with_capacity(sorted.len() * 2);
    let mut prev = 0i64;
    for n in sorted {
        let mut d = (n - prev) as u64;
        prev = n;
        loop {
            let byte = (d & 0x7f) as u8;
            d >>= 7;
            if d == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

/// Decodes what [`encode`] wrote: the NIDs in ascending order.
pub fn decode(bytes: &[u8]) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(bytes.len());
    let (mut prev, mut d, mut shift) = (0i64, 0u64, 0u32);
    for &b in bytes {
        if shift > 63 {
            return Err(Error::invalid(None, "corrupt NID set: a varint is longer than 64 bits"));
        }
        d |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            prev = prev.checked_add(d as i64).ok_or_else(|| Error::invalid(None, "corrupt NID set: NID overflow"))?;
            out.push(prev);
            d = 0;
            shift = 0;
        } else {
            shift += 7;
        }
    }
    if shift != 0 {
        return Err(Error::invalid(None, "corrupt NID set: truncated varint"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts() {
        let set = vec![5, 1_000_000_000_000, 3, 3, 130, 131];
        assert_eq!(decode(&encode(set)).unwrap(), vec![3, 5, 130, 131, 1_000_000_000_000]);
        assert_eq!(decode(&encode(Vec::new())).unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn close_nids_take_one_byte_each() {
        let set: Vec<i64> = (1_000_000..1_000_100).collect();
        assert_eq!(encode(set).len(), 3 + 99);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert!(decode(&[0x80]).is_err());
        assert!(decode(&[0xff; 11]).is_err());
    }
}
