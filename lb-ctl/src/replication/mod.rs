//! Flow replication: the active's flows, copied to the standby so that a
//! failover breaks no connection (see docs/ARCHITECTURE.md, "Flow
//! replication"). A pure core; the data plane's side is in
//! `dataplane::flows`.
//! - `record`: the record on the wire, which names the service and backend
//!   by their identity (addresses, ports, protocol), its encoding and the
//!   errors of a bad one;
//! - `translate`: the active's flow records to wire records, and wire
//!   records to the standby's own table entries;
//! - `stream`: the reliable stream (sequence numbers, cumulative acks,
//!   resends, bounded memory, resync, bulk then stream);
//! - `message`: the stream's messages on the wire;
//! - `status`: what status and metrics show of it, and what it adds to a
//!   standby's eligibility.
pub mod message;
pub mod record;
pub mod status;
pub mod stream;
pub mod translate;
