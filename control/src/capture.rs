//! `kxdp capture`: what the engine sees and does, as pcapng that tcpdump, tshark and Wireshark
//! open. The agent copies frames after the pipeline ([`kxdp_dataplane::capture`]); each packet
//! block carries the interface it came in on and a comment saying what the engine did with it
//! (`eth0 → kxs2: forward`, `kxs2: drop spoofed`), which the host's tcpdump never sees.
//!
//! Wire format (pcapng, draft-ietf-opsawg-pcapng): a section header, one interface
//! description block per engine port (Ethernet, snap length [`SNAPLEN`]), then one enhanced
//! packet block per frame with a microsecond timestamp and an `opt_comment`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use kxdp_dataplane::capture::{CaptureStream, Record, SNAPLEN};
use kxdp_dataplane::{PortId, Verdict};

use crate::api::{Request, Response};

const LINKTYPE_ETHERNET: u16 = 1;

/// `kxdp capture [--iface IF] [--count N] [--seconds S] -w FILE`.
#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// Only frames coming in on, or sent out of, this interface (an engine port).
    #[arg(long)]
    pub iface: Option<String>,
    /// Stop after this many frames (0: no limit).
    #[arg(long, short = 'c', default_value_t = 0)]
    pub count: u64,
    /// Stop after this many seconds (0: until Ctrl-C or --count).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
    /// Write the pcapng here (`-` for standard output).
    #[arg(short = 'w', long = "write")]
    pub file: PathBuf,
    /// The agent's local API socket.
    #[arg(long, default_value = "/run/kxdp/kxdp.sock")]
    pub api_socket: PathBuf,
}

/// Asks the agent for a capture and copies it to the file; returns the bytes written.
pub fn run(args: &CaptureArgs) -> anyhow::Result<()> {
    let stream = UnixStream::connect(&args.api_socket).with_context(|| {
        format!(
            "cannot reach the kxdp agent at {} (is the agent running?)",
            args.api_socket.display()
        )
    })?;
    let mut request = serde_json::to_vec(&Request::Capture {
        iface: args.iface.clone(),
        count: args.count,
        seconds: args.seconds,
    })?;
    request.push(b'\n');
    (&stream).write_all(&request)?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    match serde_json::from_str::<Response>(line.trim()) {
        Ok(Response::Ok(_)) => {}
        Ok(Response::Error(e)) => bail!("the kxdp agent refused: {e}"),
        Err(e) => bail!("unexpected answer from the kxdp agent: {e}: {line:?}"),
    }
    let written = if args.file.as_os_str() == "-" {
        std::io::copy(&mut reader, &mut std::io::stdout().lock())?
    } else {
        let mut f = std::fs::File::create(&args.file)
            .with_context(|| format!("creating {}", args.file.display()))?;
        let n = std::io::copy(&mut reader, &mut f)?;
        f.flush()?;
        n
    };
    if args.file.as_os_str() != "-" {
        eprintln!(
            "kxdp capture: {written} bytes of pcapng in {}",
            args.file.display()
        );
    }
    Ok(())
}

/// Writes `stream`'s records as pcapng until `count` frames (0: no limit) or `seconds` (0: no
/// limit), or until writing fails (the client hung up). `ports`: every engine port's id and
/// name; interface `i` of the file is `ports[i]`.
pub fn write_pcapng(
    out: &mut dyn Write,
    stream: &CaptureStream,
    ports: &[(PortId, String)],
    count: u64,
    seconds: u64,
) -> std::io::Result<u64> {
    out.write_all(&section_header())?;
    for (_, name) in ports {
        out.write_all(&interface_block(name))?;
    }
    out.flush()?;
    let deadline = (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds));
    let mut written = 0u64;
    let mut last_flush = Instant::now();
    while count == 0 || written < count {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let Some(r) = stream.next(Duration::from_millis(100)) else {
            // Idle: flush, which also notices a client that went away.
            out.flush()?;
            continue;
        };
        let block = packet_block(&r, ports);
        stream.give_back(r);
        out.write_all(&block)?;
        written += 1;
        if last_flush.elapsed() > Duration::from_millis(200) {
            out.flush()?;
            last_flush = Instant::now();
        }
    }
    out.flush()?;
    Ok(written)
}

fn name_of(ports: &[(PortId, String)], id: PortId) -> String {
    ports
        .iter()
        .find(|(p, _)| *p == id)
        .map_or_else(|| format!("port{}", id.0), |(_, n)| n.clone())
}

/// What the engine did, for the packet's comment.
pub fn describe(r: &Record, ports: &[(PortId, String)]) -> String {
    let from = name_of(ports, r.in_port);
    match r.verdict {
        Verdict::Forward(p) => format!("{from} → {}: forward", name_of(ports, p)),
        Verdict::ToHost => format!("{from}: to the host (no host port)"),
        Verdict::Drop(reason) => format!("{from}: drop {}", reason.label()),
    }
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

/// A block: type, total length, body, total length again.
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    // Fits: bodies are at most a frame and a comment.
    let total = (12 + body.len()) as u32;
    let mut v = Vec::with_capacity(total as usize);
    v.extend_from_slice(&kind.to_le_bytes());
    v.extend_from_slice(&total.to_le_bytes());
    v.extend_from_slice(body);
    v.extend_from_slice(&total.to_le_bytes());
    v
}

