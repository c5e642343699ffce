//! Runs every fuzz target on stable: over its seed corpus, then over a few thousand inputs
//! generated with xorshift from XMPP fragments, random bytes and mutated seeds. Deterministic:
//! a failure prints the input, which then goes into the corpus and `tests/data/`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use switchboard_fuzz::{
    c2s_stream, element_parse, hash, janus_request, media_demux, rest_params, sasl_plain,
    stream_parser, vp8_payload, XorShift,
};

/// Generated inputs per target; `FUZZ_ITERATIONS` overrides.
const ITERATIONS: usize = 4_000;

/// A fuzz target's body.
type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 8] = [
    ("stream_parser", stream_parser),
    ("c2s_stream", c2s_stream),
    ("element_parse", element_parse),
    ("sasl_plain", sasl_plain),
    ("rest_params", rest_params),
    ("janus_request", janus_request),
    ("media_demux", media_demux),
    ("vp8_payload", vp8_payload),
];

/// Pieces of XMPP that random splicing turns into plausible, deep inputs.
const FRAGMENTS: &[&str] = &[
    "<?xml version='1.0'?>",
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='chat.example.com' version='1.0'>",
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='chat.example.com' version='1.0'/>",
    "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
    "</stream:stream>",
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>ADctNDIAc2VjcmV0</auth>",
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>ADctNDIAYmFk</auth>",
    "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
    "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>",
    "<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    "<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
    "<enable xmlns='urn:xmpp:sm:3' resume='true'/>",
    "<enable xmlns='urn:xmpp:sm:3'/>",
    "<resume xmlns='urn:xmpp:sm:3' previd='known' h='1'/>",
    "<resume xmlns='urn:xmpp:sm:3' previd='known' h='7'/>",
    "<r xmlns='urn:xmpp:sm:3'/>",
    "<a xmlns='urn:xmpp:sm:3' h='0'/>",
    "<a xmlns='urn:xmpp:sm:3' h='2'/>",
    "<a xmlns='urn:xmpp:sm:3' h='4294967295'/>",
    "<inactive xmlns='urn:xmpp:csi:0'/>",
    "<active xmlns='urn:xmpp:csi:0'/>",
    "<message to='8-42@chat.example.com' type='chat'><body>hi</body></message>",
    "<message xmlns='jabber:client' to='8-42@chat.example.com'><body>x</body></message>",
    "<message xmlns = 'jabber:client'/>",
    "<presence/>",
    "<presence xmlns='jabber:client'><show>away</show></presence>",
    "<iq type='get' id='q' to='chat.example.com'><query xmlns='jabber:iq:roster'/></iq>",
    "<message",
    "<iq",
    " xmlns='jabber:client'",
    " xmlns:q='urn:q'",
    " q:a='1'",
    " to='x@y'",
    " from='a&amp;b'",
    " id=\"d\"",
    ">",
    "/>",
    "</message>",
    "</iq>",
    "<body>",
    "</body>",
    "<q:x>",
    "</q:x>",
    "<![CDATA[<x>]]>",
    "&amp;",
    "&#x1F600;",
    "&#0;",
    "&lt;",
    "&bogus;",
    "<!-- c -->",
    "<?pi?>",
    "<!DOCTYPE x>",
    "]]>",
    "'",
    "\"",
    "<",
    "=",
    " ",
    "\r\n",
    "é",
    "\u{FFFF}",
    // REST forms and query strings.
    "page=",
    "&per_page=",
    "&page=100000000000000000",
    "filter[]=",
    "number%20id%20gt%20",
    "string%20login%20in%20a,b",
    "&order=desc+string+login",
    "&timestamp=-9223372036854775808",
    "user[full_name]=%00",
    "%",
    "&",
    "+",
    // Janus API requests (one per line).
    "\n",
    "{\"janus\":\"create\",\"transaction\":\"t\"}",
    "{\"janus\":\"attach\",\"plugin\":\"janus.plugin.videoroom\",\"transaction\":\"a\",\"session_id\":",
    "{\"janus\":\"message\",\"body\":{\"request\":\"join\",\"room\":1234,\"ptype\":\"publisher\",\"id\":7},\"transaction\":\"m\",\"session_id\":",
    "{\"janus\":\"trickle\",\"candidate\":{\"completed\":true},\"transaction\":\"c\"",
    "{\"janus\":\"keepalive\",\"transaction\":\"k\",\"session_id\":",
    "{\"janus\":\"destroy\",\"transaction\":\"d\",\"session_id\":",
    ",\"handle_id\":",
    "9007199254740993",
    "}",
    // STUN and RTP headers.
    "\u{0}\u{1}\u{0}\u{0}\u{21}\u{12}\u{a4}\u{42}",
    "\u{80}\u{60}\u{0}\u{1}",
    "\u{16}\u{fe}\u{fd}",
];

