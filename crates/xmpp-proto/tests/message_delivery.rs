//! Where a message for a local account goes (RFC 6121 §8.5 with the QuickBlox choices): every
//! message type, addressed to the bare JID, to a full JID nobody bound, or to a bound full
//! JID, against a range of resource sets.

use xmpp_proto::delivery::{route_message, MessageType, Resource, Route};
use xmpp_proto::errors::StanzaErrorCondition;

use MessageType::{Chat, Error, Groupchat, Headline, Normal};

const fn available(priority: i8) -> Resource {
    Resource {
        priority: Some(priority),
    }
}

const UNAVAILABLE: Resource = Resource { priority: None };

const NO_RESOURCES: &[Resource] = &[];
const ONE_UNAVAILABLE: &[Resource] = &[UNAVAILABLE];
const ONE_AT_0: &[Resource] = &[available(0)];
const AT_1_AND_5: &[Resource] = &[available(1), available(5)];
const TIE_AT_5: &[Resource] = &[available(5), available(5)];
const NEGATIVE_ONLY: &[Resource] = &[available(-1), available(-5)];
const NEGATIVE_AND_UNAVAILABLE: &[Resource] = &[available(-1), UNAVAILABLE];
const EVERYTHING: &[Resource] = &[
    UNAVAILABLE,
    available(3),
    available(-2),
    available(3),
    available(0),
];

fn deliver(indices: &[usize]) -> Route {
    Route::Resources(indices.to_vec())
}

const OFFLINE: Route = Route::Offline;
const IGNORE: Route = Route::Ignore;
const NO_ROOM: Route = Route::Bounce(StanzaErrorCondition::ServiceUnavailable);

/// Type, resources, then where it goes when addressed to the bare JID, to a full JID nobody
/// bound, and to the full JID of resource 0 (`None`: there is no resource 0 to address).
type Row = (
    MessageType,
    &'static [Resource],
    Route,
    Route,
    Option<Route>,
);

#[rustfmt::skip]
fn table() -> Vec<Row> {
    vec![
        // chat and normal: highest non-negative priority among the available (§8.5.2.1.1).
        (Chat,      NO_RESOURCES,             OFFLINE,          OFFLINE,          None),
        (Chat,      ONE_UNAVAILABLE,          OFFLINE,          OFFLINE,          Some(deliver(&[0]))),
        (Chat,      ONE_AT_0,                 deliver(&[0]),    deliver(&[0]),    Some(deliver(&[0]))),
        (Chat,      AT_1_AND_5,               deliver(&[1]),    deliver(&[1]),    Some(deliver(&[0]))),
        (Chat,      TIE_AT_5,                 deliver(&[0, 1]), deliver(&[0, 1]), Some(deliver(&[0]))),
        (Chat,      NEGATIVE_ONLY,            OFFLINE,          OFFLINE,          Some(deliver(&[0]))),
        (Chat,      NEGATIVE_AND_UNAVAILABLE, OFFLINE,          OFFLINE,          Some(deliver(&[0]))),
        (Chat,      EVERYTHING,               deliver(&[1, 3]), deliver(&[1, 3]), Some(deliver(&[0]))),
        (Normal,    NO_RESOURCES,             OFFLINE,          OFFLINE,          None),
        (Normal,    ONE_UNAVAILABLE,          OFFLINE,          OFFLINE,          Some(deliver(&[0]))),
        (Normal,    ONE_AT_0,                 deliver(&[0]),    deliver(&[0]),    Some(deliver(&[0]))),
        (Normal,    AT_1_AND_5,               deliver(&[1]),    deliver(&[1]),    Some(deliver(&[0]))),
        (Normal,    TIE_AT_5,                 deliver(&[0, 1]), deliver(&[0, 1]), Some(deliver(&[0]))),
        (Normal,    NEGATIVE_ONLY,            OFFLINE,          OFFLINE,          Some(deliver(&[0]))),
        (Normal,    NEGATIVE_AND_UNAVAILABLE, OFFLINE,          OFFLINE,          Some(deliver(&[0]))),
        (Normal,    EVERYTHING,               deliver(&[1, 3]), deliver(&[1, 3]), Some(deliver(&[0]))),
        // headline (QuickBlox): every bound resource, whatever its presence.
        (Headline,  NO_RESOURCES,             OFFLINE,          OFFLINE,          None),
        (Headline,  ONE_UNAVAILABLE,          deliver(&[0]),    deliver(&[0]),    Some(deliver(&[0]))),
        (Headline,  ONE_AT_0,                 deliver(&[0]),    deliver(&[0]),    Some(deliver(&[0]))),
        (Headline,  AT_1_AND_5,               deliver(&[0, 1]), deliver(&[0, 1]), Some(deliver(&[0]))),
        (Headline,  TIE_AT_5,                 deliver(&[0, 1]), deliver(&[0, 1]), Some(deliver(&[0]))),
        (Headline,  NEGATIVE_ONLY,            deliver(&[0, 1]), deliver(&[0, 1]), Some(deliver(&[0]))),
        (Headline,  NEGATIVE_AND_UNAVAILABLE, deliver(&[0, 1]), deliver(&[0, 1]), Some(deliver(&[0]))),
        (Headline,  EVERYTHING,               deliver(&[0, 1, 2, 3, 4]), deliver(&[0, 1, 2, 3, 4]), Some(deliver(&[0]))),
        // groupchat: no room lives at a user's address (§8.5.2.1.1, §8.5.2.2, §8.5.3.2.1).
        (Groupchat, NO_RESOURCES,             NO_ROOM,          NO_ROOM,          None),
        (Groupchat, ONE_UNAVAILABLE,          NO_ROOM,          NO_ROOM,          Some(deliver(&[0]))),
        (Groupchat, ONE_AT_0,                 NO_ROOM,          NO_ROOM,          Some(deliver(&[0]))),
        (Groupchat, AT_1_AND_5,               NO_ROOM,          NO_ROOM,          Some(deliver(&[0]))),
        (Groupchat, TIE_AT_5,                 NO_ROOM,          NO_ROOM,          Some(deliver(&[0]))),
        (Groupchat, NEGATIVE_ONLY,            NO_ROOM,          NO_ROOM,          Some(deliver(&[0]))),
        (Groupchat, NEGATIVE_AND_UNAVAILABLE, NO_ROOM,          NO_ROOM,          Some(deliver(&[0]))),
        (Groupchat, EVERYTHING,               NO_ROOM,          NO_ROOM,          Some(deliver(&[0]))),
        // error: never answered, never stored.
        (Error,     NO_RESOURCES,             IGNORE,           IGNORE,           None),
        (Error,     ONE_UNAVAILABLE,          IGNORE,           IGNORE,           Some(deliver(&[0]))),
        (Error,     ONE_AT_0,                 IGNORE,           IGNORE,           Some(deliver(&[0]))),
        (Error,     AT_1_AND_5,               IGNORE,           IGNORE,           Some(deliver(&[0]))),
        (Error,     TIE_AT_5,                 IGNORE,           IGNORE,           Some(deliver(&[0]))),
        (Error,     NEGATIVE_ONLY,            IGNORE,           IGNORE,           Some(deliver(&[0]))),
        (Error,     NEGATIVE_AND_UNAVAILABLE, IGNORE,           IGNORE,           Some(deliver(&[0]))),
        (Error,     EVERYTHING,               IGNORE,           IGNORE,           Some(deliver(&[0]))),
    ]
}

