//! lb-ctl: the node daemon and the operator's command-line tool.
//!
//! The library holds everything the binary does so that tests and tools can
//! drive the same code.
pub mod balancer;
pub mod dataplane;
pub mod maglev;
