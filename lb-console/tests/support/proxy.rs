//! The browser as a host of a rig: an HTTP `CONNECT` proxy on 127.0.0.1
//! that opens every connection chromium asks for from inside a network
//! namespace (the rig's client). Chromium runs in the host's namespace, is
//! told `--proxy-server` ([`super::browser::Browser::start_via`]), and
//! opens the consoles at their real addresses (`https://198.18.0.1:50453/`),
//! which the host cannot reach itself: the pages see the client's address,
//! their links to the other node's console lead there, and two consoles
//! keep their cookies apart (cookies ignore ports, not hosts).
//!
//! Only the test networks are reached (198.18.0.0/15, 2001:db8::/32); any
//! other destination (chromium's own background requests) is refused with
//! 403 and never leaves the host. Dropping the proxy stops its listener,
//! shuts down every connection it relays and joins its threads, also when
//! a test panics.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use lb_tests::netns::Netns;

/// How long a connection to a destination may take to open, and a
/// request's head to arrive.
const WITHIN: Duration = Duration::from_secs(5);
/// The longest request head read (a `CONNECT` is a few hundred bytes).
const HEAD_MAX: usize = 8192;

/// What the threads share: whether the proxy is stopping, and every
/// stream and thread it has, to end them on drop.
#[derive(Default)]
struct Shared {
    stopping: bool,
    streams: Vec<TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and opens the connections asked
    /// for from inside `ns`.
    pub fn start(ns: &Netns) -> Proxy {
        let path = format!("/run/netns/{}", ns.name());
        let netns =
            Arc::new(File::open(&path).unwrap_or_else(|err| panic!("opening {path}: {err}")));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (shared, stop) = (shared.clone(), stop.clone());
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    if !register(&shared, &client) {
                        break;
                    }
                    let (shared_, netns) = (shared.clone(), netns.clone());
                    let handler = thread::spawn(move || relay(client, &netns, &shared_));
                    shared.lock().unwrap().threads.push(handler);
                }
            })
        };
        Proxy {
            addr,
            shared,
            stop,
            accept: Some(accept),
        }
    }

    /// What chromium's `--proxy-server` takes: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Keeps a clone of `stream` to shut it down when the proxy stops; false
/// (and the stream shut down) when it is stopping already.
fn register(shared: &Mutex<Shared>, stream: &TcpStream) -> bool {
    let mut shared = shared.lock().unwrap();
    match stream.try_clone() {
        Ok(clone) if !shared.stopping => {
            shared.streams.push(clone);
            true
        }
        _ => {
            let _ = stream.shutdown(Shutdown::Both);
            false
        }
    }
}

/// Whether the proxy may connect to `addr`: the test networks only.
fn allowed(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            a == 198 && (b & 0xfe) == 18
        }
        IpAddr::V6(ip) => {
            let prefix = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0);
            ip.segments()[..2] == prefix.segments()[..2]
        }
    }
}

/// The destination of a `CONNECT HOST:PORT HTTP/1.1` head.
fn destination(head: &str) -> Result<SocketAddr, String> {
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("CONNECT"), Some(target)) => target
            .parse()
            .map_err(|_| format!("{target} is not an address and port")),
        _ => Err(format!("not a CONNECT: {line}")),
    }
}

/// Reads the request head (up to the empty line).
fn read_head(client: &mut TcpStream) -> io::Result<String> {
    client.set_read_timeout(Some(WITHIN))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= HEAD_MAX || client.read(&mut byte)? == 0 {
            return Err(io::Error::other("no complete request head"));
        }
        head.push(byte[0]);
    }
    client.set_read_timeout(None)?;
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Serves one client connection: its `CONNECT`, then the bytes both ways
/// until either side closes.
fn relay(mut client: TcpStream, netns: &File, shared: &Arc<Mutex<Shared>>) {
    let Ok(head) = read_head(&mut client) else {
        return;
    };
    let target = match destination(&head) {
        Ok(target) if allowed(&target) => target,
        Ok(_) => return answer(&mut client, "403 Forbidden"),
        Err(_) => return answer(&mut client, "405 Method Not Allowed"),
    };
    // SAFETY: setns on a valid namespace fd affects only this thread,
    // which the proxy started and which ends with this connection.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return answer(&mut client, "502 Bad Gateway");
    }
    let Ok(upstream) = TcpStream::connect_timeout(&target, WITHIN) else {
        return answer(&mut client, "502 Bad Gateway");
    };
    if !register(shared, &upstream)
        || client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .is_err()
    {
        return;
    }
    let (Ok(mut up_read), Ok(mut client_write)) = (upstream.try_clone(), client.try_clone()) else {
        return;
    };
    let back = thread::spawn(move || {
        let _ = io::copy(&mut up_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Write);
    });
    let mut up_write = upstream;
    let _ = io::copy(&mut client, &mut up_write);
    let _ = up_write.shutdown(Shutdown::Write);
    let _ = back.join();
}

/// Answers the request with `status` and nothing else.
fn answer(client: &mut TcpStream, status: &str) {
    let _ = write!(client, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, WITHIN);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let threads = {
            let mut shared = self.shared.lock().unwrap();
            shared.stopping = true;
            for stream in shared.streams.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut shared.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}
