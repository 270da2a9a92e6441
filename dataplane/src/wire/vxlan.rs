//! VXLAN headers (RFC 7348 §5): 8 bytes after the outer UDP header, then the inner Ethernet
//! frame.
//!
//! ```text
//!  0               1               2               3
//! |R|R|R|R|I|R|R|R|            Reserved (24 bits)                  |
//! |          VXLAN Network Identifier (VNI, 24 bits)  | Reserved   |
//! ```

use super::{WireError, read_u32, write_u32};

mod field {
    pub const FLAGS: usize = 0;
    /// The VNI is the high 24 bits of the second 32-bit word.
    pub const VNI_WORD: usize = 4;
    pub const PAYLOAD: usize = 8;
}

/// Length of a VXLAN header.
pub const VXLAN_HEADER_LEN: usize = field::PAYLOAD;

/// The IANA-assigned VXLAN UDP destination port.
pub const VXLAN_UDP_PORT: u16 = 4789;

/// The I flag: the VNI is valid; RFC 7348 requires it set.
const FLAG_I: u8 = 0x08;

const VNI_MAX: u32 = 0x00ff_ffff;

/// A zero-copy view of a VXLAN header and the inner frame after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// Wraps `buffer` without checking it; getters panic if it is shorter than 8 bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> VxlanHeader<T> {
        VxlanHeader { buffer }
    }

    /// Wraps `buffer` after checking it holds the 8-byte header. The I flag is checked by
    /// [`VxlanRepr::parse`] (or test [`i_flag`](Self::i_flag) directly).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<VxlanHeader<T>, WireError> {
        let header = VxlanHeader::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// The check of [`new_checked`](Self::new_checked).
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < VXLAN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the I flag (valid VNI) is set.
    #[inline]
    pub fn i_flag(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The 24-bit VXLAN network identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VNI_WORD) >> 8
    }

    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanHeader<T> {
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the VNI (bits above the low 24 are dropped), keeping the reserved low byte.
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        let old = read_u32(self.buffer.as_ref(), field::VNI_WORD);
        write_u32(
            self.buffer.as_mut(),
            field::VNI_WORD,
            ((vni & VNI_MAX) << 8) | (old & 0xff),
        );
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD..)
            .unwrap_or(&mut [])
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for VxlanHeader<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A VXLAN header: all there is to it is the VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanRepr {
    /// 24 bits.
    pub vni: u32,
}

impl VxlanRepr {
    /// Parses the header; a missing I flag is `Malformed` (RFC 7348 §5: "MUST be set to 1 for
    /// a valid VXLAN Network ID"). Reserved bits are ignored, as the RFC asks of receivers.
    pub fn parse<T: AsRef<[u8]>>(header: &VxlanHeader<T>) -> Result<VxlanRepr, WireError> {
        header.check_len()?;
        if !header.i_flag() {
            return Err(WireError::Malformed);
        }
        Ok(VxlanRepr { vni: header.vni() })
    }

    #[inline]
    pub const fn header_len(&self) -> usize {
        VXLAN_HEADER_LEN
    }

    /// Writes the header: I flag, zero reserved fields, the VNI. The buffer must hold at least
    /// [`VXLAN_HEADER_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut VxlanHeader<T>) {
        let buf = header.buffer.as_mut();
        write_u32(buf, field::FLAGS, u32::from(FLAG_I) << 24);
        write_u32(buf, field::VNI_WORD, (self.vni & VNI_MAX) << 8);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::{EtherType, EthernetFrame};
    use proptest::prelude::*;

    /// VNI 0x123456 carrying a 14-byte inner Ethernet header.
    const PACKET: [u8; 22] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x00, // VXLAN
        0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, // inner Ethernet
    ];

    #[test]
    fn parses_known_header_and_inner_frame() {
        let header = VxlanHeader::new_checked(&PACKET[..]).unwrap();
        assert!(header.i_flag());
        assert_eq!(header.vni(), 0x123456);
        assert_eq!(
            VxlanRepr::parse(&header).unwrap(),
            VxlanRepr { vni: 0x123456 }
        );
        let inner = EthernetFrame::new_checked(header.payload()).unwrap();
        assert_eq!(inner.ethertype(), EtherType::IPV4);

        let mut out = PACKET;
        out[..8].fill(0xff);
        VxlanRepr { vni: 0x123456 }.emit(&mut VxlanHeader::new_unchecked(&mut out[..]));
        assert_eq!(out, PACKET);
    }

    #[test]
    fn requires_the_i_flag_and_eight_bytes() {
        let mut no_i = PACKET;
        no_i[0] = 0;
        let header = VxlanHeader::new_checked(&no_i[..]).unwrap();
        assert_eq!(VxlanRepr::parse(&header), Err(WireError::Malformed));
        assert_eq!(
            VxlanHeader::new_checked(&PACKET[..7]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn set_vni_masks_and_keeps_reserved() {
        let mut buf = PACKET;
        buf[7] = 0xaa;
        let mut header = VxlanHeader::new_checked(&mut buf[..]).unwrap();
        header.set_vni(0xff00_0001);
        assert_eq!(header.vni(), 1);
        assert_eq!(header.as_ref()[7], 0xaa);
    }

    proptest! {
        #[test]
        fn repr_round_trip(vni in 0u32..=VNI_MAX, garbage in any::<[u8; 8]>()) {
            let repr = VxlanRepr { vni };
            let mut buf = garbage;
            repr.emit(&mut VxlanHeader::new_unchecked(&mut buf[..]));
            let header = VxlanHeader::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(VxlanRepr::parse(&header).unwrap(), repr);
            prop_assert_eq!(buf[0], FLAG_I);
            prop_assert_eq!(&buf[1..4], &[0, 0, 0]);
            prop_assert_eq!(buf[7], 0);
        }

        #[test]
        fn hostile_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(header) = VxlanHeader::new_checked(&data[..]) {
                let _ = (header.flags(), header.i_flag(), header.vni(), header.payload());
                let _ = VxlanRepr::parse(&header);
            }
            let _ = VxlanRepr::parse(&VxlanHeader::new_unchecked(&data[..]));
        }
    }
}
