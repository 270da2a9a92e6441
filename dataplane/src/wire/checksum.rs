//! The Internet checksum: RFC 1071 sums and RFC 1624 incremental updates.
//!
//! Vocabulary used below:
//! - a **sum** is the one's-complement sum of big-endian 16-bit words, folded to 16 bits and not
//!   inverted ([`sum`], [`add`], the pseudo-header helpers). Sums compose with [`add`].
//! - a **checksum** is the inverted sum, what goes in a header field ([`checksum`]).
//!
//! A sum over a slice treats the slice as starting at an even offset of the checksummed data;
//! an odd trailing byte is the high byte of a word padded with zero (RFC 1071 §4.1). Sums of
//! pieces therefore only compose when every piece but the last has even length, which holds for
//! every header split we make (pseudo-header | L4 header | payload).
//!
//! # Incremental updates (RFC 1624)
//!
//! The NAT and TTL paths change a few words and fix the checksum without re-reading the packet:
//! `HC' = ~(~HC + ~m + m')` (RFC 1624 eqn. 3), where `HC` is the old checksum, `m` the old
//! word(s) and `m'` the new ones. Eqn. 2 (`HC' = HC - ~m - m'`) of RFC 1141 can produce
//! `0xffff` (-0) where a from-scratch computation gives `0x0000`; eqn. 3 cannot. Precisely:
//! when `HC` was computed from scratch, eqn. 3 yields exactly what a recomputation would, bit for
//! bit, unless the updated data is all zero words (then it yields `0x0000` where recomputing
//! yields `0xffff`). All-zero data cannot occur for an IPv4 header (the version nibble) nor for
//! a TCP/UDP pseudo-header (the protocol number), so for the packets we rewrite the update is
//! exact. The property tests below check this on every input.
//!
//! # UDP
//!
//! UDP over IPv4 uses a checksum field of `0` to mean "no checksum" (RFC 768), so a computed
//! checksum of `0` is sent as `0xffff`, and a packet that arrived with `0` must leave with `0`
//! whatever was rewritten. [`update_udp16`] and [`update_udp_bytes`] apply both rules; use them,
//! not [`update16`] / [`update_bytes`], on a UDP checksum field. (Over IPv6 the checksum is
//! mandatory, so `0` never arrives on a valid packet and the same helpers are still right.)

use std::net::{Ipv4Addr, Ipv6Addr};

use super::IpProtocol;

/// Folds a wide accumulator of 16-bit-word sums into a 16-bit one's-complement sum.
///
/// Because `2^16 ≡ 1 (mod 0xffff)`, adding the high halves back in (the end-around carry)
/// preserves the value modulo `0xffff`; a nonzero input never folds to `0`.
#[inline]
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Adds `data` to a wide accumulator.
///
/// Reads big-endian 32-bit words into a `u64`: a 32-bit word `ab:cd` is `ab * 2^16 + cd`,
/// which is `ab + cd` modulo `0xffff`, so folding the total gives the RFC 1071 sum. This is
/// the "deferred carries" trick of RFC 1071 §2(C) and lets the compiler vectorise the loop.
/// A `u64` cannot overflow below 2^32 words (16 GiB).
#[inline]
fn accumulate(mut acc: u64, data: &[u8]) -> u64 {
    let (words, tail) = data.as_chunks::<4>();
    for word in words {
        acc += u64::from(u32::from_be_bytes(*word));
    }
    // 0..=3 trailing bytes, padded with zero at the end: a 2-byte tail `ab` becomes `ab:00`
    // (≡ `ab`) and an odd final byte `c` becomes the high byte of its word, as RFC 1071 asks.
    let mut last = [0u8; 4];
    if let Some(dst) = last.get_mut(..tail.len()) {
        dst.copy_from_slice(tail);
    }
    acc + u64::from(u32::from_be_bytes(last))
}

/// The RFC 1071 one's-complement sum of `data`, folded and not inverted.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    fold(accumulate(0, data))
}

