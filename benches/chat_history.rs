//! History reads with a large store: a 100-message history page (newest first, then a deep
//! key-set page via `date_sent[lt]`) and a 100-dialog list, with 1,000,000 messages stored;
//! p50/p99 over many requests. The goal is p99 ≤ 10 ms on SQLite and PostgreSQL.
//!
//! `cargo bench --bench chat_history` (SQLite in a temp dir), or with
//! `SWITCHBOARD_BENCH_PG_URL=postgres://…/empty_db` for PostgreSQL (the database must be
//! empty: the bench fills it). `BENCH_MESSAGES` changes the 1,000,000.
//!
//! What is timed is the store call the REST handler makes (`list_messages` with its marks,
//! `list_dialogs`), not HTTP and JSON around it.

use std::time::{Duration, Instant};

use switchboard::chat::model::{DialogType, ObjectId};
use switchboard::chat::query::{DialogQuery, MessageQuery};
use switchboard::model::{AppId, UserId};
use switchboard::store::Store;

/// Users; user 1 is in a private dialog with each of the others, and in the group dialogs.
const USERS: i64 = 1000;
/// Group dialogs of 12.
const GROUPS: i64 = 20;
/// Share of all messages that go to the one big dialog whose pages are timed.
const BIG_SHARE: f64 = 0.2;
/// Rows per INSERT statement while filling.
const ROWS_PER_INSERT: usize = 400;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let messages: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("SWITCHBOARD_BENCH_PG_URL").unwrap_or_default();
    let store = Store::open(&url, dir.path(), 4).await.unwrap();
    let backend = if url.is_empty() {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    let started = Instant::now();
    let (app, big, me) = fill(&store, messages).await;
    println!(
        "{backend}: {messages} messages in {} dialogs stored in {:.1} s",
        USERS - 1 + GROUPS,
        started.elapsed().as_secs_f64()
    );

    let newest =
        MessageQuery::parse([("sort_desc", "date_sent"), ("limit", "100")].into_iter()).unwrap();
    let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let big_count = (messages as f64 * BIG_SHARE) as i64;
    let rounds = 2000;

    let mut page = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let (items, _) = store.list_messages(&big, me, &newest).await.unwrap();
        page.push(t.elapsed());
        assert_eq!(items.len(), 100);
    }
    report(
        backend,
        "history page, newest 100 (sort_desc=date_sent&limit=100)",
        &mut page,
    );

    let mut deep = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let before = 1_600_000_000 + (next() % big_count as u64) as i64;
        let before = before.to_string();
        let query = MessageQuery::parse(
            [
                ("sort_desc", "date_sent"),
                ("limit", "100"),
                ("date_sent[lt]", before.as_str()),
            ]
            .into_iter(),
        )
        .unwrap();
        let t = Instant::now();
        let (items, _) = store.list_messages(&big, me, &query).await.unwrap();
        deep.push(t.elapsed());
        assert!(!items.is_empty());
    }
    report(
        backend,
        "history page, 100 before a random date_sent (key set)",
        &mut deep,
    );

    let dialogs = DialogQuery::parse([("limit", "100")].into_iter()).unwrap();
    let mut list = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let (items, total) = store.list_dialogs(app, me, &dialogs).await.unwrap();
        list.push(t.elapsed());
        assert_eq!(items.len(), 100);
        assert_eq!(total, (USERS - 1 + GROUPS) as u64);
    }
    report(
        backend,
        "dialog list, 100 of the user's dialogs (limit=100)",
        &mut list,
    );

    let unread = [("sort_desc", "last_message_date_sent"), ("limit", "100")];
    let sorted = DialogQuery::parse(unread.into_iter()).unwrap();
    let mut list2 = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        store.list_dialogs(app, me, &sorted).await.unwrap();
        list2.push(t.elapsed());
    }
    report(
        backend,
        "dialog list, sort_desc=last_message_date_sent",
        &mut list2,
    );
    store.close().await;
}

fn report(backend: &str, what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{backend}: {what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests)",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
}

