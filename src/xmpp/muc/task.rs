//! The task owning one room: loads the dialog, applies [`Command`]s one at a time to the
//! [`Room`], stores groupchat history before reflecting it (so what the sender sees
//! acknowledged is durable), delivers through the hub, tells the offline-alert hook about
//! occupants who are not online, and unloads itself when the room is empty.

use std::sync::Arc;

use tokio::sync::mpsc;
use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::{StanzaError, StanzaErrorCondition};
use xmpp_proto::{escape_attr, BareJid, FullJid};

use super::room::{JoinRefusal, Out, Room, NS_MUC};
use super::{Command, Muc, RoomKey};
use crate::chat::model::{Dialog, Message, ObjectId};
use crate::clock;
use crate::model::UserId;
use crate::xmpp::history::{inject, render, HistoryFields};
use crate::xmpp::message::chat_failure;
use crate::xmpp::reply::{parse_stanza, Failure};
use crate::xmpp::XmppContext;

/// Starts the task of room `key` and returns its queue.
pub(super) fn spawn(ctx: Arc<XmppContext>, key: RoomKey, capacity: usize) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(capacity);
    let own = tx.clone();
    let tracker = ctx.tracker.clone();
    tracker.spawn(run(ctx, key, own, rx));
    tx
}

async fn run(
    ctx: Arc<XmppContext>,
    key: RoomKey,
    own: mpsc::Sender<Command>,
    mut rx: mpsc::Receiver<Command>,
) {
    let jid = room_jid(&ctx, &key);
    let dialog = match ctx.chat.store.dialog(key.0, &key.1).await {
        Ok(Some(dialog)) if dialog.kind.has_room() => Some(dialog),
        Ok(_) => None,
        Err(error) => {
            tracing::error!(%error, room = %jid, "loading a room's dialog failed");
            None
        }
    };
    let mut room = dialog.map(|dialog| Room::new(jid.clone(), dialog));
    let mut closing = false;
    loop {
        let command = if closing || room.as_ref().is_none_or(Room::is_empty) {
            // Nobody in (or no dialog): finish what is queued, then unload.
            match rx.try_recv() {
                Ok(command) => command,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => command,
                    None => break,
                },
                () = ctx.shutdown.cancelled() => break,
            }
        };
        match room.as_mut() {
            Some(room) => {
                if handle(&ctx, &key, room, command).await {
                    closing = true;
                }
            }
            None => refuse(&ctx, &jid, command),
        }
    }
    // Unload: whoever sends from now on starts a new task; what slipped in before the queue
    // closed goes there too, in order.
    ctx.muc
        .rooms
        .remove_if(&key, |_, current| current.same_channel(&own));
    drop(own);
    rx.close();
    while let Ok(command) = rx.try_recv() {
        if !ctx.shutdown.is_cancelled() {
            Muc::send(&ctx, key.clone(), command).await;
        }
    }
}

