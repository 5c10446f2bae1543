//! A UDP server for the backends, for datagrams larger than the MTU (they
//! travel as IP fragments) both ways, and the client side of an exchange.
//!
//! The protocol, one datagram each way:
//! - `SEND n` is answered with `n` bytes: [`pattern`]`(name, n)`;
//! - any other datagram is answered with `NAME LEN DIGEST`: its length and
//!   its [`digest`] in hexadecimal, so that the client can check the request
//!   arrived whole.
use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};

use crate::netns::Netns;

/// The largest answer to `SEND n` (an IPv4 UDP payload is at most 65,507).
pub const MAX_SEND: usize = 65_000;

/// How often a server looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// One socket served on a thread of its own; stopped on Drop.
///
/// The socket reports ICMP errors about what it sent (`IP_RECVERR`,
/// `IPV6_RECVERR`): a client's "port unreachable" about an answer, for
/// example, reaches it only if the error quotes the answer as the backend
/// sent it. The server records them ([`Server::errors`]) and goes on.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<io::ErrorKind>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` inside `ns` (the socket stays the namespace's whatever
    /// thread uses it) and serves it as `name`.
    pub fn start(ns: &Netns, addr: SocketAddr, name: &str) -> Result<Self> {
        let socket = ns
            .run_in(|| UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}")))
            .with_context(|| format!("UDP server in {}", ns.name()))?;
        socket.set_read_timeout(Some(POLL))?;
        receive_errors(&socket, addr.is_ipv6())
            .with_context(|| format!("asking for ICMP errors on UDP {addr}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, errors) = (stop.clone(), errors.clone());
            let name = name.to_owned();
            thread::Builder::new()
                .name(format!("udp-{name}"))
                .spawn(move || serve(&socket, &name, &stop, &errors))?
        };
        Ok(Self {
            addr,
            stop,
            errors,
            thread: Some(thread),
        })
    }

    /// The address it serves.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The errors its socket reported so far, oldest first.
    pub fn errors(&self) -> Vec<io::ErrorKind> {
        self.errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Stops the server.
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        thread
            .join()
            .map_err(|_| anyhow!("the UDP server on {} panicked", self.addr))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// `IP_RECVERR` or `IPV6_RECVERR` on `socket`: ICMP errors about what it
/// sent are reported with their type, code and sender.
pub fn receive_errors(socket: &UdpSocket, v6: bool) -> io::Result<()> {
    let (level, option) = if v6 {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::SOL_IP, libc::IP_RECVERR)
    };
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a c_int of the size given.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn serve(socket: &UdpSocket, name: &str, stop: &AtomicBool, errors: &Mutex<Vec<io::ErrorKind>>) {
    let record = |e: io::Error| {
        errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(e.kind());
    };
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                if let Err(e) = socket.send_to(&answer(name, &buf[..len]), from) {
                    record(e);
                }
            }
            // A timeout to look at the stop flag, or a signal (a receive
            // with a timeout is not restarted after one).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => record(e),
        }
    }
}

/// The server's answer to `request`.
pub fn answer(name: &str, request: &[u8]) -> Vec<u8> {
    let asked = std::str::from_utf8(request)
        .ok()
        .and_then(|text| text.strip_prefix("SEND "))
        .map(str::parse::<usize>);
    match asked {
        Some(Ok(n)) if n <= MAX_SEND => pattern(name, n),
        Some(_) => {
            format!("{name} error: SEND takes a number of bytes up to {MAX_SEND}").into_bytes()
        }
        None => format!("{name} {} {:016x}", request.len(), digest(request)).into_bytes(),
    }
}

/// `n` bytes: `NAME ` then `i % 251` for every following offset `i` (a
/// prime period, so that a lost or repeated fragment shows).
pub fn pattern(name: &str, n: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = format!("{name} ").into_bytes();
    bytes.extend((bytes.len()..n.max(bytes.len())).map(|i| (i % 251) as u8));
    bytes.truncate(n);
    bytes
}

