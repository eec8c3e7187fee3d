//! What every message sent to the backend will be answered with, in order.
//!
//! The proxy changes the conversation: it re-prepares statements the client prepared on
//! another backend, replays settings, and answers some messages itself (a Parse of a statement
//! the backend already has, a Close of a shared statement). [`Replies`] is the queue that keeps
//! the client's view exact: each entry says which backend message completes it, whether the
//! client may see its replies, and what to take back if it fails. Error recovery follows the
//! protocol: after an ErrorResponse to an extended-query message the backend discards messages
//! until Sync (PostgreSQL docs, "Extended Query"), and during COPY IN it ignores Sync and Flush
//! ("COPY Operations").

use std::collections::VecDeque;
use std::sync::Arc;

use super::statements::SessionEffect;
use crate::error::ErrorReport;
use crate::wire::tag;

/// One expected answer.
#[derive(Debug)]
pub enum Expect {
    /// Parse; hidden when the proxy re-prepares on its own.
    Parse {
        /// Whether the client sent it (and sees ParseComplete).
        visible: bool,
        /// What to forget if it fails or is discarded.
        undo: Undo,
    },
    /// Bind.
    Bind,
    /// Describe (statement or portal).
    Describe,
    /// Execute, with the session effects of the statement its portal runs.
    Execute(Vec<SessionEffect>),
    /// Close of a portal.
    Close,
    /// Sync: answered by ReadyForQuery.
    Sync,
    /// A Sync the proxy sends on its own inside a transaction block, so that the backend
    /// answers everything sent so far and the batch can go on on another shard (see
    /// `spanning`); its ReadyForQuery is hidden.
    ProxySync,
    /// Simple Query: answered by everything up to ReadyForQuery.
    Query {
        /// False for settings the proxy replays on a new backend.
        visible: bool,
        /// Session effects of its statements, applied when it succeeds.
        effects: Vec<SessionEffect>,
        /// Whether an ErrorResponse arrived for it.
        failed: bool,
        /// What to forget if it fails (a rewritten SQL-level PREPARE).
        undo: Undo,
    },
    /// FunctionCall: FunctionCallResponse, then ReadyForQuery.
    FunctionCall,
    /// One statement of a client's multi-statement query that the proxy runs on its own
    /// (its statements need different shards, see `per_statement`): everything shown but the
    /// ReadyForQuery, which the proxy writes once the whole query ran.
    QueryPart,
    /// The COMMIT or ROLLBACK that ends a transaction the proxy began on the client's behalf
    /// (see `implicit`): only an error is shown, and the proxy then writes the client's
    /// ReadyForQuery itself.
    Ending,
    /// An answer the proxy writes itself when this entry reaches the head of the queue.
    Synthetic {
        /// The message to write.
        message: Synthetic,
        /// What to forget if it is discarded (the backend would have ignored the message).
        undo: Undo,
    },
    /// The client ended a COPY (CopyDone/CopyFail); marks where ignored Syncs stop.
    CopyEnd,
}

impl Expect {
    /// An answer the proxy writes itself, with nothing to take back.
    pub fn synthetic(message: Synthetic) -> Self {
        Expect::Synthetic {
            message,
            undo: Undo::default(),
        }
    }

    /// A simple Query the proxy sends on its own (settings replay, re-prepare).
    pub fn hidden_query() -> Self {
        Expect::Query {
            visible: false,
            effects: Vec::new(),
            failed: false,
            undo: Undo::default(),
        }
    }
}

/// A message the proxy answers in the backend's place.
#[derive(Debug)]
pub enum Synthetic {
    /// ParseComplete for a statement the backend already has.
    ParseComplete,
    /// CloseComplete for a statement the proxy keeps for other clients.
    CloseComplete,
    /// BindComplete of a BEGIN the proxy defers (see `local`).
    BindComplete,
    /// NoData: the description of such a BEGIN's portal.
    NoData,
    /// CommandComplete of a SQL-level PREPARE or DEALLOCATE the proxy answered.
    CommandComplete(&'static str),
    /// ReadyForQuery after such a command, with the client's current status.
    ReadyForQuery,
    /// An error the proxy raises (the client then skips to Sync).
    Error(ErrorReport),
    /// Messages the proxy encoded itself (rows of a suspended cross-shard portal).
    Frames(bytes::BytesMut),
}

/// Bookkeeping to take back when a Parse fails or is discarded.
#[derive(Debug, Default)]
pub struct Undo {
    /// Client statement name registered by this Parse.
    pub client_name: Option<Arc<str>>,
    /// Backend statement name assumed to exist after this Parse.
    pub backend_name: Option<Arc<str>>,
    /// Client name of a SQL-level PREPARE.
    pub sql_name: Option<String>,
}

/// What to do with one backend message.
#[derive(Debug, Default)]
pub struct Reply {
    /// Forward it to the client.
    pub visible: bool,
    /// A simple Query finished successfully with these effects.
    pub effects: Vec<SessionEffect>,
    /// A Parse of this backend statement name succeeded.
    pub prepared: Option<Arc<str>>,
}

/// The queue of expected answers for one backend connection.
#[derive(Debug, Default)]
pub struct Replies {
    queue: VecDeque<Expect>,
    /// The backend is discarding messages until Sync after an error.
    skipping: bool,
    /// The backend is in COPY IN and ignores Sync until the client ends the copy.
    copy_in: bool,
}

impl Replies {
    /// Lets the queue's memory go when it is empty: an idle client keeps none.
    pub fn release_when_empty(&mut self) {
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
    }

