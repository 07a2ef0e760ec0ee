//! Collects anomalies while the checks run: counts every occurrence, keeps
//! only the earliest `MAX_EXAMPLES` of each kind, and builds an example's
//! text only when it will be kept (a broken server can produce millions of
//! anomalies; formatting each would dominate the run time).

use std::collections::BTreeMap;

use crate::history::Position;
use uuid::Uuid;

use super::outcome::{AnomalyExample, AnomalyKind, AnomalyReport, MAX_EXAMPLES};
use crate::history::{ConversationIx, DeviceIx, RunMeta};

/// Where an anomaly was seen; the parts of an example that are not text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site {
    pub device: Option<DeviceIx>,
    pub conversation: ConversationIx,
    pub socket: Option<u32>,
    pub at_us: Option<u64>,
    pub client_msg_id: Option<Uuid>,
}

struct Ranked {
    /// `at_us`, with "unknown" sorting last.
    at_key: u64,
    /// Recording order among equal times, so examples are deterministic.
    seq: u64,
    example: AnomalyExample,
}

#[derive(Default)]
struct Sink {
    count: u64,
    kept: Vec<Ranked>,
}

pub(crate) struct Findings<'a> {
    meta: &'a RunMeta,
    /// Indexed by `kind as usize` (the declaration order of `ALL`).
    sinks: Vec<Sink>,
    next_seq: u64,
}

/// Order of the delivery checks' findings: by slot, then by their order
/// within the slot, whatever order the slots are judged in (they are
/// judged interleaved, in recording order), so equal times keep the
/// examples of a slot-by-slot walk. Findings before the delivery checks
/// number from 0, those after from `AFTER_DELIVERIES`.
const DELIVERIES_FROM: u64 = 1 << 62;
const AFTER_DELIVERIES: u64 = 1 << 63;

impl<'a> Findings<'a> {
    pub fn new(meta: &'a RunMeta) -> Self {
        Findings {
            meta,
            sinks: AnomalyKind::ALL.iter().map(|_| Sink::default()).collect(),
            next_seq: 0,
        }
    }

    /// Counts one anomaly; `describe` (the ids involved and one sentence)
    /// runs only if the example makes it into the earliest `MAX_EXAMPLES`.
    pub fn record(
        &mut self,
        kind: AnomalyKind,
        site: Site,
        describe: impl FnOnce() -> (Vec<Position>, String),
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let sink = &mut self.sinks[kind as usize];
        sink.count += 1;
        let at_key = site.at_us.unwrap_or(u64::MAX);
        if sink.kept.len() == MAX_EXAMPLES
            && sink
                .kept
                .last()
                .is_some_and(|last| (last.at_key, last.seq) <= (at_key, seq))
        {
            return;
        }
        let (ids, detail) = describe();
        let example = example(self.meta, site, ids, detail);
        let slot = sink
            .kept
            .partition_point(|kept| (kept.at_key, kept.seq) <= (at_key, seq));
        sink.kept.insert(
            slot,
            Ranked {
                at_key,
                seq,
                example,
            },
        );
        sink.kept.truncate(MAX_EXAMPLES);
    }

    /// The following `record` calls belong to `slot`'s delivery checks,
    /// which have recorded `local` findings so far.
    pub fn enter_slot(&mut self, slot: u32, local: u32) {
        self.next_seq = DELIVERIES_FROM + (u64::from(slot) << 32) + u64::from(local);
    }

    /// How many findings `slot` has recorded, after `enter_slot(slot, ..)`.
    pub fn slot_local(&self, slot: u32) -> u32 {
        (self.next_seq - DELIVERIES_FROM - (u64::from(slot) << 32)) as u32
    }

    /// Findings recorded from now on rank after every delivery finding.
    pub fn after_deliveries(&mut self) {
        self.next_seq = self.next_seq.max(AFTER_DELIVERIES);
    }

    /// The reports of every kind seen at least once; `violation` decides
    /// which kinds make the verdict invalid.
    pub fn into_reports(
        self,
        violation: impl Fn(AnomalyKind) -> bool,
    ) -> BTreeMap<AnomalyKind, AnomalyReport> {
        AnomalyKind::ALL
            .iter()
            .zip(self.sinks)
            .filter(|(_, sink)| sink.count > 0)
            .map(|(kind, sink)| {
                let report = AnomalyReport {
                    kind: *kind,
                    violation: violation(*kind),
                    count: sink.count,
                    examples: sink.kept.into_iter().map(|ranked| ranked.example).collect(),
                };
                (*kind, report)
            })
            .collect()
    }
}

fn example(meta: &RunMeta, site: Site, ids: Vec<Position>, detail: String) -> AnomalyExample {
    let device = site
        .device
        .and_then(|device| meta.devices.get(device as usize));
    AnomalyExample {
        device: site.device,
        user_id: device.map(|info| info.user_id),
        client_id: device.map(|info| info.client_id),
        conversation: site.conversation,
        conversation_id: meta
            .conversations
            .get(site.conversation as usize)
            .map_or(Uuid::nil(), |info| info.conversation_id),
        socket: site.socket,
        ids,
        client_msg_id: site.client_msg_id,
        at_us: site.at_us,
        detail,
    }
}

/// "device 3 (user …)", the way every example sentence names a device.
pub(crate) fn device_label(meta: &RunMeta, device: DeviceIx) -> String {
    match meta.devices.get(device as usize) {
        Some(info) => format!("device {device} (user {})", info.user_id),
        None => format!("device {device}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::RunMeta;

    fn empty_meta() -> RunMeta {
        RunMeta {
            faults: Vec::new(),
            scenario_name: "t".into(),
            seed: 0,
            started_at_unix_ms: 0,
            devices: Vec::new(),
            conversations: Vec::new(),
        }
    }

    fn site(at_us: Option<u64>) -> Site {
        Site {
            device: None,
            conversation: 0,
            socket: None,
            at_us,
            client_msg_id: None,
        }
    }

    #[test]
    fn keeps_earliest_examples_and_counts_all() {
        let meta = empty_meta();
        let mut findings = Findings::new(&meta);
        let total = MAX_EXAMPLES as u64 * 3;
        // Recorded latest first, so keeping the first ones would be wrong.
        for at in (0..total).rev() {
            findings.record(AnomalyKind::Lost, site(Some(at)), || {
                (vec![Position::new(at, 0)], format!("at {at}"))
            });
        }
        findings.record(AnomalyKind::Lost, site(None), || (vec![], "unknown".into()));
        let reports = findings.into_reports(|_| true);
        let lost = &reports[&AnomalyKind::Lost];
        assert_eq!(lost.count, total + 1);
        let times: Vec<u64> = lost.examples.iter().filter_map(|e| e.at_us).collect();
        let expected: Vec<u64> = (0..MAX_EXAMPLES as u64).collect();
        assert_eq!(times, expected);
        assert_eq!(reports.len(), 1, "only kinds that occurred are reported");
    }

    #[test]
    fn skips_describing_examples_that_are_not_kept() {
        let meta = empty_meta();
        let mut findings = Findings::new(&meta);
        for at in 0..MAX_EXAMPLES as u64 {
            findings.record(AnomalyKind::Skip, site(Some(at)), || {
                (vec![], String::new())
            });
        }
        findings.record(AnomalyKind::Skip, site(Some(1_000)), || {
            panic!("a later example must not be described once the list is full")
        });
        let reports = findings.into_reports(|kind| kind != AnomalyKind::Skip);
        assert_eq!(reports[&AnomalyKind::Skip].count, MAX_EXAMPLES as u64 + 1);
        assert!(!reports[&AnomalyKind::Skip].violation);
    }
}