#[test]
fn seed_corpus() {
    for (name, target) in TARGETS {
        let dir = corpus_dir(name);
        let mut seeds = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.expect("readable corpus entry").path();
            let data = std::fs::read(&path).expect("readable seed");
            run(name, target, &data);
            seeds += 1;
        }
        assert!(seeds >= 3, "{name} has only {seeds} seeds");
    }
}

#[test]
fn generated_stream_parser() {
    generated("stream_parser", stream_parser, true);
}

#[test]
fn generated_c2s_stream() {
    generated("c2s_stream", c2s_stream, true);
}

#[test]
fn generated_element_parse() {
    generated("element_parse", element_parse, false);
}

#[test]
fn generated_sasl_plain() {
    generated("sasl_plain", sasl_plain, false);
}

#[test]
fn generated_rest_params() {
    generated("rest_params", rest_params, false);
}

#[test]
fn generated_janus_request() {
    generated("janus_request", janus_request, false);
}

#[test]
fn generated_media_demux() {
    generated("media_demux", media_demux, false);
}

#[test]
fn generated_vp8_payload() {
    generated("vp8_payload", vp8_payload, false);
}

fn generated(name: &str, target: Target, mode_byte: bool) {
    let iterations = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(ITERATIONS);
    let seeds = seeds(name);
    let mut rng = XorShift::new(hash(name.as_bytes()));
    for _ in 0..iterations {
        let mut data = Vec::new();
        if mode_byte && rng.below(4) != 0 {
            // Mostly the sensible modes (lowercase letters), sometimes any byte.
            let modes = b"`abcdefghijklmnopDCB";
            data.push(if rng.below(8) == 0 {
                rng.below(256) as u8
            } else {
                modes[rng.below(modes.len())]
            });
        }
        match rng.below(8) {
            0 => data.extend((0..rng.below(64)).map(|_| rng.below(256) as u8)),
            1..=3 => {
                for _ in 0..1 + rng.below(24) {
                    data.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes());
                }
            }
            _ => {
                data = seeds[rng.below(seeds.len())].clone();
                mutate(&mut data, &mut rng);
            }
        }
        run(name, target, &data);
    }
}

fn mutate(data: &mut Vec<u8>, rng: &mut XorShift) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let fragment = FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes();
                data.splice(at..at, fragment.iter().copied());
            }
            2 => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(64)).min(data.len());
                let copy = data[at..end].to_vec();
                data.splice(at..at, copy);
            }
            4 => data.truncate(at),
            _ => data.insert(at, rng.below(256) as u8),
        }
    }
}

fn run(name: &str, target: Target, data: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(data))) {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!(
            "{name} failed on {:?}\n(as text: {:?})\n{message}",
            data,
            String::from_utf8_lossy(data)
        );
    }
}

fn corpus_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

fn seeds(name: &str) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir(name))
        .expect("corpus directory")
        .map(|entry| entry.expect("readable corpus entry").path())
        .collect();
    // Directory order is not stable; the generator must be.
    paths.sort();
    paths
        .iter()
        .map(|path| std::fs::read(path).expect("readable seed"))
        .collect()
}
