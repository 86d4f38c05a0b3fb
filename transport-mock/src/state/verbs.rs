//! The fault verbs [`MockBroker`](crate::MockBroker) exposes, applied to
//! the shared state: partition, heal, reset, fatal, rules and chaos.

use std::time::Instant;

use robust_producer::{TransportEvent, deadline_after};

use super::Shared;
use super::sessions::{Break, LinkState};
use crate::fault::{Action, Chaos, ChaosState, InFlight, Matcher, Reset, Rule, RuleId};

impl Shared {
    pub(crate) fn partition(&mut self, now: Instant) {
        self.net.partitioned = true;
        for li in 0..self.links.len() {
            match self.links[li].state {
                LinkState::Up { blackholed: false } if !self.links[li].pending.is_empty() => {
                    self.break_link(li, Break::Blackhole, InFlight::Lost, false, now);
                }
                LinkState::Connecting { due: Some(_) } => {
                    self.stats.hung_connects += 1;
                    self.links[li].state = LinkState::Connecting { due: None };
                }
                _ => {}
            }
        }
    }

    pub(crate) fn heal(&mut self, now: Instant) {
        self.net.partitioned = false;
        self.net.refuse_all = false;
        self.net.refuse_n = 0;
        for link in &mut self.links {
            if link.state == (LinkState::Connecting { due: None }) {
                link.state = LinkState::Connecting {
                    due: Some(deadline_after(now, self.net.delay)),
                };
            }
        }
    }

    pub(crate) fn reset(&mut self, r: Reset, now: Instant) {
        for li in 0..self.links.len() {
            match self.links[li].state {
                LinkState::Up { .. } => self.break_link(
                    li,
                    Break::LinkLost("connection reset by mock broker"),
                    r.in_flight,
                    r.drop_unreported,
                    now,
                ),
                LinkState::Connecting { .. } => {
                    let link = &mut self.links[li];
                    link.state = LinkState::Down;
                    link.events.push_back(TransportEvent::ConnectFailed(
                        "connection reset by mock broker".to_owned(),
                    ));
                }
                LinkState::Idle | LinkState::Down | LinkState::Closed => {}
            }
        }
    }

    pub(crate) fn fatal(&mut self, now: Instant) {
        for li in 0..self.links.len() {
            if matches!(
                self.links[li].state,
                LinkState::Up { .. } | LinkState::Connecting { .. }
            ) {
                self.break_link(
                    li,
                    Break::Fatal("fatal client error (mock broker)"),
                    InFlight::Lost,
                    false,
                    now,
                );
            }
        }
    }

    pub(crate) fn add_rule(&mut self, matcher: Matcher, action: Action) -> RuleId {
        let id = RuleId(self.next_rule);
        self.next_rule += 1;
        self.rules.retain(|r| !r.matcher.exhausted());
        self.rules.push(Rule {
            id,
            matcher,
            action,
        });
        id
    }

    pub(crate) fn remove_rule(&mut self, id: RuleId) -> bool {
        self.rules.retain(|r| !r.matcher.exhausted());
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        self.rules.len() != before
    }

    pub(crate) fn clear_rules(&mut self) {
        self.rules.clear();
    }

    pub(crate) fn chaos(&mut self, chaos: Option<Chaos>) {
        self.chaos = chaos.map(ChaosState::new);
    }
}
