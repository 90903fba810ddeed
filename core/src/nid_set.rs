//! Compact sets of NIDs: sorted, as deltas in LEB128 varints. The auth chain of a state event
//! is stored this way: NIDs of one room's chain sit close together, so most deltas take one or
//! two bytes instead of eight.

use std::fmt::Display;

use crate::error::{Error, Result};
use crate::varint;

/// Encodes a set (any order, duplicates allowed) of positive NIDs.
pub fn encode(nids: impl IntoIterator<Item = i64>) -> Vec<u8> {
    let mut sorted: Vec<i64> = nids.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::with_capacity(sorted.len() * 2);
    let mut prev = 0i64;
    for n in sorted {
        varint::write_u64(&mut out, (n - prev) as u64);
        prev = n;
    }
    out
}

/// The most NIDs [`decode`] and [`union`] return (256 MiB as 8-byte NIDs): a stored auth chain
/// holds at most a room's events, so only corrupt or hostile input comes near it, and it is
/// refused before anything that size is allocated.
pub const MAX_DECODED: usize = 1 << 25;

/// How many NIDs an encoded set holds (one per varint), refused past [`MAX_DECODED`].
fn checked_count(bytes: &[u8]) -> Result<usize> {
    let n = varint::count(bytes);
    if n > MAX_DECODED {
        return Err(Error::too_large(format!("a NID set of {n} NIDs; at most {MAX_DECODED} are decoded")));
    }
    Ok(n)
}

/// Decodes what [`encode`] wrote: the NIDs in ascending order.
pub fn decode(bytes: &[u8]) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(checked_count(bytes)?);
    for_each(bytes, |n| out.push(n))?;
    Ok(out)
}

/// Calls `f` with each NID of an encoded set, ascending, without collecting them.
fn for_each(bytes: &[u8], mut f: impl FnMut(i64)) -> Result<()> {
    let (mut prev, mut pos) = (0i64, 0usize);
    while pos < bytes.len() {
        let delta = varint::read_u64(bytes, &mut pos).map_err(corrupt)?;
        // A delta past i64::MAX wraps below the previous NID, which `union` refuses.
        prev = prev.checked_add(delta as i64).ok_or_else(|| corrupt("NID overflow"))?;
        f(prev);
    }
    Ok(())
}

fn corrupt(what: impl Display) -> Error {
    Error::invalid(None, format!("corrupt NID set: {what}"))
}

/// The widest NID range [`union`] covers with a bitmap (128 MiB); wider unions sort instead.
pub const MAX_UNION_SPAN: i64 = 1 << 30;

/// The union of encoded sets, ascending. Decoded straight into a bitmap over the span of the
/// NIDs (one bit per NID between the smallest and the largest, grown as needed): the chains of a
/// 50,000-entry state hold ~50 million NIDs between them but only thousands of distinct ones,
/// which sorting or hashing them would not exploit.
pub fn union(sets: &[&[u8]]) -> Result<Vec<i64>> {
    // The smallest first NID is the bitmap's base (every set is ascending).
    let mut base: Option<i64> = None;
    for set in sets {
        if let Some(first) = first_nid(set)? {
            base = Some(base.map_or(first, |b| b.min(first)));
        }
    }
    let Some(base) = base else { return Ok(Vec::new()) };
    let mut bits: Vec<u64> = Vec::new();
    let (mut below_base, mut beyond_span) = (false, false);
    for set in sets {
        for_each(set, |n| match n.checked_sub(base) {
            Some(bit) if (0..MAX_UNION_SPAN).contains(&bit) => {
                let word = (bit / 64) as usize;
                if word >= bits.len() {
                    bits.resize(word + 1, 0);
                }
                bits[word] |= 1 << (bit % 64);
            }
            Some(bit) if bit >= MAX_UNION_SPAN => beyond_span = true,
            _ => below_base = true,
        })?;
        if below_base {
            // Every set ascends from its first NID, so only a delta that wrapped gets here.
            return Err(corrupt("a NID below the set's first one"));
        }
        if beyond_span {
            // NIDs spread over more than the bitmap covers (a room whose events are far apart
            // in a huge database): sort and deduplicate instead.
            let total = sets.iter().map(|s| checked_count(s)).sum::<Result<usize>>()?;
            if total > MAX_DECODED {
                return Err(Error::too_large(format!("a union of {total} NIDs; at most {MAX_DECODED} are decoded")));
            }
            let mut all: Vec<i64> = Vec::with_capacity(total);
            for set in sets {
                for_each(set, |n| all.push(n))?;
            }
            all.sort_unstable();
            all.dedup();
            return Ok(all);
        }
    }
    let distinct: usize = bits.iter().map(|w| w.count_ones() as usize).sum();
    if distinct > MAX_DECODED {
        return Err(Error::too_large(format!("a union of {distinct} NIDs; at most {MAX_DECODED} are decoded")));
    }
    let mut out = Vec::with_capacity(distinct);
    for (w, &word) in bits.iter().enumerate() {
        let mut rest = word;
        while rest != 0 {
            let i = rest.trailing_zeros() as i64;
            out.push(base + w as i64 * 64 + i);
            rest &= rest - 1;
        }
    }
    Ok(out)
}

/// The first NID of a set, if any (decoding stops after it).
fn first_nid(bytes: &[u8]) -> Result<Option<i64>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    // The first delta is from 0, so it is the NID itself.
    let first = varint::read_u64(bytes, &mut 0).map_err(corrupt)?;
    Ok(Some(first as i64))
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
    fn union_equals_a_sorted_dedup_of_all_sets() {
        let mut rng = crate::prng::Rng::new(7);
        let mut below = |m| rng.below(m);
        for round in 0..50 {
            let sets: Vec<Vec<i64>> = (0..(round % 7))
                .map(|_| {
                    let n = below(300);
                    (0..n).map(|_| 1_000_000 + below(5_000) as i64).collect()
                })
                .collect();
            let encoded: Vec<Vec<u8>> = sets.iter().map(|s| encode(s.iter().copied())).collect();
            let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
            let mut expected: Vec<i64> = sets.concat();
            expected.sort_unstable();
            expected.dedup();
            assert_eq!(union(&refs).unwrap(), expected);
        }
        assert!(union(&[&[0x80]]).is_err());
        // A delta that wraps below the first NID is an error; a span past the bitmap's is sorted.
        assert!(union(&[&encode([5]), &[0x05, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]]).is_err());
        let wide = [encode([1, 7, MAX_UNION_SPAN * 3]), encode([7, MAX_UNION_SPAN])];
        assert_eq!(union(&[&wide[0], &wide[1]]).unwrap(), vec![1, 7, MAX_UNION_SPAN, MAX_UNION_SPAN * 3]);
        assert_eq!(union(&[&encode([1, MAX_UNION_SPAN])]).unwrap(), vec![1, MAX_UNION_SPAN]);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert!(decode(&[0x80]).is_err());
        assert!(decode(&[0xff; 11]).is_err());
    }

    #[test]
    fn refuses_sets_beyond_the_decode_limit() {
        // One byte per NID (deltas of 1), one NID past the limit: refused before decoding.
        let bytes = vec![1u8; MAX_DECODED + 1];
        assert_eq!(decode(&bytes).unwrap_err().kind, crate::ErrorKind::TooLarge);
        assert_eq!(union(&[&bytes]).unwrap_err().kind, crate::ErrorKind::TooLarge);
        assert_eq!(decode(&vec![1u8; 1000]).unwrap().len(), 1000);
    }
}