/// An option: code, length, value padded to 4.
fn option(code: u16, value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&code.to_le_bytes());
    // Fits: names and comments are short.
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    pad4(out);
}

fn section_header() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    option(4, b"kxdp capture", &mut body); // shb_userappl
    option(0, &[], &mut body);
    block(0x0A0D_0D0A, &body)
}

fn interface_block(name: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    // Fits: SNAPLEN is a frame size.
    body.extend_from_slice(&(SNAPLEN as u32).to_le_bytes());
    option(2, name.as_bytes(), &mut body); // if_name
    option(0, &[], &mut body);
    block(1, &body)
}

fn packet_block(r: &Record, ports: &[(PortId, String)]) -> Vec<u8> {
    let iface = ports.iter().position(|(p, _)| *p == r.in_port).unwrap_or(0);
    let micros =
        r.at.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut body = Vec::with_capacity(28 + r.data.len() + 64);
    // Fits: a handful of ports.
    body.extend_from_slice(&(iface as u32).to_le_bytes());
    body.extend_from_slice(&((micros >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(micros as u32).to_le_bytes());
    // Fits: at most SNAPLEN.
    body.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
    body.extend_from_slice(&r.len.to_le_bytes());
    body.extend_from_slice(&r.data);
    pad4(&mut body);
    option(1, describe(r, ports).as_bytes(), &mut body); // opt_comment
    option(0, &[], &mut body);
    block(6, &body)
}

/// One enhanced packet block, as [`read_packets`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    /// Index of the interface description block.
    pub iface: u32,
    /// The frame's length on the wire; `data` may be shorter (snap length).
    pub len: u32,
    pub data: Vec<u8>,
    /// What the engine did with it.
    pub comment: String,
}

/// The enhanced packet blocks of a pcapng file. For tests and tools; only what
/// [`write_pcapng`] writes is understood.
pub fn read_packets(file: &[u8]) -> anyhow::Result<Vec<CapturedPacket>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let u32_at = |b: &[u8], i: usize| -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(
            b.get(i..i + 4)
                .context("truncated pcapng")?
                .try_into()
                .context("truncated pcapng")?,
        ))
    };
    while at < file.len() {
        let kind = u32_at(file, at)?;
        let len = u32_at(file, at + 4)? as usize;
        if len < 12 || at + len > file.len() {
            bail!("bad block length {len} at {at}");
        }
        let body = &file[at + 8..at + len - 4];
        if kind == 6 {
            let iface = u32_at(body, 0)?;
            let cap = u32_at(body, 12)? as usize;
            let orig = u32_at(body, 16)?;
            let data = body.get(20..20 + cap).context("truncated packet")?.to_vec();
            let mut opt = 20 + cap.div_ceil(4) * 4;
            let mut comment = String::new();
            while opt + 4 <= body.len() {
                let code = u16::from_le_bytes([body[opt], body[opt + 1]]);
                let olen = usize::from(u16::from_le_bytes([body[opt + 2], body[opt + 3]]));
                if code == 0 {
                    break;
                }
                if code == 1 {
                    comment =
                        String::from_utf8_lossy(body.get(opt + 4..opt + 4 + olen).unwrap_or(&[]))
                            .into_owned();
                }
                opt += 4 + olen.div_ceil(4) * 4;
            }
            out.push(CapturedPacket {
                iface,
                len: orig,
                data,
                comment,
            });
        }
        at += len;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::SystemTime;

    use kxdp_dataplane::DropReason;

    use super::*;

    #[test]
    fn pcapng_blocks_round_trip() {
        let ports = vec![
            (PortId(0), "eth0".to_owned()),
            (PortId(3), "kxs2".to_owned()),
        ];
        let r = Record {
            worker: 0,
            at: SystemTime::now(),
            in_port: PortId(3),
            verdict: Verdict::Drop(DropReason::Spoofed),
            len: 1000,
            data: vec![0xab; 61],
            lost: 0,
        };
        let mut file = section_header();
        for (_, n) in &ports {
            file.extend(interface_block(n));
        }
        file.extend(packet_block(&r, &ports));
        assert_eq!(file.len() % 4, 0);
        assert_eq!(&file[..4], &[0x0a, 0x0d, 0x0d, 0x0a]);
        let p = read_packets(&file).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].iface, p[0].len, p[0].data.len()), (1, 1000, 61));
        assert_eq!(p[0].comment, "kxs2: drop spoofed");
        let fwd = Record {
            verdict: Verdict::Forward(PortId(0)),
            ..r
        };
        assert_eq!(describe(&fwd, &ports), "kxs2 → eth0: forward");
    }
}
