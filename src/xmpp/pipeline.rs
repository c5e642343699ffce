//! Saved 1:1 messages in flight. A message that asks for history is routed only once its
//! commit is done (so an acknowledged message is durable), but its connection need not wait
//! for that commit before reading the next stanza: it queues the save, keeps it here, and
//! routes it when the writer reports the commit. A client sending a burst therefore fills a
//! batch instead of getting one message per commit.
//!
//! Order is what a client sees from a serial server:
//! - saves commit in the order they were queued (the writer is FIFO) and are routed from the
//!   front of this queue, so messages reach their recipients in the order sent;
//! - any other stanza first waits for every save in flight and routes them (`drain_saves`),
//!   so nothing overtakes an earlier message and a query sees the history it follows;
//! - an `<a h/>` is written only once the queue is empty (`Output::Ack` in `conn.rs`), so the
//!   stanzas it acknowledges are handled.
//!
//! At most [`MAX_IN_FLIGHT`] saves wait per connection: beyond that the connection waits for
//! the oldest, which slows its reads (and so its client) instead of growing memory.

use std::collections::VecDeque;

use xmpp_proto::Stanza;

use super::classify::MessageTraits;
use super::history::QueuedSave;
use super::message::{chat_failure, Addressee};
use super::reply::Reply;
use super::session::Session;

/// Saves one connection may have in flight: enough for a burst to fill a commit batch,
/// small next to the writer's queue.
pub(super) const MAX_IN_FLIGHT: usize = 32;

/// A message whose save is queued, with what routing it needs afterwards.
pub(super) struct InFlightSave {
    pub stanza: Box<Stanza>,
    pub traits: MessageTraits,
    pub to: Addressee,
    pub queued: QueuedSave,
}

/// The saves of one connection, oldest first.
#[derive(Default)]
pub(super) struct InFlight(VecDeque<Box<InFlightSave>>);

impl InFlight {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Resolves when the oldest save's commit is done (never, when there is none).
    /// Cancel-safe.
    pub async fn front_settled(&mut self) {
        match self.0.front_mut() {
            Some(front) => front.queued.settled().await,
            None => std::future::pending().await,
        }
    }
}

impl Session {
    /// Keeps a queued save for routing after its commit.
    pub(super) fn queue_save(&mut self, save: Box<InFlightSave>) {
        self.in_flight.0.push_back(save);
    }

    /// Before queueing another save: when the queue is full, routes the oldest.
    pub(super) async fn make_room_for_save(&mut self) -> Vec<Reply> {
        if self.in_flight.0.len() < MAX_IN_FLIGHT {
            return Vec::new();
        }
        match self.in_flight.0.pop_front() {
            Some(oldest) => self.finish_save(oldest).await,
            None => Vec::new(),
        }
    }

    /// Routes the saves at the front whose commits are done.
    pub(super) async fn route_settled(&mut self) -> Vec<Reply> {
        let mut replies = Vec::new();
        while let Some(front) = self.in_flight.0.front_mut() {
            if !front.queued.is_settled() {
                break;
            }
            let save = self.in_flight.0.pop_front().expect("a front");
            replies.extend(self.finish_save(save).await);
        }
        replies
    }

    /// Waits for every save in flight and routes them, oldest first.
    pub(super) async fn drain_saves(&mut self) -> Vec<Reply> {
        let mut replies = Vec::new();
        while let Some(save) = self.in_flight.0.pop_front() {
            replies.extend(self.finish_save(save).await);
        }
        replies
    }

    pub(super) fn has_saves_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    async fn finish_save(&mut self, save: Box<InFlightSave>) -> Vec<Reply> {
        let InFlightSave {
            stanza,
            traits,
            to,
            queued,
        } = *save;
        match self.settle_chat(queued).await {
            Ok((routed, saved)) => {
                self.route_chat(&stanza, &traits, to, routed, Some(saved))
                    .await
            }
            Err(error) => self.answer(&stanza, Err(chat_failure(error))),
        }
    }
}
