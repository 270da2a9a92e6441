//! Safe wrappers over the bpf(2) commands we use: map create and element
//! update/lookup/delete, XDP program load, program info.
//!
//! Each command takes its own member of `union bpf_attr`; we define just the
//! members we fill as `#[repr(C)]` structs and pass their exact size. The
//! kernel zero-extends a shorter attr and rejects a longer one whose extra
//! bytes are not zero, so a prefix of the union is always valid.

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::BpfError;
use super::asm::Insn;

/// `enum bpf_cmd` values.
pub(super) mod cmd {
    pub const MAP_CREATE: u32 = 0;
    pub const MAP_LOOKUP_ELEM: u32 = 1;
    pub const MAP_UPDATE_ELEM: u32 = 2;
    pub const MAP_DELETE_ELEM: u32 = 3;
    pub const PROG_LOAD: u32 = 5;
    pub const PROG_TEST_RUN: u32 = 10;
    pub const OBJ_GET_INFO_BY_FD: u32 = 15;
    pub const LINK_CREATE: u32 = 28;
    pub const LINK_DETACH: u32 = 34;
}

/// `BPF_F_NO_PREALLOC`: required by `BPF_MAP_TYPE_LPM_TRIE`; for hash maps it
/// trades per-update allocation for not reserving `max_entries` up front.
pub const BPF_F_NO_PREALLOC: u32 = 1 << 0;
/// `BPF_F_XDP_HAS_FRAGS` (program load flag): the program handles
/// multi-buffer frames.
pub const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// `BPF_PROG_TYPE_XDP`.
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP` from `enum bpf_attach_type`.
pub(super) const BPF_XDP: u32 = 37;
/// `BPF_OBJ_NAME_LEN`, including the terminating NUL.
const BPF_OBJ_NAME_LEN: usize = 16;

/// License string handed to the kernel; GPL-compatible, which keeps every
/// helper available.
const LICENSE: &CStr = c"Dual MIT/GPL";

/// Verifier log buffer used when a load fails (level 1 logs every
/// instruction on the failing path; 1 MiB holds far more than our programs).
const VERIFIER_LOG_SIZE: usize = 1 << 20;

/// Map types we create (`enum bpf_map_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH`.
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array = 2,
    /// `BPF_MAP_TYPE_LPM_TRIE`: key is `{u32 prefixlen; u8 data[]}`, needs
    /// [`BPF_F_NO_PREALLOC`].
    LpmTrie = 11,
    /// `BPF_MAP_TYPE_DEVMAP`.
    DevMap = 14,
    /// `BPF_MAP_TYPE_XSKMAP`: u32 index → AF_XDP socket fd; userspace can
    /// update and delete but not look up.
    XskMap = 17,
}

/// `flags` of `BPF_MAP_UPDATE_ELEM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u64)]
pub enum UpdateFlags {
    /// `BPF_ANY`: create or replace.
    #[default]
    Any = 0,
    /// `BPF_NOEXIST`: create only (EEXIST otherwise).
    NoExist = 1,
    /// `BPF_EXIST`: replace only (ENOENT otherwise).
    Exist = 2,
}

/// `union bpf_attr` member for `BPF_MAP_CREATE`, up to `map_ifindex`.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; BPF_OBJ_NAME_LEN],
    map_ifindex: u32,
}

/// `union bpf_attr` member for `BPF_MAP_*_ELEM`.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` member for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; BPF_OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` member for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Default)]
struct ObjInfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Leading fields of `struct bpf_prog_info`; the kernel fills only the
/// `info_len` bytes we ask for.
#[repr(C)]
#[derive(Default)]
struct ProgInfoPrefix {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
}

// Offsets checked against `offsetof(union bpf_attr, ...)` from the 6.x UAPI header.
const _: () = assert!(size_of::<MapCreateAttr>() == 48);
const _: () = assert!(size_of::<MapElemAttr>() == 32);
const _: () = assert!(size_of::<ProgLoadAttr>() == 72);
const _: () = assert!(size_of::<ObjInfoAttr>() == 16);
const _: () = assert!(size_of::<ProgInfoPrefix>() == 24);

