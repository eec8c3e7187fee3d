//! The fleet's side of a move ([`crate::control::fleet`]): the coordinator announces it,
//! tells the other proxies each step, and goes on only once every proxy whose lease is live
//! acknowledged the step. Without a fleet (`fleet` unset) every call does what a lone proxy
//! needs: nothing, apart from recording the decision to commit.

use std::time::Duration;

use super::leftovers;
use crate::config::BackendUri;
use crate::control::fleet::{Member, Step};
use crate::control::map_record;

/// How long the other proxies have to say they can serve the new map: a renewal or two.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(10);

/// What the other proxies are given beyond their own drain to acknowledge a fence step: a
/// renewal and the lease of one that stopped answering.
const ACK_SLACK: Duration = Duration::from_secs(15);

/// A move as the fleet knows it.
pub struct Coordination {
    /// This proxy in the fleet (`None`: no fleet).
    pub member: Option<Member>,
    /// The move's stamp.
    pub stamp: String,
}

impl Coordination {
    /// Takes the fleet's move record for `tables` moving to the map `map_text` (the edited
    /// file), and waits until every live proxy says it can serve that map.
    pub async fn announce(&self, tables: &[String], map_text: Option<&str>) -> Result<(), String> {
        let Some(member) = &self.member else {
            return Ok(());
        };
        let text = map_text.ok_or("the edit's file text is unknown; RELOAD and RESHARD again")?;
        let redacted = map_record::redact(text)?;
        member.announce(&self.stamp, tables, &redacted).await?;
        let waited = member
            .wait_for(&self.stamp, Step::Announced, ANNOUNCE_WAIT)
            .await;
        waited.map_err(|why| format!("{why}; nothing moved"))
    }

    /// Moves the fleet's move from `from` to `to` and waits, at most `drain` and some slack,
    /// until every live proxy acknowledged it.
    pub async fn step(&self, from: Step, to: Step, drain: Duration) -> Result<(), String> {
        let Some(member) = &self.member else {
            return Ok(());
        };
        member.advance(&self.stamp, &[from], to).await?;
        let waited = member.wait_for(&self.stamp, to, drain + ACK_SLACK).await;
        waited.map_err(|why| format!("{why}; nothing moved"))
    }

    /// Records the decision to commit on `decisions` (the old map's default primary) — in the
    /// same transaction as the fleet's step to [`Step::Committing`], with the new map recorded
    /// in force there, so that a proxy starting from now on serves it.
    pub async fn decide(
        &self,
        decisions: &BackendUri,
        map_text: Option<&str>,
        timeout: Duration,
    ) -> Result<(), String> {
        let decision = leftovers::decision_sql(&self.stamp);
        let Some(member) = &self.member else {
            return leftovers::record_decision(decisions, &decision, timeout).await;
        };
        let record = match map_text {
            Some(text) => {
                let text = map_record::redact(text)?;
                map_record::write_sql(&member.fleet, &member.database, &text)
            }
            None => String::new(),
        };
        member
            .decide(&self.stamp, &format!("{decision}; {record}"))
            .await
    }

    /// Ends the fleet's move with nothing moved (best effort: a move whose coordinator does
    /// not say so is abandoned by the others when its lease lapses); `from` the steps it may
    /// be at.
    pub async fn abandon(&self, from: &[Step]) {
        let Some(member) = &self.member else { return };
        if let Err(why) = member.advance(&self.stamp, from, Step::Abandoned).await {
            tracing::warn!(why, "RESHARD could not tell the fleet it ended");
        }
    }

    /// Tells the fleet the new map is in force (asked again while the control table blinks:
    /// the other proxies hold statements on map tables until they hear it).
    pub async fn switched(&self) {
        let Some(member) = &self.member else { return };
        let mut last = String::new();
        for _ in 0..20 {
            let from = [Step::Committing, Step::Switched];
            match member.advance(&self.stamp, &from, Step::Switched).await {
                Ok(()) => return,
                Err(why) => last = why,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::error!(
            why = last,
            "RESHARD could not tell the fleet the new map is in force; its other proxies hold statements on sharded tables until a proxy finishes the move"
        );
    }
}