    /// True when every message sent has been answered.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// True when the one thing awaited is a simple Query the client sees, not yet answered
    /// at all: it can be sent again on another backend as if it never ran.
    pub fn only_an_unanswered_query(&self) -> bool {
        self.queue.len() == 1
            && matches!(
                self.queue.front(),
                Some(Expect::Query { visible: true, .. })
            )
            && !self.skipping
    }

    /// True when the backend failed an extended-query message and discards everything until
    /// the client's Sync reaches it: it must not go to another client even with every reply in
    /// (that client's messages would be discarded).
    pub fn skipping_to_sync(&self) -> bool {
        self.skipping
    }

    /// The backend was let go (back to its pool, or closed): the next one is not skipping.
    pub fn backend_left(&mut self) {
        self.skipping = false;
    }

    /// True when the backend will answer everything sent without being sent anything more:
    /// every extended-query message is followed by a Sync (answers the proxy writes itself
    /// need no backend). Only then may the session move to another backend.
    pub fn synced(&self) -> bool {
        let mut pending = self.queue.iter().rev();
        let last_sent = pending.find(|e| !matches!(e, Expect::Synthetic { .. }));
        matches!(
            last_sent,
            None | Some(
                Expect::Sync
                    | Expect::ProxySync
                    | Expect::Query { .. }
                    | Expect::FunctionCall
                    | Expect::QueryPart
                    | Expect::Ending
            )
        )
    }

    /// Records the answer expected for a message just sent. Returns the undo of a message the
    /// backend will ignore (an extended message while it skips to Sync).
    pub fn push(&mut self, expect: Expect) -> Option<Undo> {
        match expect {
            Expect::Sync if self.copy_in => return None,
            Expect::Sync | Expect::ProxySync => self.skipping = false,
            Expect::CopyEnd => self.copy_in = false,
            // Until Sync the server discards every message, simple queries included
            // (postgres.c: ignore_till_sync).
            _ if self.skipping => return Some(take_undo(expect)),
            _ => {}
        }
        self.queue.push_back(expect);
        None
    }

    /// Pops the answers the proxy writes itself, now that everything before them is answered.
    pub fn take_synthetics(&mut self) -> Vec<Synthetic> {
        let mut out = Vec::new();
        while let Some(Expect::Synthetic { .. } | Expect::CopyEnd) = self.queue.front() {
            if let Some(Expect::Synthetic { message, .. }) = self.queue.pop_front() {
                out.push(message);
            }
        }
        out
    }

    /// True when the reply being received belongs to a message the client did not send.
    pub fn head_is_hidden(&self) -> bool {
        self.queue.front().is_some_and(|head| !is_visible(head))
    }

    /// True when the head of the queue is an answer the proxy writes itself.
    pub fn synthetic_at_head(&self) -> bool {
        matches!(
            self.queue.front(),
            Some(Expect::Synthetic { .. } | Expect::CopyEnd)
        )
    }

    /// Classifies one backend message (not an asynchronous one: Notice, Notification and
    /// ParameterStatus are always forwarded by the caller). Undos of failed or discarded
    /// messages are appended to `undo`.
    pub fn on_reply(&mut self, message_tag: u8, undo: &mut Vec<Undo>) -> Reply {
        let Some(head) = self.queue.front_mut() else {
            // Nothing was asked: a FATAL from a terminating backend, say. The client must see it.
            return visible();
        };
        match (message_tag, head) {
            (
                tag::ERROR_RESPONSE,
                Expect::Query {
                    visible: v, failed, ..
                },
            ) => {
                *failed = true;
                Reply {
                    visible: *v,
                    ..Reply::default()
                }
            }
            (
                tag::ERROR_RESPONSE,
                Expect::FunctionCall
                | Expect::Sync
                | Expect::ProxySync
                | Expect::QueryPart
                | Expect::Ending,
            ) => visible(),
            (tag::ERROR_RESPONSE, _) => self.fail_extended(undo),
            (tag::READY_FOR_QUERY, _) => self.complete_ready(undo),
            (tag::COPY_IN_RESPONSE, _) => {
                self.enter_copy_in();
                visible()
            }
            (t, head) => {
                let visible = is_visible(head);
                let mut reply = Reply {
                    visible,
                    ..Reply::default()
                };
                if completes(t, head) {
                    match self.queue.pop_front() {
                        Some(Expect::Parse { undo, .. }) => reply.prepared = undo.backend_name,
                        Some(Expect::Execute(effects)) if t == tag::COMMAND_COMPLETE => {
                            reply.effects = effects;
                        }
                        _ => {}
                    }
                }
                reply
            }
        }
    }

