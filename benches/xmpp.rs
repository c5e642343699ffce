//! Hot paths of XMPP routing: parsing a stanza's envelope off the stream, stamping `from`,
//! reading a message's traits, and looking a recipient up in the routing table.
//!
//! `cargo bench --bench xmpp`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use switchboard::xmpp::classify::MessageTraits;
use switchboard::xmpp::hub::{Hub, SessionHandle, SessionShared};
use tokio::sync::mpsc;
use xmpp_proto::{BareJid, Event, FullJid, Limits, StreamParser};

/// A QuickBlox 1:1 chat message as the JS SDK sends it.
const MESSAGE: &str = "<message to='8-42@localhost' type='chat' id='6b025096a701016781000000'><body>hello there, how are you?</body><markable xmlns='urn:xmpp:chat-markers:0'/><extraParams xmlns='jabber:client'><save_to_history>1</save_to_history><dialog_id>5f0c1d2e3a4b5c6d7e8f9012</dialog_id></extraParams></message>";

fn envelope_parse(c: &mut Criterion) {
    let batch: String = MESSAGE.repeat(100);
    let mut group = c.benchmark_group("stanza");
    group.throughput(Throughput::Elements(100));
    group.bench_function("parse_envelope_x100", |b| {
        b.iter_batched(
            || {
                let mut parser = StreamParser::new(Limits::default());
                parser.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>");
                let _ = parser.next_event();
                parser
            },
            |mut parser| {
                parser.feed(batch.as_bytes());
                let mut n = 0;
                while let Ok(Some(Event::Stanza(stanza))) = parser.next_event() {
                    std::hint::black_box(stanza.envelope().to.as_deref());
                    n += 1;
                }
                assert_eq!(n, 100);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut parser = StreamParser::new(Limits::default());
    parser.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>");
    let _ = parser.next_event();
    parser.feed(MESSAGE.as_bytes());
    let Ok(Some(Event::Stanza(stanza))) = parser.next_event() else {
        panic!("a stanza")
    };
    c.bench_function("stanza/stamp_from", |b| {
        b.iter(|| {
            std::hint::black_box(stanza.with_from_to(Some("7-42@localhost/web-1a2b3c"), None))
        })
    });
    // What routing reads about every message (urgency, carbons, call signal, history).
    c.bench_function("message/classify", |b| {
        b.iter(|| std::hint::black_box(MessageTraits::of(std::hint::black_box(&stanza))))
    });
}

fn route_lookup(c: &mut Criterion) {
    let hub = Hub::new();
    let mut receivers = Vec::new();
    let mut jids = Vec::new();
    for user in 0..10_000 {
        let jid = FullJid::parse(&format!("{user}-42@localhost/r{user}")).unwrap();
        let (tx, rx) = mpsc::channel(4);
        receivers.push(rx);
        let shared = SessionShared::new(jid.clone(), hub.next_generation());
        hub.bind(SessionHandle {
            tx,
            shared: Arc::new(shared),
        });
        jids.push(jid);
    }
    let target = jids[4_321].clone();
    let bare: BareJid = target.bare().clone();
    c.bench_function("route/full_jid_lookup_10k", |b| {
        b.iter(|| std::hint::black_box(hub.session(std::hint::black_box(&target))).is_some())
    });
    c.bench_function("route/bare_jid_sessions_10k", |b| {
        b.iter(|| std::hint::black_box(hub.sessions_of(std::hint::black_box(&bare))).len())
    });
    c.bench_function("route/parse_full_jid", |b| {
        b.iter(|| FullJid::parse(std::hint::black_box("4321-42@localhost/web-1a2b3c")).unwrap())
    });
}

criterion_group!(benches, envelope_parse, route_lookup);
criterion_main!(benches);
