//! The join phase of group chat: every user enters its room (XEP-0045 §7.2) before the load
//! starts, in users-file order so the first occupant of a room is the one who creates it on
//! servers where joining creates rooms (an instant room, XEP-0045 §10.1.2, is configured at
//! once). The nickname is the user id, the JID node up to `-` (QuickBlox's rule; any
//! nickname works on other servers).

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xmpp_proto::{escape_attr, Event};

use super::login::{Session, READ_BUFFER};
use super::Rooms;
use crate::users::User;

/// Longest wait for a room's answer to a join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Joins every session to its room; any refusal aborts the run.
pub async fn join_all(
    sessions: &mut [Session],
    users: &[User],
    rooms: &Rooms,
) -> anyhow::Result<()> {
    for (index, session) in sessions.iter_mut().enumerate() {
        let room = &rooms.jids[index / rooms.size];
        let nick = users[index]
            .node()
            .split('-')
            .next()
            .unwrap_or_default()
            .to_string();
        tokio::time::timeout(JOIN_TIMEOUT, join(session, room, &nick))
            .await
            .map_err(|_| anyhow!("{} got no answer from {room}", users[index].jid))?
            .with_context(|| format!("{} joining {room}", users[index].jid))?;
    }
    Ok(())
}

async fn join(session: &mut Session, room: &str, nick: &str) -> anyhow::Result<()> {
    let occupant = format!("{room}/{nick}");
    let join = format!(
        "<presence to='{}' id='join-{}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>",
        escape_attr(&occupant),
        escape_attr(nick)
    );
    session.io.write_all(join.as_bytes()).await?;
    session.io.flush().await?;
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        while let Some(event) = session.parser.next_event()? {
            let Event::Stanza(stanza) = event else {
                continue;
            };
            let envelope = stanza.envelope();
            if envelope.name != "presence" || envelope.from.as_deref() != Some(occupant.as_str()) {
                continue;
            }
            if envelope.stanza_type.as_deref() == Some("error") {
                bail!("join refused: {}", stanza.as_str());
            }
            let text = stanza.as_str();
            if !text.contains("code='110'") && !text.contains("code=\"110\"") {
                continue;
            }
            if text.contains("code='201'") || text.contains("code=\"201\"") {
                // A new room waits for its owner's configuration: accept the defaults.
                let config = format!(
                    "<iq type='set' to='{}' id='cfg-{}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>",
                    escape_attr(room),
                    escape_attr(nick)
                );
                session.io.write_all(config.as_bytes()).await?;
                session.io.flush().await?;
            }
            return Ok(());
        }
        let read = session.io.read(&mut buf).await?;
        if read == 0 {
            bail!("the server closed the connection");
        }
        session.parser.feed(&buf[..read]);
    }
}
