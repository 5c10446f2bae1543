//! Flow records: what the program reports of every flow it pins, for
//! replication to the standby.
use crate::{Flow, FlowKey};

// Named only in the documentation.
#[cfg(doc)]
use crate::{Backend, maps};

/// How often the daemon reads the flow record ring: the program submits
/// its records without waking the reader (a wakeup per record cost the
/// new flow's packet more than the record itself), so a record waits up
/// to this long before it is sent.
pub const FLOW_RECORDS_POLL_MS: u64 = 1;
/// In [`maps::REPLICATE`]: report new flows.
pub const REPLICATE_ON: u32 = 1;

/// [`FlowRecord::flags`].
pub mod record_flags {
    /// The backend is the service's sorry server (not one of its backends).
    pub const SORRY: u8 = 1;
}

/// A flow the program pinned, as it reports it in
/// [`maps::FLOW_RECORDS`]: the flow table's key and entry, and the
/// backend's address and port as the program read them with the entry (so
/// that user space learns the backend's identity without racing a
/// configuration change that gives its id to another backend). A NAT
/// flow's reply entry is not reported apart: it follows from these (key:
/// backend address and port to the client's; value: VIP and port, service,
/// backend).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// Client side, as in [`maps::FLOWS`].
    pub key: FlowKey,
    /// The backend's [`Backend::addr`] and [`Backend::port`].
    pub backend_addr: [u8; 16],
    pub backend_port: [u8; 2],
    /// [`record_flags`].
    pub flags: u8,
    pub pad: u8,
    /// The entry written in [`maps::FLOWS`] (node-local ids).
    pub flow: Flow,
    /// To [`FlowKey`]'s alignment.
    pub pad2: u32,
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FlowRecord>(), 40 + 16 + 2 + 1 + 1 + 16 + 4);
    }
}
