//! Fleet supervisors as the server knows them: each supervisor reports its whole state
//! every few seconds (`PUT /v1/fleet/{name}`) and the server keeps the last report of each,
//! in memory, to show every fleet in one place (`GET /v1/fleet`, the dashboard). A
//! supervisor that stops reporting shows as stale, then is forgotten: reports are a view,
//! never a source of truth, so nothing is lost when a server restarts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::Clock;
use flotilla_proto::{FleetReport, FleetView};

/// A supervisor not heard from for this long shows as stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// A supervisor not heard from for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// At most this many supervisors are kept; beyond, the one heard from longest ago goes.
pub const MAX_FLEETS: usize = 1000;

/// See the module docs.
pub struct FleetRegistry {
    clock: Arc<dyn Clock>,
    fleets: Mutex<BTreeMap<String, FleetView>>,
}

impl FleetRegistry {
    /// An empty registry.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            fleets: Mutex::new(BTreeMap::new()),
        }
    }

    /// Keeps `report` as the latest of the supervisor `name`.
    pub fn report(&self, name: &str, report: FleetReport) {
        let view = FleetView {
            report,
            received_at: self.clock.now(),
            stale: false,
        };
        let mut fleets = self.fleets.lock().expect("fleet registry lock");
        fleets.insert(name.to_owned(), view);
        if fleets.len() > MAX_FLEETS {
            let oldest = fleets
                .iter()
                .min_by_key(|(_, v)| v.received_at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                fleets.remove(&oldest);
            }
        }
    }

    /// Every supervisor by name; old reports marked stale, very old ones dropped.
    pub fn list(&self) -> Vec<FleetView> {
        let now = self.clock.now();
        let age = |v: &FleetView| (now - v.received_at).to_std().unwrap_or_default();
        let mut fleets = self.fleets.lock().expect("fleet registry lock");
        fleets.retain(|_, v| age(v) < FORGET_AFTER);
        fleets
            .values()
            .map(|v| FleetView {
                stale: age(v) >= STALE_AFTER,
                ..v.clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use flotilla_core::ManualClock;

    use super::*;

    fn report(name: &str) -> FleetReport {
        FleetReport {
            name: name.into(),
            host: "h".into(),
            pid: 1,
            started_at: chrono::Utc::now(),
            draining: false,
            pools: Vec::new(),
            alerts: Vec::new(),
        }
    }

    #[test]
    fn keeps_the_latest_report_then_marks_it_stale_then_forgets_it() {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let fleets = FleetRegistry::new(clock.clone());
        fleets.report("a", report("a"));
        let mut second = report("a");
        second.draining = true;
        fleets.report("a", second);
        fleets.report("b", report("b"));
        let list = fleets.list();
        assert_eq!(list.len(), 2);
        assert!(list[0].report.draining && !list[0].stale);

        clock.advance(STALE_AFTER);
        assert!(fleets.list().iter().all(|v| v.stale));
        fleets.report("b", report("b"));
        clock.advance(FORGET_AFTER - STALE_AFTER);
        let list = fleets.list();
        assert_eq!(list.len(), 1, "a is forgotten, b reported since");
        assert_eq!(list[0].report.name, "b");
    }
}