/// FNV-1a, 64 bits.
pub fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The name at the start of an answer (up to the first space).
pub fn answered_by(answer: &[u8]) -> Option<&str> {
    let end = answer.iter().position(|&b| b == b' ')?;
    std::str::from_utf8(&answer[..end]).ok()
}

/// What came back to a client's datagram.
#[derive(Debug)]
pub enum Reply {
    Datagram(Vec<u8>),
    /// An ICMP port unreachable about the connected address.
    Refused,
    /// Nothing within the wait.
    Nothing,
    /// An ICMP error about the connected address, as the socket's error
    /// queue tells it (only with `IP_RECVERR` / `IPV6_RECVERR` set up:
    /// [`receive_errors`]); a port unreachable stays [`Reply::Refused`].
    Icmp(IcmpReport),
    /// Another error of the socket.
    Error(io::Error),
}

/// An ICMP error a socket received.
#[derive(Clone, Debug, PartialEq)]
pub struct IcmpReport {
    /// ICMP or ICMPv6 type and code.
    pub icmp_type: u8,
    pub code: u8,
    /// The error's sender.
    pub from: IpAddr,
}

/// From a fresh socket in `ns` connected to `to` (so only datagrams from
/// `to`, and ICMP errors about packets to `to`, reach it): sends `request`
/// and waits up to `wait` for what comes back.
pub fn exchange(ns: &Netns, to: SocketAddr, request: &[u8], wait: Duration) -> Result<Reply> {
    exchange_with(ns, to, request, wait, |_| Ok(()))
}

/// [`exchange`], with `setup` applied to the socket before it sends (an
/// IPv6 extension header, a TTL...).
pub fn exchange_with(
    ns: &Netns,
    to: SocketAddr,
    request: &[u8],
    wait: Duration,
    setup: impl FnOnce(&UdpSocket) -> io::Result<()> + Send,
) -> Result<Reply> {
    ns.run_in(|| {
        let any: SocketAddr = if to.is_ipv6() {
            "[::]:0".parse()?
        } else {
            "0.0.0.0:0".parse()?
        };
        let socket = UdpSocket::bind(any)?;
        socket.connect(to)?;
        socket.set_read_timeout(Some(wait))?;
        setup(&socket).context("setting the client's socket up")?;
        socket
            .send(request)
            .with_context(|| format!("sending {} bytes to {to}", request.len()))?;
        let mut buf = vec![0u8; 65_536];
        // A signal interrupts a receive with a timeout: wait on, up to the
        // deadline.
        let deadline = Instant::now() + wait;
        let received = loop {
            match socket.recv(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Err(e);
                    }
                    socket.set_read_timeout(Some(left))?;
                }
                other => break other,
            }
        };
        Ok(match received {
            Ok(len) => {
                buf.truncate(len);
                Reply::Datagram(buf)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Reply::Refused,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Reply::Nothing
            }
            Err(e) => match read_icmp_error(&socket)? {
                Some(report) => Reply::Icmp(report),
                None => Reply::Error(e),
            },
        })
    })
}

