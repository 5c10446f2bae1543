//! The LB of a namespace rig (tests/src/rig): the real program attached in
//! native mode to the LB namespace's two interfaces, and the real balancer
//! that feeds its maps. The rig tests that drive the data plane without the
//! daemon share it.
use anyhow::Result;
use lb_ctl::{
    balancer::{Balancer, ServiceSpec},
    dataplane::{AttachMode, Dataplane},
};
use lb_tests::rig::Rig;

pub struct RigLb {
    pub dp: Dataplane,
    pub balancer: Balancer,
}

impl RigLb {
    /// Loads and attaches the program in the rig's LB namespace, then
    /// applies `services`.
    pub fn start(rig: &Rig, services: &[ServiceSpec]) -> Result<Self> {
        let lb = rig.lb();
        let dp = lb.ns.run_in(|| {
            let mut dp = Dataplane::load()?;
            dp.attach(lb.ext_iface, AttachMode::Native)?;
            dp.attach(lb.int_iface, AttachMode::Native)?;
            Ok(dp)
        })?;
        let mut lb = RigLb {
            dp,
            balancer: Balancer::new(),
        };
        lb.configure(services)?;
        Ok(lb)
    }

    /// Plans `services` against the balancer's state and applies the
    /// operations; the new state is kept only once they applied.
    pub fn configure(&mut self, services: &[ServiceSpec]) -> Result<()> {
        let (next, ops) = self.balancer.plan(services)?;
        self.dp.apply(&ops)?;
        self.balancer = next;
        Ok(())
    }

    /// The program's non-zero counters, for a failure's message.
    pub fn counters(&self) -> String {
        match self.dp.counters() {
            Ok(counters) => counters
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(c, n)| format!("{c:?} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("(counters unreadable: {e:#})"),
        }
    }
}