    fn complete_ready(&mut self, undo: &mut Vec<Undo>) -> Reply {
        match self.queue.pop_front() {
            Some(Expect::Query {
                visible,
                effects,
                failed,
                undo: u,
            }) => {
                if failed {
                    undo.push(u);
                }
                Reply {
                    visible,
                    effects: if failed || !visible {
                        Vec::new()
                    } else {
                        effects
                    },
                    prepared: None,
                }
            }
            Some(Expect::ProxySync | Expect::QueryPart | Expect::Ending) => Reply::default(),
            _ => visible(),
        }
    }

    /// ErrorResponse to an extended-query message: it and everything up to the next Sync is
    /// dropped, because the backend now discards every message until Sync.
    fn fail_extended(&mut self, undo: &mut Vec<Undo>) -> Reply {
        if let Some(failed) = self.queue.pop_front() {
            undo.push(take_undo(failed));
        }
        while let Some(front) = self.queue.front() {
            if matches!(front, Expect::Sync | Expect::ProxySync) {
                break;
            }
            if let Some(dropped) = self.queue.pop_front() {
                undo.push(take_undo(dropped));
            }
        }
        self.skipping = !matches!(self.queue.front(), Some(Expect::Sync | Expect::ProxySync));
        visible()
    }

    /// CopyInResponse: Syncs the client sent between the COPY and its CopyDone are ignored by
    /// the backend, so they must not wait for a ReadyForQuery.
    fn enter_copy_in(&mut self) {
        let end = self.queue.iter().position(|e| matches!(e, Expect::CopyEnd));
        let limit = end.unwrap_or(self.queue.len());
        let mut index = 0;
        self.queue.retain(|e| {
            let ignored = index > 0 && index < limit && matches!(e, Expect::Sync);
            index += 1;
            !ignored
        });
        self.copy_in = end.is_none();
    }
}

fn visible() -> Reply {
    Reply {
        visible: true,
        ..Reply::default()
    }
}

fn is_visible(head: &Expect) -> bool {
    match head {
        Expect::Parse { visible, .. } | Expect::Query { visible, .. } => *visible,
        Expect::ProxySync | Expect::Ending => false,
        _ => true,
    }
}

/// Whether `message_tag` is the final answer to `head`.
fn completes(message_tag: u8, head: &Expect) -> bool {
    match head {
        Expect::Parse { .. } => message_tag == tag::PARSE_COMPLETE,
        Expect::Bind => message_tag == tag::BIND_COMPLETE,
        Expect::Close => message_tag == tag::CLOSE_COMPLETE,
        Expect::Describe => matches!(message_tag, tag::ROW_DESCRIPTION | tag::NO_DATA),
        Expect::Execute(_) => matches!(
            message_tag,
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY_RESPONSE | tag::PORTAL_SUSPENDED
        ),
        _ => false,
    }
}

fn take_undo(expect: Expect) -> Undo {
    match expect {
        Expect::Parse { undo, .. }
        | Expect::Synthetic { undo, .. }
        | Expect::Query { undo, .. } => undo,
        _ => Undo::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(replies: &mut Replies, message_tag: u8) -> (bool, Vec<Undo>) {
        let mut undo = Vec::new();
        let r = replies.on_reply(message_tag, &mut undo);
        (r.visible, undo)
    }

    fn parse(visible: bool, name: &str) -> Expect {
        Expect::Parse {
            visible,
            undo: Undo {
                client_name: Some(name.into()),
                ..Undo::default()
            },
        }
    }

    #[test]
    fn extended_round_trip_completes_in_order() {
        let mut r = Replies::default();
        for e in [
            parse(true, "a"),
            Expect::Bind,
            Expect::Execute(Vec::new()),
            Expect::Sync,
        ] {
            assert!(r.push(e).is_none());
        }
        for t in [
            tag::PARSE_COMPLETE,
            tag::BIND_COMPLETE,
            tag::DATA_ROW,
            tag::COMMAND_COMPLETE,
        ] {
            assert!(reply(&mut r, t).0);
        }
        assert!(!r.is_empty());
        assert!(reply(&mut r, tag::READY_FOR_QUERY).0);
        assert!(r.is_empty());
    }

    #[test]
    fn hidden_parse_hides_success_but_shows_errors() {
        let mut r = Replies::default();
        r.push(parse(false, "a"));
        r.push(Expect::Bind);
        assert!(!reply(&mut r, tag::PARSE_COMPLETE).0);
        r.push(parse(false, "b"));
        r.push(Expect::Sync);
        assert!(reply(&mut r, tag::BIND_COMPLETE).0);
        let (visible, undo) = reply(&mut r, tag::ERROR_RESPONSE);
        assert!(visible);
        assert_eq!(undo[0].client_name.as_deref(), Some("b"));
    }

    #[test]
    fn an_error_discards_everything_up_to_sync_and_undoes_it() {
        let mut r = Replies::default();
        r.push(Expect::Bind);
        r.push(Expect::Execute(Vec::new()));
        r.push(Expect::Synthetic {
            message: Synthetic::ParseComplete,
            undo: Undo {
                client_name: Some("later".into()),
                ..Undo::default()
            },
        });
        r.push(Expect::Sync);
        let (visible, undo) = reply(&mut r, tag::ERROR_RESPONSE);
        assert!(visible);
        assert!(
            undo.iter()
                .any(|u| u.client_name.as_deref() == Some("later"))
        );
        assert!(
            r.take_synthetics().is_empty(),
            "the discarded ParseComplete is never sent"
        );
        assert!(reply(&mut r, tag::READY_FOR_QUERY).0);
        assert!(r.is_empty());
    }

    #[test]
    fn messages_after_an_error_without_sync_are_ignored_until_sync() {
        let mut r = Replies::default();
        r.push(Expect::Execute(Vec::new()));
        reply(&mut r, tag::ERROR_RESPONSE);
        assert!(
            r.push(parse(true, "x")).is_some(),
            "the backend ignores it: undo at once"
        );
        assert!(r.is_empty());
        r.push(Expect::Sync);
        assert!(reply(&mut r, tag::READY_FOR_QUERY).0);
        assert!(r.is_empty());
    }

    #[test]
    fn a_simple_query_after_an_extended_error_is_discarded_too() {
        let mut r = Replies::default();
        r.push(Expect::Execute(Vec::new()));
        r.push(Expect::Query {
            visible: true,
            effects: Vec::new(),
            failed: false,
            undo: Undo::default(),
        });
        r.push(Expect::Sync);
        reply(&mut r, tag::ERROR_RESPONSE);
        assert!(reply(&mut r, tag::READY_FOR_QUERY).0);
        assert!(r.is_empty(), "one ReadyForQuery, for the Sync");
    }

    #[test]
    fn synthetics_wait_for_earlier_replies() {
        let mut r = Replies::default();
        r.push(Expect::Bind);
        r.push(Expect::synthetic(Synthetic::CloseComplete));
        assert!(r.take_synthetics().is_empty());
        reply(&mut r, tag::BIND_COMPLETE);
        assert!(r.synthetic_at_head());
        assert_eq!(r.take_synthetics().len(), 1);
        assert!(r.is_empty());
    }

    #[test]
    fn syncs_sent_during_copy_in_expect_no_ready_for_query() {
        let mut r = Replies::default();
        r.push(Expect::Bind);
        r.push(Expect::Execute(Vec::new()));
        r.push(Expect::Sync); // pipelined before the COPY started: ignored by the server
        reply(&mut r, tag::BIND_COMPLETE);
        reply(&mut r, tag::COPY_IN_RESPONSE);
        assert!(r.push(Expect::Sync).is_none());
        r.push(Expect::CopyEnd);
        r.push(Expect::Sync);
        reply(&mut r, tag::COMMAND_COMPLETE);
        assert!(r.take_synthetics().is_empty());
        assert!(reply(&mut r, tag::READY_FOR_QUERY).0);
        assert!(r.is_empty());
    }

    #[test]
    fn a_failed_simple_query_drops_its_effects_and_keeps_waiting_for_ready() {
        let mut r = Replies::default();
        r.push(Expect::Query {
            visible: true,
            effects: vec![SessionEffect::ResetAll],
            failed: false,
            undo: Undo::default(),
        });
        assert!(reply(&mut r, tag::ERROR_RESPONSE).0);
        assert!(!r.is_empty());
        let mut undo = Vec::new();
        let done = r.on_reply(tag::READY_FOR_QUERY, &mut undo);
        assert!(done.visible && done.effects.is_empty());
    }
}
