//! Hot paths of every REST request: verifying a session signature and resolving a token.
//!
//! `cargo bench --bench auth`

use criterion::{criterion_group, criterion_main, Criterion};
use switchboard::auth::signature::{self, SignatureAlgorithm};
use switchboard::auth::Auth;
use switchboard::config::ApiConfig;
use switchboard::store::Store;

fn signature_verification(c: &mut Criterion) {
    let pairs = [
        ("application_id", "42"),
        ("auth_key", "0123456789abcdef01234567"),
        ("nonce", "4936"),
        ("timestamp", "1795313504"),
        ("user[login]", "someone@example.com"),
        ("user[password]", "p@ss w&rd"),
    ];
    let secret = "0123456789abcdef0123456789abcdef";
    let message = signature::string_to_sign(pairs);
    let sha1 = signature::sign(SignatureAlgorithm::Sha1, secret, &message);
    let sha256 = signature::sign(SignatureAlgorithm::Sha256, secret, &message);
    c.bench_function("signature/build_and_verify_sha1", |b| {
        b.iter(|| {
            let message = signature::string_to_sign(std::hint::black_box(pairs));
            assert!(signature::verify(secret, &message, &sha1));
        })
    });
    c.bench_function("signature/build_and_verify_sha256", |b| {
        b.iter(|| {
            let message = signature::string_to_sign(std::hint::black_box(pairs));
            assert!(signature::verify(secret, &message, &sha256));
        })
    });
}

fn token_lookup(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (auth, token, now) = runtime.block_on(async {
        let store = Store::open("", dir.path(), 2).await.unwrap();
        let credentials = switchboard::admin::create_app(&store, "bench")
            .await
            .unwrap();
        let app = store
            .app(switchboard::model::AppId(credentials.application_id))
            .await
            .unwrap()
            .unwrap();
        let auth = Auth::new(store, &ApiConfig::default());
        let now = switchboard::clock::unix_now();
        // Enough live sessions that the table is not trivially small.
        for _ in 0..1_000 {
            auth.open_session(&app, None, 1, now, now).await.unwrap();
        }
        let (_, token) = auth.open_session(&app, None, 1, now, now).await.unwrap();
        (auth, token, now)
    });
    c.bench_function("token/authenticate_cached", |b| {
        b.iter(|| {
            runtime
                .block_on(auth.authenticate_token(std::hint::black_box(&token), now))
                .unwrap()
        })
    });
}

/// CPU of one password check at a few argon2id costs (memory KiB, passes); what a cold
/// password login pays on top of TLS and the XMPP negotiation.
fn password_hashing(c: &mut Criterion) {
    use switchboard::auth::hasher;
    let mut group = c.benchmark_group("password/argon2id");
    group.sample_size(10);
    for (memory_kib, passes) in [(19 * 1024, 2), (12 * 1024, 1), (8 * 1024, 1), (4 * 1024, 1)] {
        let params = hasher::params(memory_kib, passes).unwrap();
        let mut memory = Vec::new();
        let phc = hasher::hash_with(&mut memory, &params, "correct horse battery").unwrap();
        group.bench_function(format!("verify_m{memory_kib}_t{passes}"), |b| {
            b.iter(|| {
                assert!(hasher::verify_with(
                    &mut memory,
                    "correct horse battery",
                    &phc
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    signature_verification,
    token_lookup,
    password_hashing
);
criterion_main!(benches);