/// Users, dialogs and `messages` messages, written with multi-row INSERTs. Returns the app,
/// the big dialog and the user whose view is timed.
async fn fill(store: &Store, messages: usize) -> (AppId, ObjectId, UserId) {
    let pool = store.pool_for_tests();
    let created = switchboard::admin::create_app(store, "bench")
        .await
        .unwrap();
    let app = AppId(created.application_id);
    let now = 1_600_000_000i64;
    // Users: plain rows (passwords are not used).
    for chunk in (1..=USERS).collect::<Vec<_>>().chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO users (app_id, login, password_hash, tags, created_at, updated_at) VALUES ",
        );
        let rows: Vec<String> = chunk
            .iter()
            .map(|i| format!("({}, 'bench{i}', 'x', '', {now}, {now})", app.0))
            .collect();
        sql.push_str(&rows.join(", "));
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    let first_user: i64 = {
        use sqlx::Row;
        sqlx::query("SELECT MIN(id) FROM users WHERE app_id = $1")
            .bind(app.0)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0)
    };
    let me = UserId(first_user);
    // Dialogs: private (me, other) for every other user, and groups of 12 with me.
    let mut dialogs: Vec<(ObjectId, DialogType, Vec<i64>)> = Vec::new();
    for other in 1..USERS {
        dialogs.push((
            ObjectId::generate(now),
            DialogType::Private,
            vec![first_user, first_user + other],
        ));
    }
    for g in 0..GROUPS {
        let mut members = vec![first_user];
        members.extend((0..11).map(|k| first_user + 1 + (g * 11 + k) % (USERS - 1)));
        dialogs.push((ObjectId::generate(now), DialogType::Group, members));
    }
    let mut tx = pool.begin().await.unwrap();
    for chunk in dialogs.chunks(ROWS_PER_INSERT) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|(id, kind, members)| {
                let pair = if *kind == DialogType::Private {
                    format!("'{}:{}'", members[0], members[1])
                } else {
                    "NULL".into()
                };
                let occupants: Vec<String> = members.iter().map(|m| m.to_string()).collect();
                format!(
                    "('{id}', {}, {}, {first_user}, 'bench', {pair}, '{}', {now}, {now})",
                    app.0,
                    kind.code(),
                    occupants.join(",")
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO dialogs (id, app_id, type, user_id, name, pair, occupants, created_at, updated_at) VALUES {}",
            rows.join(", ")
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
        let members: Vec<String> = chunk
            .iter()
            .flat_map(|(id, _, members)| members.iter().map(move |m| format!("('{id}', {m})")))
            .collect();
        for part in members.chunks(ROWS_PER_INSERT) {
            sqlx::query(&format!(
                "INSERT INTO dialog_members (dialog_id, user_id) VALUES {}",
                part.join(", ")
            ))
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    // Messages: a fifth in the big dialog (the first group), the rest spread over all.
    let big = dialogs[(USERS - 1) as usize].0.clone();
    let big_members = dialogs[(USERS - 1) as usize].2.clone();
    let big_count = (messages as f64 * BIG_SHARE) as usize;
    let mut written = 0usize;
    let mut seq_date = now;
    while written < messages {
        let mut tx = pool.begin().await.unwrap();
        for _ in 0..50 {
            if written >= messages {
                break;
            }
            let n = ROWS_PER_INSERT.min(messages - written);
            let rows: Vec<String> = (0..n)
                .map(|k| {
                    let i = written + k;
                    let (dialog, members) = if i < big_count {
                        (&big, &big_members)
                    } else {
                        let d = &dialogs[i % dialogs.len()];
                        (&d.0, &d.2)
                    };
                    let sender = members[i % members.len()];
                    let date = if i < big_count { now + i as i64 } else { seq_date };
                    format!(
                        "('{:024x}', {}, '{dialog}', {sender}, 'message number {i} with some text in it', {date}, {date}, {date})",
                        0x7000_0000_0000_0000_0000_0000u128 + i as u128,
                        app.0,
                    )
                })
                .collect();
            seq_date += 1;
            sqlx::query(&format!(
                "INSERT INTO messages (id, app_id, dialog_id, sender_id, body, date_sent, created_at, updated_at) VALUES {}",
                rows.join(", ")
            ))
            .execute(&mut *tx)
            .await
            .unwrap();
            written += n;
        }
        tx.commit().await.unwrap();
    }
    // Read marks for half of the big dialog, and each dialog's last message.
    sqlx::query(&format!(
        "INSERT INTO message_marks (message_id, user_id, dialog_id, is_delivered, is_read) \
         SELECT id, {first_user}, dialog_id, 1, 1 FROM messages WHERE dialog_id = '{big}' AND sender_id <> {first_user} \
         AND date_sent < {}",
        now + (big_count / 2) as i64
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE dialogs SET last_message_date_sent = (SELECT MAX(date_sent) FROM messages m WHERE m.dialog_id = dialogs.id)",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Fresh statistics, as a long-running database has them.
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    (app, big, me)
}