/// One's-complement addition of two sums.
#[inline]
pub fn add(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

/// The Internet checksum of `data`: the inverted sum, ready for a header field whose bytes
/// inside `data` were zero when it was computed.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Whether `data`, checksum field included, sums to `0xffff` (-0): a valid checksum.
#[inline]
pub fn verify(data: &[u8]) -> bool {
    sum(data) == 0xffff
}

/// The sum of the IPv4 pseudo-header (RFC 768, RFC 9293 §3.1): source, destination, zero,
/// protocol, and the L4 length (UDP: its length field; TCP: header plus data).
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, l4_len: u16) -> u16 {
    let acc = u64::from(src.to_bits())
        + u64::from(dst.to_bits())
        + u64::from(protocol.0)
        + u64::from(l4_len);
    fold(acc)
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit upper-layer
/// length, three zero bytes and the next-header value of the upper layer.
#[inline]
pub fn pseudo_header_v6(
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    next_header: IpProtocol,
    l4_len: u32,
) -> u16 {
    let acc = accumulate(0, &src.octets());
    let acc = accumulate(acc, &dst.octets());
    fold(acc + u64::from(l4_len) + u64::from(next_header.0))
}

/// RFC 1624 eqn. 3 on a sum of old and new words: `~(~HC + ~m + m')`.
#[inline]
fn update_with_sums(old_csum: u16, old_sum: u16, new_sum: u16) -> u16 {
    !fold(u64::from(!old_csum) + u64::from(!old_sum) + u64::from(new_sum))
}

/// The checksum after one 16-bit word of the covered data changed from `old_word` to
/// `new_word` (RFC 1624 eqn. 3). The word must sit at an even offset of the covered data:
/// for an odd-aligned byte pair, pass the whole aligned word it belongs to, or use
/// [`update_bytes`] with the aligned bytes.
#[inline]
pub fn update16(old_csum: u16, old_word: u16, new_word: u16) -> u16 {
    update_with_sums(old_csum, old_word, new_word)
}

/// As [`update16`] for a 32-bit field at an even offset (an IPv4 address as `u32`, a TCP
/// sequence number).
#[inline]
pub fn update32(old_csum: u16, old: u32, new: u32) -> u16 {
    let old_sum = fold(u64::from(old >> 16) + u64::from(old & 0xffff));
    let new_sum = fold(u64::from(new >> 16) + u64::from(new & 0xffff));
    update_with_sums(old_csum, old_sum, new_sum)
}

/// As [`update16`] for a run of bytes starting at an even offset, typically an address
/// (4 or 16 bytes). `old` and `new` are the bytes before and after; for an odd length, both
/// end on the high byte of a word, so pass equal lengths.
#[inline]
pub fn update_bytes(old_csum: u16, old: &[u8], new: &[u8]) -> u16 {
    update_with_sums(old_csum, sum(old), sum(new))
}

/// The UDP rules around [`update16`]: a field of `0` ("no checksum", IPv4 only) stays `0`,
/// and a result of `0` is sent as `0xffff`.
#[inline]
pub fn update_udp16(old_csum: u16, old_word: u16, new_word: u16) -> u16 {
    if old_csum == 0 {
        return 0;
    }
    udp_nonzero(update16(old_csum, old_word, new_word))
}

/// The UDP rules of [`update_udp16`] around [`update_bytes`].
#[inline]
pub fn update_udp_bytes(old_csum: u16, old: &[u8], new: &[u8]) -> u16 {
    if old_csum == 0 {
        return 0;
    }
    udp_nonzero(update_bytes(old_csum, old, new))
}

/// A computed UDP checksum of `0` is transmitted as `0xffff` (RFC 768), since `0` in the field
/// means "none"; in one's complement both are zero, so receivers verify either.
#[inline]
pub fn udp_nonzero(csum: u16) -> u16 {
    if csum == 0 { 0xffff } else { csum }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook word-at-a-time sum, to check the wide one against.
    fn naive_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(word);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // A classic capture: 45 00 00 73 00 00 40 00 40 11 [b8 61] c0 a8 00 01 c0 a8 00 c7.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(verify(&hdr));
    }

    #[test]
    fn odd_length_pads_the_last_byte_high() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn update16_rfc1624_example() {
        // RFC 1624 §4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000 by eqn. 3,
        // where eqn. 2 gives the -0 of 0xffff.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn all_zero_result_is_the_documented_exception() {
        // Data [0x0001], checksum !1 = 0xfffe; rewrite the word to 0: all data zero.
        let csum = checksum(&[0x00, 0x01]);
        assert_eq!(update16(csum, 0x0001, 0x0000), 0x0000);
        assert_eq!(checksum(&[0x00, 0x00]), 0xffff);
    }

    #[test]
    fn udp_zero_stays_zero_and_computed_zero_is_ffff() {
        assert_eq!(update_udp16(0, 1234, 80), 0);
        assert_eq!(update_udp_bytes(0, &[10, 0, 0, 1], &[10, 0, 0, 2]), 0);
        // update16 would give 0 here; UDP sends it as 0xffff.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0);
        assert_eq!(update_udp16(0xdd2f, 0x5555, 0x3285), 0xffff);
    }

    #[test]
    fn pseudo_header_v4_matches_bytes() {
        let src = Ipv4Addr::new(192, 168, 0, 1);
        let dst = Ipv4Addr::new(10, 1, 2, 3);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 17, 0x01, 0x00]);
        assert_eq!(
            pseudo_header_v4(src, dst, IpProtocol::UDP, 0x100),
            sum(&bytes)
        );
    }

    /// Even-length data of at least two words, an even offset into it, and a new word.
    fn data_and_word() -> impl Strategy<Value = (Vec<u8>, usize, u16)> {
        (1usize..100)
            .prop_flat_map(|words| {
                (
                    proptest::collection::vec(any::<u8>(), words * 2),
                    0..words,
                    any::<u16>(),
                )
            })
            .prop_map(|(data, word, new)| (data, word * 2, new))
    }

    proptest! {
        #[test]
        fn wide_sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(sum(&data), naive_sum(&data));
        }

        #[test]
        fn sums_of_even_pieces_compose(
            a in proptest::collection::vec(any::<u8>(), 0..50),
            b in proptest::collection::vec(any::<u8>(), 0..50),
        ) {
            let mut a = a;
            if a.len() % 2 == 1 { a.pop(); }
            let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
            prop_assert_eq!(add(sum(&a), sum(&b)), sum(&whole));
        }

        #[test]
        fn update16_equals_recompute((data, at, new) in data_and_word()) {
            let csum = checksum(&data);
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            let mut after = data.clone();
            after[at..at + 2].copy_from_slice(&new.to_be_bytes());
            // The documented exception: eqn. 3 gives +0 for all-zero data.
            prop_assume!(after.iter().any(|&b| b != 0));
            prop_assert_eq!(update16(csum, old, new), checksum(&after));
        }

        #[test]
        fn update32_and_bytes_equal_recompute(
            (data, at, _) in data_and_word().prop_filter("room for 4 bytes", |(d, at, _)| at + 4 <= d.len()),
            new in any::<u32>(),
        ) {
            let csum = checksum(&data);
            let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            let mut after = data.clone();
            after[at..at + 4].copy_from_slice(&new.to_be_bytes());
            prop_assume!(after.iter().any(|&b| b != 0));
            prop_assert_eq!(update32(csum, old, new), checksum(&after));
            prop_assert_eq!(
                update_bytes(csum, &old.to_be_bytes(), &new.to_be_bytes()),
                checksum(&after)
            );
        }

        #[test]
        fn udp_update_equals_recompute_under_udp_rules(
            (data, at, new) in data_and_word(),
        ) {
            // Model a UDP segment's covered data: a nonzero pseudo-header word (protocol 17)
            // keeps the data nonzero, as it always is for real segments.
            let mut data = data;
            data.extend_from_slice(&[0, 17]);
            let csum = udp_nonzero(checksum(&data));
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            let mut after = data.clone();
            after[at..at + 2].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update_udp16(csum, old, new), udp_nonzero(checksum(&after)));
            prop_assert!(verify(&[after.as_slice(), &update_udp16(csum, old, new).to_be_bytes()].concat()));
        }
    }
}
