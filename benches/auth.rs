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

criterion_group!(benches, signature_verification, token_lookup);
criterion_main!(benches);