/// The TTL (IPv4) or unicast hop limit (IPv6) of what `socket` sends.
pub fn set_ttl(socket: &UdpSocket, v6: bool, ttl: u8) -> io::Result<()> {
    if !v6 {
        return socket.set_ttl(u32::from(ttl));
    }
    let hops = libc::c_int::from(ttl);
    // SAFETY: setsockopt on a socket we own, with a c_int of the size given.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            (&hops as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The oldest ICMP error in `socket`'s error queue, if there is one.
fn read_icmp_error(socket: &UdpSocket) -> io::Result<Option<IcmpReport>> {
    let mut data = [0u8; 64];
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: all-zero is a valid msghdr; the pointers set below outlive
    // the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: recvmsg on a socket we own, into buffers we own.
    let ret = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if ret < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: msg was filled by recvmsg; the CMSG macros stay inside
    // msg_control / msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: a header CMSG_FIRSTHDR/CMSG_NXTHDR returned.
        let (level, kind, len) =
            unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
        let recverr = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
            || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
        if recverr {
            // SAFETY: the data of this control message, `len` minus its header.
            let bytes = unsafe {
                let start = libc::CMSG_DATA(cmsg);
                let header = start.offset_from(cmsg.cast::<u8>()) as usize;
                std::slice::from_raw_parts(start, len.saturating_sub(header))
            };
            return Ok(parse_extended_err(bytes));
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(None)
}

/// A `sock_extended_err` (16 bytes) followed by the offender's
/// `sockaddr_in` or `sockaddr_in6`, when it comes from ICMP.
fn parse_extended_err(bytes: &[u8]) -> Option<IcmpReport> {
    let origin = *bytes.get(4)?;
    if origin != libc::SO_EE_ORIGIN_ICMP && origin != libc::SO_EE_ORIGIN_ICMP6 {
        return None;
    }
    let (icmp_type, code) = (*bytes.get(5)?, *bytes.get(6)?);
    let offender = bytes.get(16..)?;
    let family = u16::from_ne_bytes([*offender.first()?, *offender.get(1)?]);
    let from = match i32::from(family) {
        libc::AF_INET => IpAddr::from(<[u8; 4]>::try_from(offender.get(4..8)?).ok()?),
        libc::AF_INET6 => IpAddr::from(<[u8; 16]>::try_from(offender.get(8..24)?).ok()?),
        _ => return None,
    };
    Some(IcmpReport {
        icmp_type,
        code,
        from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_is_answered_with_the_pattern() {
        let got = answer("b2", b"SEND 300");
        assert_eq!(got.len(), 300);
        assert_eq!(&got[..3], b"b2 ");
        assert_eq!(got[3], 3);
        assert_eq!(got[254], 3);
        assert_eq!(got, pattern("b2", 300));
        assert_eq!(answered_by(&got), Some("b2"));
        assert_eq!(pattern("b2", 2), b"b2");
    }

    #[test]
    fn other_datagrams_are_answered_with_length_and_digest() {
        assert_eq!(answer("b1", b""), b"b1 0 cbf29ce484222325");
        assert_eq!(answer("b1", b"a"), b"b1 1 af63dc4c8601ec8c");
        let big = pattern("client", 3000);
        assert_eq!(
            answer("b3", &big),
            format!("b3 3000 {:016x}", digest(&big)).into_bytes()
        );
    }

    #[test]
    fn extended_errors_name_the_icmp_type_code_and_sender() {
        let mut v4 = vec![113, 0, 0, 0, libc::SO_EE_ORIGIN_ICMP, 11, 0, 0];
        v4.extend([0; 8]);
        v4.extend((libc::AF_INET as u16).to_ne_bytes());
        v4.extend([0, 0, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            parse_extended_err(&v4),
            Some(IcmpReport {
                icmp_type: 11,
                code: 0,
                from: "198.18.0.1".parse().unwrap()
            })
        );
        let mut v6 = vec![113, 0, 0, 0, libc::SO_EE_ORIGIN_ICMP6, 3, 0, 0];
        v6.extend([0; 8]);
        v6.extend((libc::AF_INET6 as u16).to_ne_bytes());
        v6.extend([0; 6]);
        v6.extend(
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6.extend([0; 4]);
        assert_eq!(
            parse_extended_err(&v6).unwrap().from.to_string(),
            "2001:db8::1"
        );
        // A local error (origin 1) is not an ICMP report.
        let mut local = v4.clone();
        local[4] = 1;
        assert_eq!(parse_extended_err(&local), None);
    }

    #[test]
    fn send_beyond_the_largest_datagram_is_refused() {
        assert_eq!(
            answer("b1", b"SEND 70000"),
            b"b1 error: SEND takes a number of bytes up to 65000"
        );
        assert_eq!(
            answer("b1", b"SEND x"),
            b"b1 error: SEND takes a number of bytes up to 65000"
        );
    }
}
