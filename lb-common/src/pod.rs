//! `aya::Pod` for the map types and the programs' globals (the `user`
//! feature), so that user space reads and writes them in aya's maps.
use super::*;
// SAFETY: plain #[repr(C)] data without implicit padding; every bit
// pattern is a valid value.
unsafe impl aya::Pod for ServiceKey {}
unsafe impl aya::Pod for Service {}
unsafe impl aya::Pod for Backend {}
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for Flow {}
unsafe impl aya::Pod for Reply {}
unsafe impl aya::Pod for NewFlowTags {}
unsafe impl aya::Pod for FlowHashMemo {}
unsafe impl aya::Pod for NewFlowWays {}
unsafe impl aya::Pod for BackendVips {}
unsafe impl aya::Pod for Settings {}
unsafe impl aya::Pod for FloatingKey {}
unsafe impl aya::Pod for MaglevTable {}
unsafe impl aya::Pod for Traffic {}
unsafe impl aya::Pod for NextHop {}
unsafe impl aya::Pod for ClientHop {}
unsafe impl aya::Pod for FenceCheck {}
unsafe impl aya::Pod for BaselineConfig {}
unsafe impl aya::Pod for BenchGenConfig {}
unsafe impl aya::Pod for BenchSinkConfig {}
unsafe impl aya::Pod for FragmentKey {}
unsafe impl aya::Pod for Fragment {}
unsafe impl aya::Pod for IcmpBudget {}
unsafe impl aya::Pod for FlowRecord {}
