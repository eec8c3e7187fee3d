//! The fleet's side of a move ([`crate::control::fleet`]): the coordinator announces it,
//! tells the other proxies each step, and goes on only once every proxy whose lease is live
//! acknowledged the step. Without a fleet (`fleet` unset, or `fleet_lease: null`) every call
//! does what a lone proxy needs: nothing, apart from recording the decision to commit.

use std::time::Duration;

use super::leftovers;
use crate::config::BackendUri;
use crate::control::fleet::{GRACE, Member, Step};
use crate::control::map_record;

/// A move as the fleet knows it.
pub struct Coordination {
    /// This proxy in the fleet (`None`: no fleet).
    pub member: Option<Member>,
    /// The move's stamp.
    pub stamp: String,
}

/// How the decision to commit went.
pub enum Decided {
    /// Recorded: the move only goes forward.
    Yes,
    /// Not recorded: the move may turn back.
    No(String),
    /// Not known (the answer was lost and the record cannot be read): the move must neither
    /// commit nor roll back; whoever finds it next ends it the way the record says.
    Unknown(String),
}

impl Coordination {
    /// How long a proxy that stopped answering can hold a step: its lease, the grace after
    /// it, and a renewal's round trip.
    fn lease_out(member: &Member) -> Duration {
        member.lease + GRACE + Duration::from_secs(2)
    }

    /// Takes the fleet's move record for `tables` moving to the map `map_text` (the edited
    /// file), and waits until every live proxy says it can serve that map.
    pub async fn announce(&self, tables: &[String], map_text: Option<&str>) -> Result<(), String> {
        let Some(member) = &self.member else {
            return Ok(());
        };
        let text = map_text.ok_or("the edit's file text is unknown; RELOAD and RESHARD again")?;
        let redacted = map_record::redact(text)?;
        member.announce(&self.stamp, tables, &redacted).await?;
        let wait = Self::lease_out(member);
        let waited = member.wait_for(&self.stamp, Step::Announced, wait).await;
        waited.map_err(|why| format!("{why}; nothing moved"))
    }

    /// Moves the fleet's move from `from` to `to` and waits, at most `drain` and as long as a
    /// silent proxy's lease holds it, until every live proxy acknowledged it.
    pub async fn step(&self, from: Step, to: Step, drain: Duration) -> Result<(), String> {
        let Some(member) = &self.member else {
            return Ok(());
        };
        member
            .advance(&self.stamp, &member.proxy, &[from], to)
            .await?;
        let wait = drain + Self::lease_out(member);
        let waited = member.wait_for(&self.stamp, to, wait).await;
        waited.map_err(|why| format!("{why}; nothing moved"))
    }

    /// Records the decision to commit: on `decisions` (the old map's default primary) alone,
    /// or, in a fleet, on the fleet's control primary (the same server) in the same
    /// transaction as the step to [`Step::Committing`]. When that fails, the move is marked
    /// abandoned, which succeeds only if the decision did not commit after all (a lost
    /// answer); when neither can be told, the outcome is unknown.
    pub async fn decide(&self, decisions: &BackendUri, timeout: Duration) -> Decided {
        let decision = leftovers::decision_sql(&self.stamp);
        let Some(member) = &self.member else {
            return match leftovers::record_decision(decisions, &decision, timeout).await {
                Ok(()) => Decided::Yes,
                Err(why) => Decided::No(why),
            };
        };
        let Err(why) = member.decide(&self.stamp, &decision).await else {
            return Decided::Yes;
        };
        // The decision may still commit on the server: abandoning waits for its row lock, and
        // succeeds only if it did not.
        let (stamp, me) = (&self.stamp, &member.proxy);
        match member
            .advance(stamp, me, &[Step::Switching], Step::Abandoned)
            .await
        {
            Ok(()) => Decided::No(why),
            Err(again) => match member.step_of(stamp).await {
                Ok(Some(Step::Committing)) => Decided::Yes,
                Ok(Some(Step::Abandoned)) => Decided::No(why),
                Ok(_) => Decided::Unknown(format!("{why}; then: {again}")),
                Err(read) => Decided::Unknown(format!("{why}; then: {read}")),
            },
        }
    }

    /// Whether a decided move may still turn back: only without a fleet, where its proxy
    /// withdraws the decision itself; in a fleet another proxy may be finishing it.
    pub fn may_withdraw(&self) -> bool {
        self.member.is_none()
    }

    /// Ends the fleet's move with nothing moved (best effort: a move whose coordinator does
    /// not say so is abandoned by the others when its lease lapses); `from` the steps it may
    /// be at.
    pub async fn abandon(&self, from: &[Step]) {
        let Some(member) = &self.member else { return };
        let abandoned = (member.advance(&self.stamp, &member.proxy, from, Step::Abandoned)).await;
        if let Err(why) = abandoned {
            tracing::warn!(why, "RESHARD could not tell the fleet it ended");
        }
    }

    /// Tells the fleet the new map (`map_text`, the edited file) is in force, recording it in
    /// the same transaction; asked again while the control table blinks, and left to this
    /// proxy's heartbeat after that (the other proxies hold statements on map tables until
    /// they hear it).
    pub async fn switched(&self, map_text: Option<&str>) {
        let Some(member) = &self.member else { return };
        let record = match map_text.map(map_record::redact) {
            Some(Ok(text)) => map_record::write_sql(&member.fleet, &member.database, &text),
            Some(Err(why)) => return tracing::error!(why, "RESHARD cannot record the new map"),
            None => return tracing::error!("RESHARD cannot record the new map: no file text"),
        };
        let mut last = String::new();
        for _ in 0..10 {
            match member.switch(&self.stamp, &record).await {
                Ok(_) => return,
                Err(why) => last = why,
            }
            // Finished already (this proxy's heartbeat, after a lost answer).
            if let Ok(Some(Step::Switched)) = member.step_of(&self.stamp).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::error!(
            why = last,
            "RESHARD could not tell the fleet the new map is in force; this proxy's heartbeat goes on trying"
        );
    }
}