/// Applies one command; true when the room must close (its dialog was deleted).
async fn handle(ctx: &Arc<XmppContext>, key: &RoomKey, room: &mut Room, command: Command) -> bool {
    match command {
        Command::Join {
            session,
            user,
            nick,
            id,
            quickblox,
        } => {
            let user_jid = user_bare(ctx, key, user);
            match room.join(&session, user, &user_jid, &nick, id.as_deref()) {
                Ok(out) => {
                    ctx.muc.note_joined(&session, key);
                    deliver(ctx, out, Urgency::Urgent);
                    if !quickblox {
                        // XEP-0045 §7.2.15: the subject (empty: none set) ends the join.
                        let subject = format!(
                            "<message type='groupchat' from='{}' to='{}' id='{}'><subject/></message>",
                            escape_attr(&room.jid().to_string()),
                            escape_attr(&session.to_string()),
                            ObjectId::generate(clock::unix_now())
                        );
                        deliver(ctx, vec![(session, subject)], Urgency::Urgent);
                    }
                }
                Err(refusal) => {
                    let (condition, text) = match refusal {
                        JoinRefusal::NotMember => (
                            StanzaErrorCondition::RegistrationRequired,
                            "Only occupants of this dialog may join its room",
                        ),
                        JoinRefusal::WrongNick => (
                            StanzaErrorCondition::NotAcceptable,
                            "The nickname in a dialog room is your user id",
                        ),
                    };
                    let error = StanzaError::new(condition).with_text(text);
                    let from = format!("{}/{nick}", room.jid());
                    deliver(
                        ctx,
                        vec![(
                            session.clone(),
                            join_error(&from, &session, id.as_deref(), &error),
                        )],
                        Urgency::Urgent,
                    );
                }
            }
        }
        Command::Leave { session, id } => {
            let out = room.leave(&session, id.as_deref(), true);
            ctx.muc.note_left(&session, key);
            deliver(ctx, out, Urgency::Urgent);
        }
        Command::Gone { session } => {
            let out = room.leave(&session, None, false);
            deliver(ctx, out, Urgency::Defer);
        }
        Command::Message {
            session,
            stanza,
            traits,
            done,
        } => {
            let result = groupchat(ctx, room, &session, &stanza, &traits).await;
            let _ = done.send(result);
        }
        Command::Items { user, reply } => {
            let _ = reply.send(room.may_join(user).then(|| room.users()));
        }
        Command::Remove { users, actor } => {
            let actor = user_bare(ctx, key, actor);
            for user in users {
                let sessions: Vec<FullJid> = room
                    .sessions()
                    .filter(|s| room.occupant_of(s) == Some(user))
                    .cloned()
                    .collect();
                deliver(ctx, room.remove(user, &actor), Urgency::Urgent);
                for session in sessions {
                    ctx.muc.note_left(&session, key);
                }
            }
        }
        Command::Refresh { dialog, actor } => {
            let actor = user_bare(ctx, key, actor);
            let before: Vec<FullJid> = room.sessions().cloned().collect();
            deliver(ctx, room.set_dialog(dialog, &actor), Urgency::Urgent);
            for session in before.iter().filter(|s| room.occupant_of(s).is_none()) {
                ctx.muc.note_left(session, key);
            }
        }
        Command::Deleted => {
            let owner = user_bare(ctx, key, room.dialog().owner);
            let before: Vec<FullJid> = room.sessions().cloned().collect();
            deliver(ctx, room.close(&owner), Urgency::Urgent);
            for session in &before {
                ctx.muc.note_left(session, key);
            }
            return true;
        }
        Command::Send { message } => {
            let from = room.occupant_jid(message.sender);
            let out: Vec<Out> = room
                .sessions()
                .map(|session| {
                    (
                        session.clone(),
                        render(&message, "groupchat", &from, &session.to_string()),
                    )
                })
                .collect();
            deliver(ctx, out, Urgency::Urgent);
            alert_offline(ctx, key, room.dialog(), &message);
        }
    }
    false
}

/// A groupchat from an occupant: stored first when it asks (`save_to_history`), then
/// reflected to everyone in the room.
async fn groupchat(
    ctx: &Arc<XmppContext>,
    room: &Room,
    session: &FullJid,
    stanza: &xmpp_proto::Stanza,
    traits: &crate::xmpp::classify::MessageTraits,
) -> Result<(), StanzaError> {
    let Some(user) = room.occupant_of(session) else {
        // XEP-0045 §7.4: only occupants send to the room.
        return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)
            .with_text("Join the room before sending to it"));
    };
    if !traits.asks_for_history() {
        deliver(ctx, room.broadcast(user, stanza), traits.urgency());
        return Ok(());
    }
    let fields = HistoryFields::read(stanza.as_str());
    let now = clock::unix_now();
    let dialog = room.dialog();
    if let Some(original) = fields.replaces.as_deref() {
        // XEP-0308: the sender's own message in this dialog gets the new text.
        let body = fields.body.as_deref();
        ctx.chat
            .correct(dialog.app, user, original, body, Some(&dialog.id), now)
            .await
            .map_err(refusal)?;
        deliver(ctx, room.broadcast(user, stanza), traits.urgency());
        return Ok(());
    }
    let from = room.occupant_jid(user);
    let stamped = stanza.with_from_to(Some(&from), None);
    let id = stanza.envelope().id.as_deref();
    let message = fields.into_message(id, dialog.id.clone(), dialog.app, user, None, now);
    let saved = ctx
        .chat
        .save(message, |m| {
            Some(inject(&stamped, &m.dialog, &m.id, m.date_sent))
        })
        .await
        .map_err(refusal)?;
    let injected = saved.stanza.as_deref().unwrap_or(&stamped);
    match parse_stanza(injected) {
        Ok(parsed) => deliver(ctx, room.broadcast(user, &parsed), traits.urgency()),
        Err(error) => tracing::error!(%error, "an injected groupchat did not parse"),
    }
    let key = (room.dialog().app, room.dialog().id.clone());
    alert_offline(ctx, &key, room.dialog(), &saved);
    Ok(())
}

