//! Test harnesses shared by the integration tests and `xtask`:
//! - [`netns`] and [`rig`]: network-namespace rigs with real processes;
//! - [`fixture`]: runs an XDP program on crafted packets through the kernel's
//!   BPF_PROG_TEST_RUN and checks the action and the exact output bytes;
//! - [`daemon`]: the real `lb-ctl run` as a process in a namespace, for
//!   the daemon tests, the control benchmark and the demo;
//! - [`capture`]: UDP datagrams captured on the wire (tcpdump) in a namespace;
//! - [`pair`]: the network of a two-node cluster and its daemons;
//! - [`flow_pair`]: the pair rig with both daemons and services running, for
//!   the flow replication's tests and benchmark;
//! - [`flow_scenario`]: the connections a failover must not break (paced
//!   downloads checked byte for byte, idle keep-alive connections asked
//!   again) across the active's faults (flow replication's test and
//!   benchmark);
//! - [`pps`]: the small-packet generator of the data-plane benchmark
//!   (`lb_bench_gen` driven through BPF_PROG_TEST_RUN with live frames);
//! - [`table`]: the table of figures the benchmarks print;
//! - [`testrun`]: timing an XDP program with BPF_PROG_TEST_RUN (the
//!   benchmarks), and opening the program a daemon attached;
//! - [`wait`]: bounded waits (until a condition holds, or while it holds).
pub mod capture;
pub mod daemon;
pub mod fixnet;
pub mod fixture;
pub mod flood;
pub mod flow_pair;
pub mod flow_scenario;
pub mod netns;
pub mod packets;
pub mod pair;
pub mod pps;
pub mod rig;
pub mod table;
pub mod testrun;
pub mod wait;