/// Issues `bpf(cmd, attr, sizeof(*attr))`, returning the non-negative result
/// or errno.
///
/// # Safety
/// `T` must be the `#[repr(C)]` `union bpf_attr` member that `cmd` reads, with
/// every padding byte zero, and every pointer stored in `attr` must point to
/// memory valid for the kernel's reads (and writes, for output buffers) of the
/// length given beside it for the whole call.
pub(super) unsafe fn bpf<T>(cmd: u32, attr: &mut T) -> io::Result<i64> {
    let size = size_of::<T>() as libc::c_uint;
    // SAFETY: `attr` is a live, exclusively borrowed `T` of `size` bytes; the
    // caller guarantees it is the right attr member for `cmd` and that the
    // pointers inside it are valid. bpf(2) touches nothing else.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of an fd that a bpf(2) command just returned.
pub(super) fn owned_fd(ret: i64) -> OwnedFd {
    // bpf(2) returns fds as a non-negative int; a value outside i32 cannot occur.
    let raw = ret as libc::c_int;
    // SAFETY: the kernel just installed `raw` in our fd table for this object
    // and nothing else in the process knows the number yet, so we own it.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// Copies `name` into a NUL-terminated `char[BPF_OBJ_NAME_LEN]`, checking the
/// kernel's rules (at most 15 bytes of `[A-Za-z0-9_.]`) so a bad name fails
/// with a message instead of a bare EINVAL.
fn obj_name(name: &str) -> Result<[u8; BPF_OBJ_NAME_LEN], BpfError> {
    if name.len() >= BPF_OBJ_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return Err(BpfError::InvalidArgument {
            what: "BPF object name",
            why: format!("{name:?} must be at most 15 characters of [A-Za-z0-9_.]"),
        });
    }
    let mut out = [0u8; BPF_OBJ_NAME_LEN];
    out[..name.len()].copy_from_slice(name.as_bytes());
    Ok(out)
}

/// What to create with [`Map::create`].
#[derive(Clone, Copy, Debug)]
pub struct MapSpec<'a> {
    /// Name shown by `bpftool map` (≤ 15 chars of `[A-Za-z0-9_.]`).
    pub name: &'a str,
    /// Map type.
    pub map_type: MapType,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// `BPF_F_*` creation flags (e.g. [`BPF_F_NO_PREALLOC`]).
    pub flags: u32,
}

/// A BPF map owned through its fd. Element access goes through the syscall
/// with byte slices whose lengths are checked against the map's key and value
/// sizes (per-CPU maps, whose values are per CPU, are not supported).
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    name: String,
    key_size: u32,
    value_size: u32,
}

impl Map {
    /// `BPF_MAP_CREATE`.
    pub fn create(spec: &MapSpec<'_>) -> Result<Self, BpfError> {
        let mut attr = MapCreateAttr {
            map_type: spec.map_type as u32,
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            map_flags: spec.flags,
            map_name: obj_name(spec.name)?,
            ..Default::default()
        };
        // SAFETY: MapCreateAttr is the BPF_MAP_CREATE member (no padding, see
        // the size assertion) and holds no pointers.
        let ret =
            unsafe { bpf(cmd::MAP_CREATE, &mut attr) }.map_err(|source| BpfError::MapCreate {
                name: spec.name.to_owned(),
                source,
            })?;
        Ok(Map {
            fd: owned_fd(ret),
            name: spec.name.to_owned(),
            key_size: spec.key_size,
            value_size: spec.value_size,
        })
    }