#[test]
fn routes_follow_the_table() {
    for (kind, resources, bare, full_unbound, full_bound) in table() {
        let row = format!("{} to {resources:?}", kind.as_str());
        assert_eq!(
            route_message(kind, false, None, resources),
            bare,
            "{row}: bare JID"
        );
        assert_eq!(
            route_message(kind, true, None, resources),
            full_unbound,
            "{row}: unbound full JID"
        );
        if let Some(full_bound) = full_bound {
            assert_eq!(
                route_message(kind, true, Some(0), resources),
                full_bound,
                "{row}: bound full JID"
            );
        }
    }
}

#[test]
fn the_table_covers_every_type_and_resource_set() {
    let rows = table();
    for kind in [Normal, Chat, Groupchat, Headline, Error] {
        let sets = rows.iter().filter(|row| row.0 == kind).count();
        assert_eq!(sets, 8, "{kind:?}");
    }
}

#[test]
fn a_bound_full_jid_gets_the_message_whatever_its_presence() {
    for kind in [Normal, Chat, Groupchat, Headline, Error] {
        for (index, _) in EVERYTHING.iter().enumerate() {
            assert_eq!(
                route_message(kind, true, Some(index), EVERYTHING),
                deliver(&[index]),
                "{kind:?} to resource {index}"
            );
        }
    }
}

#[test]
fn an_index_the_shell_should_not_have_given_is_not_trusted() {
    for kind in [Normal, Chat, Groupchat, Headline, Error] {
        let bare = route_message(kind, false, None, AT_1_AND_5);
        assert_eq!(
            route_message(kind, true, Some(7), AT_1_AND_5),
            bare,
            "{kind:?}: past the end"
        );
        assert_eq!(
            route_message(kind, false, Some(0), AT_1_AND_5),
            bare,
            "{kind:?}: bare JID with an index"
        );
    }
}

#[test]
fn message_types_parse_unknown_and_missing_as_normal() {
    for kind in [Normal, Chat, Groupchat, Headline, Error] {
        assert_eq!(MessageType::parse(Some(kind.as_str())), Some(kind));
    }
    assert_eq!(MessageType::parse(None), Some(Normal));
    for unknown in ["", "Chat", "broadcast", "normal "] {
        assert_eq!(
            MessageType::parse(Some(unknown)),
            Some(Normal),
            "{unknown:?}"
        );
    }
}
