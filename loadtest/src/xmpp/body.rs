//! The load message: a 1:1 `type='chat'` message whose body is `{seq} {sent_us} {to_index}`,
//! so the receiver can compute latency (one clock: every client lives in this process), spot
//! duplicates by sequence number and check the message reached the user it was sent to.

use std::io::Write as _;

/// What a load message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// Sequence number, unique over the run.
    pub seq: u64,
    /// Send time in microseconds since the run's epoch.
    pub sent_us: u64,
    /// Index of the recipient in the users list.
    pub to_index: u32,
}

/// Appends the message to `out` (no allocation once `out` has grown). `to` must already be
/// attribute-escaped. With `save_history`, the message is the QuickBlox SDK's stored 1:1
/// message: a 24-hex id (from the sequence number) and `extraParams/save_to_history`;
/// servers without QuickBlox history (ejabberd with `mod_mam`) archive it like any chat.
/// With `groupchat`, it goes to a room (`to` is the room's bare JID).
pub fn write_message(
    out: &mut Vec<u8>,
    to: &str,
    payload: Payload,
    save_history: bool,
    groupchat: bool,
) {
    let Payload {
        seq,
        sent_us,
        to_index,
    } = payload;
    let kind = if groupchat { "groupchat" } else { "chat" };
    // Writing to a Vec cannot fail.
    if save_history {
        let _ = write!(
            out,
            "<message to='{to}' type='{kind}' id='{:024x}'><body>{seq} {sent_us} {to_index}</body>\
             <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams></message>",
            0x6c00_0000_0000_0000_0000_0000u128 + u128::from(seq)
        );
    } else {
        let _ = write!(
            out,
            "<message to='{to}' type='{kind}'><body>{seq} {sent_us} {to_index}</body></message>"
        );
    }
}

/// The payload of a received message, `None` if the stanza is not one of ours. Servers
/// re-serialise stanzas (attribute order and quotes change), but the body text stays as sent.
pub fn parse_payload(stanza: &str) -> Option<Payload> {
    let start = stanza.find("<body")?;
    let rest = &stanza[start + 5..];
    let rest = match rest.as_bytes().first()? {
        b'>' => &rest[1..],
        // Attributes such as xml:lang.
        b' ' | b'\t' | b'\n' | b'\r' => &rest[rest.find('>')? + 1..],
        _ => return None,
    };
    let text = &rest[..rest.find("</body>")?];
    let mut parts = text.split(' ');
    let payload = Payload {
        seq: parts.next()?.parse().ok()?,
        sent_us: parts.next()?.parse().ok()?,
        to_index: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let payload = Payload {
            seq: 12,
            sent_us: 3_456_789,
            to_index: 7,
        };
        let mut out = Vec::new();
        write_message(&mut out, "7-42@localhost/lt7", payload, false, false);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "<message to='7-42@localhost/lt7' type='chat'><body>12 3456789 7</body></message>"
        );
        assert_eq!(parse_payload(&text), Some(payload));
        let mut saved = Vec::new();
        write_message(&mut saved, "7-42@localhost", payload, true, false);
        let saved = String::from_utf8(saved).unwrap();
        assert!(saved.starts_with("<message to='7-42@localhost' type='chat' id='6c000000000000000000000c'><body>12 3456789 7</body>"));
        assert!(saved.contains("<save_to_history>1</save_to_history>"));
        assert_eq!(parse_payload(&saved), Some(payload));
    }

    #[test]
    fn parses_reserialised_stanzas_and_rejects_others() {
        let prosody = "<message from='a@d/r' type='chat' to=\"b@d/r\" xml:lang='en'>\
                       <body xml:lang='en'>1 2 3</body><delay xmlns='urn:xmpp:delay'/></message>";
        assert_eq!(
            parse_payload(prosody),
            Some(Payload {
                seq: 1,
                sent_us: 2,
                to_index: 3
            })
        );
        for other in [
            "<message><body>hello</body></message>",
            "<message><body>1 2</body></message>",
            "<message><body>1 2 3 4</body></message>",
            "<message><bodyx>1 2 3</bodyx></message>",
            "<presence/>",
        ] {
            assert_eq!(parse_payload(other), None, "{other}");
        }
    }
}
