//! The MUC service at `muc.{domain}` (XEP-0045) backing QuickBlox group dialogs: room
//! `{appId}_{dialogId}@muc.{domain}`, nickname = user id (XMPP reference §9).
//!
//! - [`room`]: one room's state and rules, no I/O.
//! - [`task`]: the task that owns one room: loads its dialog, applies commands in order,
//!   stores groupchat history, delivers; unloads itself when nobody is in the room.
//! - [`occupant`]: what a session's stanzas to the MUC domain mean (join, leave, groupchat,
//!   disco, MAM), turned into room commands.
//!
//! Each room is owned by exactly one task, so a room's state needs no lock and its events
//! happen in one order for everyone. [`Muc`] maps live rooms to their tasks' queues; sending
//! to a room that just unloaded itself starts a fresh one.

mod occupant;
pub mod room;
mod task;

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};
use xmpp_proto::errors::StanzaError;
use xmpp_proto::{FullJid, Stanza};

use super::classify::MessageTraits;
use super::XmppContext;
use crate::chat::model::{Dialog, DialogId, Message};
use crate::model::{AppId, UserId};

/// Commands waiting for one room; a full queue slows the senders down.
const ROOM_QUEUE: usize = 1024;

/// A room: its application and dialog.
pub type RoomKey = (AppId, DialogId);

/// What a room task is asked to do.
#[derive(Debug)]
pub enum Command {
    /// A session joins as `nick` (the join presence's id echoed in the self-presence).
    Join {
        session: FullJid,
        user: UserId,
        nick: String,
        id: Option<String>,
        /// The QuickBlox SDK's join (id `…:join`): no room subject message, which the SDK
        /// would show as an empty message from nobody.
        quickblox: bool,
    },
    /// A session leaves (`unavailable` to its occupant JID).
    Leave {
        session: FullJid,
        id: Option<String>,
    },
    /// A session ended without leaving.
    Gone { session: FullJid },
    /// A groupchat message; `done` says whether it was accepted (stored and sent).
    Message {
        session: FullJid,
        stanza: Box<Stanza>,
        traits: MessageTraits,
        done: oneshot::Sender<Result<(), StanzaError>>,
    },
    /// The occupants, for disco#items; `None` for someone who may not see the room.
    Items {
        user: UserId,
        reply: oneshot::Sender<Option<Vec<UserId>>>,
    },
    /// Users left the dialog (removed by `actor` over REST, or left themselves).
    Remove { users: Vec<UserId>, actor: UserId },
    /// The dialog changed.
    Refresh { dialog: Dialog, actor: UserId },
    /// The dialog is gone.
    Deleted,
    /// A message created over REST with `send_to_chat=1`.
    Send { message: Message },
}

/// The live rooms and which rooms each session is in.
#[derive(Debug, Default)]
pub struct Muc {
    rooms: DashMap<RoomKey, mpsc::Sender<Command>>,
    joined: DashMap<FullJid, Vec<RoomKey>>,
}

impl Muc {
    pub fn new() -> Muc {
        Muc::default()
    }

    /// How many rooms are loaded (have a task).
    pub fn live_rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Sends `command` to the room, starting its task if it is not running. Waits while the
    /// room's queue is full.
    pub async fn send(ctx: &Arc<XmppContext>, key: RoomKey, mut command: Command) {
        loop {
            let queue = ctx
                .muc
                .rooms
                .entry(key.clone())
                .or_insert_with(|| task::spawn(ctx.clone(), key.clone(), ROOM_QUEUE))
                .clone();
            match queue.send(command).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => {
                    // The room unloaded itself between the lookup and the send.
                    ctx.muc
                        .rooms
                        .remove_if(&key, |_, current| current.same_channel(&queue));
                    command = returned;
                }
            }
        }
    }

    /// Sends to a room only if it is loaded (nobody in an unloaded room needs telling).
    pub async fn send_if_live(ctx: &Arc<XmppContext>, key: RoomKey, command: Command) {
        let queue = ctx.muc.rooms.get(&key).map(|q| q.clone());
        if let Some(queue) = queue {
            if let Err(mpsc::error::SendError(command)) = queue.send(command).await {
                Muc::send(ctx, key, command).await;
            }
        }
    }

    fn note_joined(&self, session: &FullJid, key: &RoomKey) {
        let mut rooms = self.joined.entry(session.clone()).or_default();
        if !rooms.contains(key) {
            rooms.push(key.clone());
        }
    }

    fn note_left(&self, session: &FullJid, key: &RoomKey) {
        if let Some(mut rooms) = self.joined.get_mut(session) {
            rooms.retain(|k| k != key);
        }
        self.joined.remove_if(session, |_, rooms| rooms.is_empty());
    }

    /// A session ended: it leaves every room it was in.
    pub async fn session_ended(ctx: &Arc<XmppContext>, session: &FullJid) {
        let Some((_, rooms)) = ctx.muc.joined.remove(session) else {
            return;
        };
        for key in rooms {
            Muc::send_if_live(
                ctx,
                key,
                Command::Gone {
                    session: session.clone(),
                },
            )
            .await;
        }
    }
}
