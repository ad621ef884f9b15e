//! Which flows run, for the flows themselves: translation looks up the
//! flow in the other direction, and group sync skips the cluster clients
//! are active on.

use std::sync::{Arc, Mutex};

use super::state::FlowState;

/// Where a flow's state appears once the flow has started.
pub type Slot = Arc<Mutex<Option<Arc<FlowState>>>>;

/// Every running flow's state slot (translation looks up the flow in the
/// other direction, since with flows both ways a cluster holds records of
/// its own next to copies), and the cluster clients are active on.
#[derive(Clone, Default)]
pub struct Registry(Arc<RegistryInner>);

#[derive(Default)]
struct RegistryInner {
    slots: Mutex<Vec<Slot>>,
    active: Mutex<Option<String>>,
}

impl Registry {
    /// The cluster a co-located proxy sends clients to, if any.
    pub fn active(&self) -> Option<String> {
        self.0
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The started flow from `st`'s target to its source, if any.
    pub fn reverse_of(&self, st: &FlowState) -> Option<Arc<FlowState>> {
        let slots = self
            .0
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        slots.iter().find_map(|slot| {
            let other = slot.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
            (other.cfg.source == st.cfg.target && other.cfg.target == st.cfg.source)
                .then_some(other)
        })
    }

    /// Clients are now on `cluster`.
    pub(super) fn set_active(&self, cluster: &str) {
        *self.0.active.lock().unwrap_or_else(|e| e.into_inner()) = Some(cluster.to_string());
    }

    pub(super) fn set(&self, slots: Vec<Slot>) {
        *self.0.slots.lock().unwrap_or_else(|e| e.into_inner()) = slots;
    }
}
