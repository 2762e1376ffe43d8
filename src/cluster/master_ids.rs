//! The node ids of the masters a `BO_MASTER` client registered with, as its record advertises
//! them: a master lists the client's databases while its own id is in that list.
//!
//! Kept apart from `registration` (the task that fills it) so that the node's shared context
//! can hold it without depending on that task.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tracing::info;

/// The node ids learned per master address, as advertised in this node's record.
#[derive(Default)]
pub struct MasterIds {
    by_address: Mutex<BTreeMap<String, String>>,
}

impl MasterIds {
    /// Records that the master at `address`, whose node id is `node_id`, registered this node;
    /// returns the advertised list when it changed.
    pub fn record(&self, address: &str, node_id: &str) -> Option<Vec<String>> {
        let mut by_address = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if by_address.get(address).map(String::as_str) == Some(node_id) {
            return None;
        }
        info!(master = %address, master_node_id = %node_id, "registered all databases with master");
        by_address.insert(address.to_string(), node_id.to_string());
        let mut ids: Vec<&str> = by_address.values().map(String::as_str).collect();
        ids.sort();
        ids.dedup();
        Some(ids.into_iter().map(str::to_string).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_list_is_sorted_unique_and_only_reported_on_change() {
        let ids = MasterIds::default();
        assert_eq!(
            ids.record("m2:9091", "zeta"),
            Some(vec!["zeta".to_string()])
        );
        let both = Some(vec!["alpha".to_string(), "zeta".to_string()]);
        assert_eq!(ids.record("m1:9091", "alpha"), both);
        assert_eq!(ids.record("m1:9091", "alpha"), None);
        assert_eq!(ids.record("m3:9091", "alpha"), both);
    }
}
