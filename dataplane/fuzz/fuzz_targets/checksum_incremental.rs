//! RFC 1624 incremental updates against recomputation, on arbitrary data.
//!
//! Input layout: 2 bytes word index, 4 bytes new value, then the covered data (an even
//! number of bytes is used). Checks `update16`, `update32`, `update_bytes`, the UDP rules, and
//! the IPv4 TTL decrement built on them.
#![no_main]

use kxdp_dataplane::wire::checksum;
use kxdp_dataplane::wire::{IPV4_MIN_HEADER_LEN, Ipv4Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((head, rest)) = input.split_first_chunk::<6>() else {
        return;
    };
    let mut data = rest.to_vec();
    data.truncate(data.len() & !1);
    if data.len() < 2 {
        return;
    }
    let words = data.len() / 2;
    let at = usize::from(u16::from_be_bytes([head[0], head[1]])) % words * 2;
    let new32 = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
    let new16 = (new32 >> 16) as u16;

    word16(&data, at, new16);
    if at + 4 <= data.len() {
        word32(&data, at, new32);
    }
    udp_rules(&data, at, new16);
    ttl(&data);
});

fn all_zero(data: &[u8]) -> bool {
    data.iter().all(|&b| b == 0)
}

fn word16(data: &[u8], at: usize, new: u16) {
    let csum = checksum::checksum(data);
    let old = u16::from_be_bytes([data[at], data[at + 1]]);
    let mut after = data.to_vec();
    after[at..at + 2].copy_from_slice(&new.to_be_bytes());
    let updated = checksum::update16(csum, old, new);
    let mut with_csum = after.clone();
    with_csum.extend_from_slice(&updated.to_be_bytes());
    if all_zero(&after) {
        // The one documented exception of eqn. 3: +0 where recomputing gives -0.
        assert_eq!(updated, 0);
    } else {
        assert_eq!(updated, checksum::checksum(&after));
        assert!(checksum::verify(&with_csum));
    }
}

fn word32(data: &[u8], at: usize, new: u32) {
    let csum = checksum::checksum(data);
    let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let mut after = data.to_vec();
    after[at..at + 4].copy_from_slice(&new.to_be_bytes());
    if all_zero(&after) {
        return;
    }
    let expected = checksum::checksum(&after);
    assert_eq!(checksum::update32(csum, old, new), expected);
    assert_eq!(
        checksum::update_bytes(csum, &old.to_be_bytes(), &new.to_be_bytes()),
        expected
    );
}

fn udp_rules(data: &[u8], at: usize, new: u16) {
    // A UDP segment's covered data always includes the nonzero protocol word.
    let mut data = data.to_vec();
    data.extend_from_slice(&[0, 17]);
    let csum = checksum::udp_nonzero(checksum::checksum(&data));
    let old = u16::from_be_bytes([data[at], data[at + 1]]);
    let mut after = data.clone();
    after[at..at + 2].copy_from_slice(&new.to_be_bytes());
    let updated = checksum::update_udp16(csum, old, new);
    assert_ne!(updated, 0);
    assert_eq!(updated, checksum::udp_nonzero(checksum::checksum(&after)));
    assert_eq!(checksum::update_udp16(0, old, new), 0, "0 means none");
}

fn ttl(data: &[u8]) {
    let Some(header) = data.get(..IPV4_MIN_HEADER_LEN) else {
        return;
    };
    let mut header = header.to_vec();
    header[0] = 0x45;
    header[2..4].copy_from_slice(&(IPV4_MIN_HEADER_LEN as u16).to_be_bytes());
    let mut ip = Ipv4Packet::new_checked(&mut header[..]).expect("valid 20-byte header");
    ip.fill_checksum();
    let before = ip.ttl();
    match ip.decrement_ttl() {
        None => assert!(before <= 1),
        Some(after) => {
            assert_eq!(after, before - 1);
            let incremental = ip.checksum();
            ip.fill_checksum();
            assert_eq!(incremental, ip.checksum());
        }
    }
}
