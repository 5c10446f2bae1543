//! `tcp`: a TCP connection to the target succeeds.
use std::{net::SocketAddr, time::Duration};

use tokio::{net::TcpStream, time::Instant};

use super::{ProbeError, Stage, step};

/// One TCP probe: a connection to `target` is made within `timeout` (and
/// closed at once, with a reset).
pub async fn probe(target: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
    let deadline = Instant::now() + timeout;
    connect(target, deadline, timeout).await.map(drop)
}

pub(super) async fn connect(
    target: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, ProbeError> {
    let stream = step(
        deadline,
        timeout,
        Stage::Connect,
        TcpStream::connect(target),
    )
    .await?
    .map_err(|source| ProbeError::Connect { target, source })?;
    // Close with a reset: no TIME_WAIT on our side for every probe. Failing
    // to set either option does not make the backend unhealthy.
    let _ = stream.set_zero_linger();
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use std::{io, net::Ipv6Addr};

    use tokio::net::TcpListener;

    use super::*;
    use crate::health::{Check, probe, testing::*};

    #[tokio::test]
    async fn probe_tcp_connects() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let target = listener.local_addr().unwrap();
        probe(&Check::Tcp, target, SECOND).await.unwrap();
        let listener6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await.unwrap();
        probe(&Check::Tcp, listener6.local_addr().unwrap(), SECOND)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn probe_tcp_refused() {
        let target = closed_port().await;
        let error = probe(&Check::Tcp, target, SECOND).await.unwrap_err();
        assert!(
            matches!(&error, ProbeError::Connect { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("connect to {target}: connection refused")
        );
    }
}
