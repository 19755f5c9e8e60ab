//! `kowabunga vrrp`: the VRRP instances.

use super::table::render;
use crate::api::wire::VrrpInstance;

/// The table of VRRP instances.
pub fn format(instances: &[VrrpInstance]) -> String {
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.vrid.to_string(),
                i.interface.clone(),
                i.state.clone(),
                i.priority.to_string(),
                i.master.clone().unwrap_or_else(|| "-".into()),
                i.adverts_rx.to_string(),
                i.adverts_tx.to_string(),
                i.became_master.to_string(),
                i.became_backup.to_string(),
            ]
        })
        .collect();
    render(
        &[
            "INSTANCE",
            "VRID",
            "INTERFACE",
            "STATE",
            "PRIO",
            "MASTER",
            "RX",
            "TX",
            "TO_MASTER",
            "TO_BACKUP",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_instance() {
        let text = format(&[VrrpInstance {
            name: "web".into(),
            vrid: 7,
            interface: "eth1".into(),
            state: "backup".into(),
            priority: 100,
            master: Some("10.0.0.2/200".into()),
            adverts_rx: 33,
            adverts_tx: 0,
            became_master: 0,
            became_backup: 1,
        }]);
        assert_eq!(
            text.lines().nth(1),
            Some("web       7     eth1       backup  100   10.0.0.2/200  33  0   0          1")
        );
    }
}
