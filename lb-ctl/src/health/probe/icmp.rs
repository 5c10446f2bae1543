//! `icmp`: an ICMP (IPv4) or ICMPv6 echo request to the target's IP is
//! answered.
use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicU16, Ordering},
    time::Duration,
};

use super::{ProbeError, error_chain, io_text};

/// The echo request's payload (56 bytes, as ping(8) sends).
const ECHO_PAYLOAD: [u8; 56] = *b"lb-health echo request, lb-health echo request, lb-healt";

/// A fresh echo identifier for each probe, so that concurrent probes and
/// other programs' pings are told apart.
fn echo_identifier() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Truncating the pid is fine: it only spreads processes apart.
    (std::process::id() as u16).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One echo request to `target`'s IP (the port is ignored; an IPv6
/// target's scope id is used, for link-local addresses), answered within
/// `timeout`. Needs `CAP_NET_RAW` (or a `net.ipv4.ping_group_range` that
/// holds the process's group).
pub async fn probe(target: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
    use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};

    let ip = target.ip().to_canonical();
    let (config, scope_id) = match (ip, target) {
        (IpAddr::V6(_), SocketAddr::V6(v6)) => {
            (Config::builder().kind(ICMP::V6).build(), v6.scope_id())
        }
        (IpAddr::V6(_), SocketAddr::V4(_)) => (Config::builder().kind(ICMP::V6).build(), 0),
        (IpAddr::V4(_), _) => (Config::default(), 0),
    };
    // A socket per probe: raw ICMP sockets see every echo reply, and the
    // reply is matched on address, identifier and sequence.
    let client = Client::new(&config).map_err(|source| {
        if source.kind() == io::ErrorKind::PermissionDenied {
            ProbeError::IcmpPermission { source }
        } else {
            ProbeError::IcmpSocket { source }
        }
    })?;
    let mut pinger = client.pinger(ip, PingIdentifier(echo_identifier())).await;
    pinger.timeout(timeout);
    if scope_id != 0 {
        pinger.scope_id(scope_id);
    }
    let no_reply = ProbeError::NoEchoReply { ip, after: timeout };
    match tokio::time::timeout(timeout, pinger.ping(PingSequence(0), &ECHO_PAYLOAD)).await {
        Ok(Ok(_)) => Ok(()),
        Err(_) | Ok(Err(SurgeError::Timeout { .. })) => Err(no_reply),
        Ok(Err(SurgeError::IOError(error))) => Err(ProbeError::Icmp {
            ip,
            detail: io_text(&error),
        }),
        Ok(Err(error)) => Err(ProbeError::Icmp {
            ip,
            detail: error_chain(&error),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::health::{Check, probe, testing::*};

    #[tokio::test]
    async fn probe_icmp_loopback() {
        // The port is ignored.
        probe(&Check::Icmp, SocketAddr::new(LOCALHOST, 9), SECOND)
            .await
            .unwrap();
        probe(
            &Check::Icmp,
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
            SECOND,
        )
        .await
        .unwrap();
        // Several at once are told apart.
        let results = tokio::join!(
            probe(&Check::Icmp, SocketAddr::new(LOCALHOST, 0), SECOND),
            probe(&Check::Icmp, SocketAddr::new(LOCALHOST, 0), SECOND),
            probe(
                &Check::Icmp,
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
                SECOND
            ),
        );
        results.0.unwrap();
        results.1.unwrap();
        results.2.unwrap();
    }
}