    /// The map's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> u32 {
        self.key_size
    }

    /// Value size in bytes.
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    /// `BPF_MAP_UPDATE_ELEM`: sets `key` to `value`.
    pub fn update(&self, key: &[u8], value: &[u8], flags: UpdateFlags) -> Result<(), BpfError> {
        self.check_len("key", key.len(), self.key_size)?;
        self.check_len("value", value.len(), self.value_size)?;
        let mut attr = MapElemAttr {
            map_fd: self.raw_fd(),
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            flags: flags as u64,
            ..Default::default()
        };
        // SAFETY: MapElemAttr is the BPF_MAP_*_ELEM member with its padding
        // zeroed by Default; `key` and `value` are live slices of exactly the
        // map's key and value sizes (checked above), which is all the kernel reads.
        unsafe { bpf(cmd::MAP_UPDATE_ELEM, &mut attr) }
            .map(drop)
            .map_err(|source| self.elem_error("BPF_MAP_UPDATE_ELEM", source))
    }

    /// `BPF_MAP_LOOKUP_ELEM`: copies the value for `key` into `value`;
    /// `Ok(false)` when the key is absent.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> Result<bool, BpfError> {
        self.check_len("key", key.len(), self.key_size)?;
        self.check_len("value", value.len(), self.value_size)?;
        let mut attr = MapElemAttr {
            map_fd: self.raw_fd(),
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: as in `update`; `value` is exclusively borrowed and exactly
        // value_size bytes long, which is what the kernel writes for a
        // non-per-CPU map.
        match unsafe { bpf(cmd::MAP_LOOKUP_ELEM, &mut attr) } {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(source) => Err(self.elem_error("BPF_MAP_LOOKUP_ELEM", source)),
        }
    }

    /// `BPF_MAP_DELETE_ELEM`: `Ok(false)` when the key was absent.
    pub fn delete(&self, key: &[u8]) -> Result<bool, BpfError> {
        self.check_len("key", key.len(), self.key_size)?;
        let mut attr = MapElemAttr {
            map_fd: self.raw_fd(),
            key: key.as_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: as in `update`; DELETE reads only the key.
        match unsafe { bpf(cmd::MAP_DELETE_ELEM, &mut attr) } {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(source) => Err(self.elem_error("BPF_MAP_DELETE_ELEM", source)),
        }
    }

    fn raw_fd(&self) -> u32 {
        // Fds are non-negative.
        self.fd.as_raw_fd() as u32
    }

    fn check_len(&self, what: &'static str, got: usize, expected: u32) -> Result<(), BpfError> {
        if got == expected as usize {
            Ok(())
        } else {
            Err(BpfError::BadSize {
                map: self.name.clone(),
                what,
                got,
                expected,
            })
        }
    }

    fn elem_error(&self, op: &'static str, source: io::Error) -> BpfError {
        BpfError::MapElem {
            op,
            map: self.name.clone(),
            source,
        }
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What `BPF_OBJ_GET_INFO_BY_FD` tells us about a loaded program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgInfo {
    /// Kernel-wide program id (what `ip link` and `bpftool prog` show).
    pub id: u32,
    /// The program's tag (hash of its instructions).
    pub tag: [u8; 8],
    /// Instructions after the verifier's rewrites.
    pub xlated_insns: u32,
    /// Size of the JIT image in bytes (0 without JIT or without privilege).
    pub jited_bytes: u32,
}

/// A loaded BPF program owned through its fd. Maps it references stay alive
/// as long as the program does.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    name: String,
}

impl Program {
    /// `BPF_PROG_LOAD` of an XDP program (`expected_attach_type = BPF_XDP`).
    /// `prog_flags` takes `BPF_F_*` load flags such as
    /// [`BPF_F_XDP_HAS_FRAGS`]. On failure the load is repeated with a level-1
    /// verifier log, which the error carries.
    pub fn load_xdp(name: &str, insns: &[Insn], prog_flags: u32) -> Result<Self, BpfError> {
        let insn_cnt = u32::try_from(insns.len()).map_err(|_| BpfError::InvalidArgument {
            what: "program",
            why: format!("{} instructions", insns.len()),
        })?;
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            prog_flags,
            prog_name: obj_name(name)?,
            expected_attach_type: BPF_XDP,
            ..Default::default()
        };
        let first = match load_retrying(&mut attr) {
            Ok(ret) => {
                return Ok(Program {
                    fd: owned_fd(ret),
                    name: name.to_owned(),
                });
            }
            Err(e) => e,
        };

        // Reload only to learn why: the log costs verifier time and memory.
        let mut log = vec![0u8; VERIFIER_LOG_SIZE];
        attr.log_level = 1;
        attr.log_size = VERIFIER_LOG_SIZE as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
        if let Ok(ret) = load_retrying(&mut attr) {
            // A transient failure (e.g. a signal) cleared up on the second try.
            return Ok(Program {
                fd: owned_fd(ret),
                name: name.to_owned(),
            });
        }
        // ENOSPC on the retry means the log was truncated; what is there still
        // helps, so keep it either way.
        let len = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        Err(BpfError::ProgLoad {
            name: name.to_owned(),
            source: first,
            log: String::from_utf8_lossy(&log[..len]).into_owned(),
        })
    }

    /// The program's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `BPF_OBJ_GET_INFO_BY_FD`: id, tag and sizes.
    pub fn info(&self) -> Result<ProgInfo, BpfError> {
        let mut info = ProgInfoPrefix::default();
        let mut attr = ObjInfoAttr {
            bpf_fd: self.fd.as_raw_fd() as u32,
            info_len: size_of::<ProgInfoPrefix>() as u32,
            info: &mut info as *mut ProgInfoPrefix as u64,
        };
        // SAFETY: ObjInfoAttr is the BPF_OBJ_GET_INFO_BY_FD member; `info`
        // points to a live, exclusively borrowed ProgInfoPrefix of `info_len`
        // bytes, and the kernel writes at most `info_len` bytes there.
        unsafe { bpf(cmd::OBJ_GET_INFO_BY_FD, &mut attr) }
            .map_err(|source| BpfError::ObjInfo { source })?;
        Ok(ProgInfo {
            id: info.id,
            tag: info.tag,
            xlated_insns: info.xlated_prog_len / size_of::<Insn>() as u32,
            jited_bytes: info.jited_prog_len,
        })
    }
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `BPF_PROG_LOAD`, repeated a few times on EAGAIN/EINTR as libbpf does (the
/// verifier gives up with EAGAIN when a signal is pending).
fn load_retrying(attr: &mut ProgLoadAttr) -> io::Result<i64> {
    let mut tries = 5;
    loop {
        // SAFETY: ProgLoadAttr is the BPF_PROG_LOAD member (no padding, see
        // the size assertion). Its pointers come from `Program::load_xdp`:
        // `insns` is a live slice of `insn_cnt` 8-byte instructions laid out
        // as struct bpf_insn, `license` a static NUL-terminated string, and
        // `log_buf` either 0 (with log_size 0) or a live, exclusively borrowed
        // buffer of `log_size` bytes. All outlive this call.
        match unsafe { bpf(cmd::PROG_LOAD, attr) } {
            Err(e)
                if tries > 1
                    && matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) =>
            {
                tries -= 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::bpf::asm::{Insn, Reg};
    use crate::bpf::test_support::require_root;

    #[test]
    fn object_names_are_checked() {
        assert!(obj_name("kxdp_steer").is_ok());
        assert!(obj_name("a.b_9").is_ok());
        assert!(obj_name("0123456789abcde").is_ok());
        assert!(obj_name("0123456789abcdef").is_err());
        assert!(obj_name("has space").is_err());
        assert!(obj_name("dash-ed").is_err());
        assert_eq!(&obj_name("ab").unwrap()[..3], b"ab\0");
    }

    #[test]
    fn hash_map_round_trip_and_size_checks() {
        if !require_root() {
            return;
        }
        let map = Map::create(&MapSpec {
            name: "kxdp_test_hash",
            map_type: MapType::Hash,
            key_size: 4,
            value_size: 8,
            max_entries: 4,
            flags: 0,
        })
        .unwrap();
        let key = 7u32.to_ne_bytes();
        let mut value = [0u8; 8];
        assert!(!map.lookup(&key, &mut value).unwrap());
        map.update(&key, &[1, 2, 3, 4, 5, 6, 7, 8], UpdateFlags::NoExist)
            .unwrap();
        assert!(map.lookup(&key, &mut value).unwrap());
        assert_eq!(value, [1, 2, 3, 4, 5, 6, 7, 8]);

        let err = map.update(&key, &[0; 8], UpdateFlags::NoExist).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
        assert!(err.to_string().contains("kxdp_test_hash"), "{err}");

        let err = map.update(&[0; 3], &[0; 8], UpdateFlags::Any).unwrap_err();
        assert!(matches!(
            err,
            BpfError::BadSize {
                what: "key",
                got: 3,
                expected: 4,
                ..
            }
        ));
        let err = map.lookup(&key, &mut [0; 9]).unwrap_err();
        assert!(matches!(
            err,
            BpfError::BadSize {
                what: "value",
                got: 9,
                expected: 8,
                ..
            }
        ));

        assert!(map.delete(&key).unwrap());
        assert!(!map.delete(&key).unwrap());
    }

    #[test]
    fn rejected_program_carries_verifier_log() {
        if !require_root() {
            return;
        }
        // Returns R0 without ever writing it.
        let err = Program::load_xdp("kxdp_bad", &[Insn::exit()], 0).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EACCES), "{err}");
        let BpfError::ProgLoad { log, .. } = &err else {
            panic!("unexpected error {err}");
        };
        assert!(log.contains("R0 !read_ok"), "log: {log}");
        assert!(err.to_string().contains("verifier log"), "{err}");
    }

    #[test]
    fn loaded_program_has_info() {
        if !require_root() {
            return;
        }
        let prog = Program::load_xdp("kxdp_pass", &[Insn::mov64_imm(Reg::R0, 2), Insn::exit()], 0)
            .unwrap();
        let info = prog.info().unwrap();
        assert_ne!(info.id, 0);
        assert_eq!(info.xlated_insns, 2);
    }
}