/// A chat refusal as the error the sender of a groupchat sees.
fn refusal(error: crate::chat::ChatError) -> StanzaError {
    match chat_failure(error) {
        Failure::Refused(error) => error,
        Failure::Store(error) => {
            tracing::error!(%error, "storing a groupchat message failed");
            StanzaError::new(StanzaErrorCondition::InternalServerError)
        }
    }
}

/// Occupants of the dialog with no session online: the push hook hears of the message.
fn alert_offline(ctx: &Arc<XmppContext>, key: &RoomKey, dialog: &Dialog, message: &Message) {
    for &user in dialog.occupants.iter().filter(|&&u| u != message.sender) {
        if !ctx.hub.is_online(&user_bare(ctx, key, user)) {
            ctx.chat.alert_offline(user, message);
        }
    }
}

/// Hands each stanza to its session's queue; a session gone or full just misses it (a room
/// is live presence, not storage: history is in the store).
fn deliver(ctx: &XmppContext, out: Vec<Out>, urgency: Urgency) {
    for (to, text) in out {
        if let Some(session) = ctx.hub.session(&to) {
            if session.send(Arc::from(text), urgency.clone()).is_err() {
                ctx.metrics
                    .dropped
                    .with_label_values(&["room_queue_full"])
                    .inc();
            }
        }
    }
}

/// Answers commands for a room whose dialog does not exist (or is private).
fn refuse(ctx: &XmppContext, jid: &BareJid, command: Command) {
    let missing =
        || StanzaError::new(StanzaErrorCondition::ItemNotFound).with_text("No such dialog room");
    match command {
        Command::Join {
            session, nick, id, ..
        } => {
            let from = format!("{jid}/{nick}");
            deliver(
                ctx,
                vec![(
                    session.clone(),
                    join_error(&from, &session, id.as_deref(), &missing()),
                )],
                Urgency::Urgent,
            );
        }
        Command::Message { done, .. } => {
            let _ = done.send(Err(missing()));
        }
        Command::Items { reply, .. } => {
            let _ = reply.send(None);
        }
        _ => {}
    }
}

/// A join refusal: from the occupant JID asked for, echoing the join id, with the muc `<x/>`
/// (clients match the error to their join by it).
fn join_error(from: &str, to: &FullJid, id: Option<&str>, error: &StanzaError) -> String {
    let id = id
        .map(|id| format!(" id='{}'", escape_attr(id)))
        .unwrap_or_default();
    format!(
        "<presence type='error' from='{}' to='{}'{id}><x xmlns='{NS_MUC}'/>{}</presence>",
        escape_attr(from),
        escape_attr(&to.to_string()),
        error.to_xml()
    )
}

fn room_jid(ctx: &XmppContext, key: &RoomKey) -> BareJid {
    BareJid::new(
        Some(&format!("{}_{}", key.0 .0, key.1)),
        &format!("muc.{}", ctx.domain()),
    )
    .expect("an app id and an ObjectId make a valid node")
}

fn user_bare(ctx: &XmppContext, key: &RoomKey, user: UserId) -> BareJid {
    BareJid::new(Some(&format!("{}-{}", user.0, key.0 .0)), ctx.domain())
        .expect("ids make a valid node")
}
