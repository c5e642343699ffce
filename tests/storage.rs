//! The storage suite: the same cases against SQLite and PostgreSQL. The PostgreSQL cases use
//! the database `scripts/test` starts (`SWITCHBOARD_TEST_PG_URL`); without one they fail under
//! `scripts/test` (`SWITCHBOARD_REQUIRE_PG=1`) and are skipped loudly under plain `cargo test`.
//! A URL that is set but unreachable fails them either way.

mod common;

use switchboard::model::{
    AppId, FilterOp, FilterValue, RosterItem, Session, Subscription, User, UserField, UserFilter,
    UserId, UserQuery,
};
use switchboard::store::{Backend, Store, StoreError};

/// Runs one case on both backends.
macro_rules! storage_case {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let store = super::Store::open("", dir.path(), 4).await.unwrap();
                assert_eq!(store.backend(), super::Backend::Sqlite);
                super::$name(&store).await;
                store.close().await;
            }

            #[tokio::test]
            async fn postgres() {
                let test = concat!("storage::", stringify!($name));
                let Some(admin) = super::common::postgres_admin_url(test) else {
                    return;
                };
                let url = super::common::fresh_postgres_db(&admin).await;
                let dir = tempfile::tempdir().unwrap();
                let store = super::Store::open(&url, dir.path(), 4).await.unwrap();
                assert_eq!(store.backend(), super::Backend::Postgres);
                super::$name(&store).await;
                store.close().await;
            }
        }
    };
}

storage_case!(apps_round_trip);
storage_case!(users_crud_and_conflicts);
storage_case!(user_queries);
storage_case!(sessions_and_nonces);
storage_case!(migrations_are_idempotent);
storage_case!(tenants_are_isolated);
storage_case!(rosters_are_versioned);
storage_case!(roster_pairs_change_together);
storage_case!(offline_queue_keeps_order);
storage_case!(privacy_and_block_lists);
storage_case!(last_activity_is_recorded);

async fn app(store: &Store, name: &str) -> AppId {
    switchboard::admin::create_app(store, name).await.unwrap();
    let id = {
        use sqlx::Row;
        sqlx::query("SELECT MAX(id) FROM apps")
            .fetch_one(&store.pool_for_tests())
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    };
    AppId(id)
}

fn user(app: AppId, login: &str) -> User {
    User {
        app_id: app,
        login: Some(login.into()),
        password_hash: "$argon2id$placeholder".into(),
        created_at: 1_000,
        updated_at: 1_000,
        ..User::default()
    }
}

async fn apps_round_trip(store: &Store) {
    let credentials = switchboard::admin::create_app(store, "alpha")
        .await
        .unwrap();
    let id = AppId(credentials.application_id);
    let by_id = store.app(id).await.unwrap().unwrap();
    assert_eq!(by_id.name, "alpha");
    assert_eq!(by_id.auth_secret, credentials.auth_secret);
    let by_key = store
        .app_by_auth_key(&credentials.auth_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_key.id, id);
    let hash = switchboard::auth::secrets::credential_hash(&credentials.api_key);
    assert_eq!(
        store.app_by_api_key_hash(&hash).await.unwrap().unwrap().id,
        id
    );
    assert!(store.app(AppId(id.0 + 100)).await.unwrap().is_none());
    assert!(
        store
            .app_by_api_key_hash(&credentials.api_key)
            .await
            .unwrap()
            .is_none(),
        "the raw key is not stored"
    );
}

async fn users_crud_and_conflicts(store: &Store) {
    let a = app(store, "a").await;
    let mut u = user(a, "amy");
    u.email = Some("amy@example.com".into());
    u.tags = vec!["x".into(), "y z".into()];
    u.blob_id = Some(5);
    let created = store.create_user(&u).await.unwrap();
    assert!(created.id.0 > 0);
    let loaded = store.user(a, created.id).await.unwrap().unwrap();
    assert_eq!(loaded, created);

    let clash = store.create_user(&user(a, "amy")).await.unwrap_err();
    assert!(matches!(clash, StoreError::Conflict("login")), "{clash:?}");
    let mut other = user(a, "amy2");
    other.email = Some("amy@example.com".into());
    assert!(matches!(
        store.create_user(&other).await.unwrap_err(),
        StoreError::Conflict("email")
    ));

    let mut changed = loaded.clone();
    changed.full_name = Some("Amy A".into());
    changed.tags.clear();
    changed.updated_at = 2_000;
    assert!(store.update_user(&changed).await.unwrap());
    assert_eq!(store.user(a, created.id).await.unwrap().unwrap(), changed);

    let bob = store.create_user(&user(a, "bob")).await.unwrap();
    let mut steal = bob.clone();
    steal.login = Some("amy".into());
    assert!(matches!(
        store.update_user(&steal).await.unwrap_err(),
        StoreError::Conflict("login")
    ));

    // A rehash only replaces the hash it was computed from.
    let stored = bob.password_hash.clone();
    assert!(!store
        .replace_password_hash(a, bob.id, "$argon2id$stale", "$argon2id$new")
        .await
        .unwrap());
    assert!(store
        .replace_password_hash(a, bob.id, &stored, "$argon2id$new")
        .await
        .unwrap());
    assert_eq!(
        store.user(a, bob.id).await.unwrap().unwrap().password_hash,
        "$argon2id$new"
    );
    assert!(
        !store
            .replace_password_hash(AppId(a.0 + 1), bob.id, "$argon2id$new", "$x")
            .await
            .unwrap(),
        "another application's user is never touched"
    );

    store.touch_user(a, bob.id, 3_000).await.unwrap();
    assert_eq!(
        store
            .user(a, bob.id)
            .await
            .unwrap()
            .unwrap()
            .last_request_at,
        Some(3_000)
    );
    assert!(store.delete_user(a, bob.id).await.unwrap());
    assert!(!store.delete_user(a, bob.id).await.unwrap());
    assert!(store.user(a, bob.id).await.unwrap().is_none());
}

async fn user_queries(store: &Store) {
    let a = app(store, "q").await;
    let mut ids = Vec::new();
    for (i, login) in ["u1", "u2", "u3", "u4"].iter().enumerate() {
        let mut u = user(a, login);
        u.full_name = Some(if i % 2 == 0 { "Even" } else { "Odd" }.into());
        u.tags = if i < 2 {
            vec!["red".into()]
        } else {
            vec!["blue".into(), "red_ish".into()]
        };
        u.created_at = 1_000 + i as i64;
        ids.push(store.create_user(&u).await.unwrap().id);
    }
    let base = UserQuery {
        filters: vec![],
        any_tags: vec![],
        order: None,
        limit: 10,
        offset: 0,
    };

    let (page, total) = store.list_users(a, &base).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(page.iter().map(|u| u.id).collect::<Vec<_>>(), ids);

    let query = UserQuery {
        filters: vec![UserFilter {
            field: UserField::FullName,
            op: FilterOp::Eq,
            values: vec![FilterValue::Text("Even".into())],
        }],
        order: Some((UserField::Id, true)),
        ..base.clone()
    };
    let (page, total) = store.list_users(a, &query).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(
        page.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ids[2], ids[0]]
    );

    let query = UserQuery {
        filters: vec![UserFilter {
            field: UserField::Id,
            op: FilterOp::In,
            values: vec![FilterValue::Int(ids[1].0), FilterValue::Int(ids[3].0)],
        }],
        ..base.clone()
    };
    assert_eq!(store.list_users(a, &query).await.unwrap().1, 2);

    let query = UserQuery {
        filters: vec![UserFilter {
            field: UserField::CreatedAt,
            op: FilterOp::Between,
            values: vec![FilterValue::Int(1_001), FilterValue::Int(1_002)],
        }],
        ..base.clone()
    };
    assert_eq!(store.list_users(a, &query).await.unwrap().1, 2);

    let query = UserQuery {
        any_tags: vec!["red".into()],
        ..base.clone()
    };
    let (page, _) = store.list_users(a, &query).await.unwrap();
    assert_eq!(
        page.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ids[0], ids[1]],
        "red_ish is not red"
    );

    // `_` and `%` in a tag are literal, not LIKE wildcards.
    let query = UserQuery {
        any_tags: vec!["red_is%".into()],
        ..base.clone()
    };
    assert_eq!(store.list_users(a, &query).await.unwrap().1, 0);

    let query = UserQuery {
        limit: 2,
        offset: 2,
        order: Some((UserField::Login, true)),
        ..base.clone()
    };
    let (page, total) = store.list_users(a, &query).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        page.iter()
            .map(|u| u.login.clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["u2", "u1"]
    );

    let found = store
        .user_by(a, UserField::Login, &FilterValue::Text("u3".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, ids[2]);
}

async fn sessions_and_nonces(store: &Store) {
    let a = app(store, "s").await;
    let session = Session {
        id: 0,
        token_hash: "h1".into(),
        app_id: a,
        user_id: None,
        nonce: 5,
        ts: 100,
        created_at: 100,
        updated_at: 100,
        expires_at: 7_300,
    };
    let created = store.create_session(&session).await.unwrap();
    assert!(created.id > 0);
    assert_eq!(
        store.session_by_token_hash("h1").await.unwrap().unwrap(),
        created
    );
    store
        .set_session_user("h1", Some(UserId(9)), 200)
        .await
        .unwrap();
    store.extend_session("h1", 9_000).await.unwrap();
    let loaded = store.session_by_token_hash("h1").await.unwrap().unwrap();
    assert_eq!(
        (loaded.user_id, loaded.expires_at, loaded.updated_at),
        (Some(UserId(9)), 9_000, 200)
    );
    assert_eq!(
        store.session_hashes_of_user(a, UserId(9)).await.unwrap(),
        vec!["h1".to_string()]
    );

    assert!(store.record_nonce(a, "", 100, "5").await.unwrap());
    assert!(
        !store.record_nonce(a, "", 100, "5").await.unwrap(),
        "replay"
    );
    assert!(
        store.record_nonce(a, "login:x", 100, "5").await.unwrap(),
        "other scope"
    );
    assert!(
        store.record_nonce(a, "", 101, "5").await.unwrap(),
        "other second"
    );

    let removed = store.prune(10_000, 101).await.unwrap();
    assert_eq!(
        removed,
        1 + 2,
        "the expired session and the two nonces older than 101"
    );
    assert!(store.session_by_token_hash("h1").await.unwrap().is_none());
    assert!(!store.record_nonce(a, "", 101, "5").await.unwrap(), "kept");
    assert!(!store.delete_session("h1").await.unwrap());
}

async fn migrations_are_idempotent(store: &Store) {
    switchboard::store::migrate(store).await.unwrap();
    switchboard::store::migrate(store).await.unwrap();
    store.ping().await.unwrap();
}

async fn tenants_are_isolated(store: &Store) {
    let a = app(store, "ta").await;
    let b = app(store, "tb").await;
    let ua = store.create_user(&user(a, "same")).await.unwrap();
    let ub = store.create_user(&user(b, "same")).await.unwrap();
    assert_ne!(ua.id, ub.id);
    assert!(store.user(b, ua.id).await.unwrap().is_none());
    assert!(!store.delete_user(b, ua.id).await.unwrap());
    assert!(store.user(a, ua.id).await.unwrap().is_some());
    let mut hijack = ua.clone();
    hijack.app_id = b;
    hijack.full_name = Some("x".into());
    assert!(
        !store.update_user(&hijack).await.unwrap(),
        "an update names its app"
    );
    let base = UserQuery {
        filters: vec![],
        any_tags: vec![],
        order: None,
        limit: 10,
        offset: 0,
    };
    let (page, total) = store.list_users(b, &base).await.unwrap();
    assert_eq!((total, page[0].id), (1, ub.id));
}

async fn rosters_are_versioned(store: &Store) {
    let a = app(store, "r").await;
    let owner = store.create_user(&user(a, "owner")).await.unwrap().id;
    let c1 = store.create_user(&user(a, "c1")).await.unwrap().id;
    let c2 = store.create_user(&user(a, "c2")).await.unwrap().id;
    assert_eq!(store.roster(owner).await.unwrap(), (0, vec![]));
    let item = RosterItem {
        contact: c1,
        name: Some("Friend".into()),
        subscription: Subscription::None,
        ask_out: true,
        pending_in: false,
        groups: vec!["Work".into(), "Café".into()],
        version: 0,
    };
    let stored = store.put_roster_item(a, owner, &item).await.unwrap();
    assert_eq!(stored.version, 1);
    let both = RosterItem {
        subscription: Subscription::Both,
        ask_out: false,
        ..stored.clone()
    };
    assert_eq!(
        store
            .put_roster_item(a, owner, &both)
            .await
            .unwrap()
            .version,
        2
    );
    let other = RosterItem {
        contact: c2,
        groups: vec![],
        name: None,
        ..item.clone()
    };
    store.put_roster_item(a, owner, &other).await.unwrap();
    let (version, items) = store.roster(owner).await.unwrap();
    assert_eq!(version, 3);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0], RosterItem { version: 2, ..both });
    assert_eq!(
        store.roster_item(owner, c2).await.unwrap().unwrap().version,
        3
    );
    assert_eq!(store.remove_roster_item(owner, c2).await.unwrap(), Some(4));
    assert_eq!(store.remove_roster_item(owner, c2).await.unwrap(), None);
    assert_eq!(
        store.roster(c1).await.unwrap(),
        (0, vec![]),
        "rosters are per user"
    );
}

async fn offline_queue_keeps_order(store: &Store) {
    let a = app(store, "o").await;
    let u = store.create_user(&user(a, "off")).await.unwrap().id;
    for i in 0..5 {
        let n = store
            .push_offline(a, u, &format!("<message id='{i}'/>"), 100 + i)
            .await
            .unwrap();
        assert_eq!(n, i + 1);
    }
    let first = store.offline_messages(u, 3).await.unwrap();
    assert_eq!(
        first.iter().map(|m| m.stanza.as_str()).collect::<Vec<_>>(),
        vec![
            "<message id='0'/>",
            "<message id='1'/>",
            "<message id='2'/>"
        ]
    );
    store.delete_offline(u, first[2].id).await.unwrap();
    let rest = store.offline_messages(u, 100).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0].stanza, "<message id='3'/>");
    assert_eq!(rest[0].created_at, 103);
    assert_eq!(store.offline_count(u).await.unwrap(), 2);
}

async fn privacy_and_block_lists(store: &Store) {
    let a = app(store, "p").await;
    let u = store.create_user(&user(a, "priv")).await.unwrap().id;
    let items = "<item type='jid' value='2-1@d' action='deny' order='1'/><item type='jid' value='muc.d/2' action='deny' order='2'/>";
    store.put_privacy_list(u, "blocked", items).await.unwrap();
    store.put_privacy_list(u, "other", "").await.unwrap();
    store
        .set_default_privacy_list(u, Some("blocked"))
        .await
        .unwrap();
    assert_eq!(
        store.privacy_list(u, "blocked").await.unwrap().as_deref(),
        Some(items)
    );
    assert_eq!(
        store.privacy_list_names(u).await.unwrap(),
        (
            vec!["blocked".to_string(), "other".to_string()],
            Some("blocked".to_string())
        )
    );
    assert!(store.delete_privacy_list(u, "blocked").await.unwrap());
    assert!(!store.delete_privacy_list(u, "blocked").await.unwrap());
    assert_eq!(
        store.privacy_list_names(u).await.unwrap().1,
        None,
        "default cleared with its list"
    );

    store
        .block(u, &["b@d".into(), "a@d".into(), "a@d".into()])
        .await
        .unwrap();
    assert_eq!(
        store.block_list(u).await.unwrap(),
        vec!["a@d".to_string(), "b@d".to_string()]
    );
    store.unblock(u, &["a@d".into()]).await.unwrap();
    assert_eq!(store.block_list(u).await.unwrap(), vec!["b@d".to_string()]);
    store.unblock(u, &[]).await.unwrap();
    assert!(store.block_list(u).await.unwrap().is_empty());
}

async fn last_activity_is_recorded(store: &Store) {
    let a = app(store, "l").await;
    let u = store.create_user(&user(a, "last")).await.unwrap().id;
    assert_eq!(store.last_logout(a, u).await.unwrap(), None);
    store
        .set_last_logout(a, u, 500, Some("gone"))
        .await
        .unwrap();
    assert_eq!(
        store.last_logout(a, u).await.unwrap(),
        Some((500, Some("gone".to_string())))
    );
}

/// A subscription exchange changes two rosters in one transaction: concurrent exchanges in
/// both directions between the same pair all land, none overwrites another, and none
/// deadlocks.
async fn roster_pairs_change_together(store: &Store) {
    let a = app(store, "pairs").await;
    let ann = store.create_user(&user(a, "ann")).await.unwrap().id;
    let bob = store.create_user(&user(a, "bob")).await.unwrap().id;
    let empty = |contact: UserId| RosterItem {
        contact,
        name: None,
        subscription: Subscription::None,
        ask_out: false,
        pending_in: false,
        groups: vec![],
        version: 0,
    };
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        let (user, contact) = if n % 2 == 0 { (ann, bob) } else { (bob, ann) };
        tasks.push(tokio::spawn(async move {
            store
                .update_roster_pair(a, user, contact, |mine, theirs| {
                    let mut mine = mine.unwrap_or_else(|| empty(contact));
                    let mut theirs = theirs.unwrap_or_else(|| empty(user));
                    mine.groups.push(format!("g{n}"));
                    theirs.groups.push(format!("g{n}"));
                    (Some(mine), Some(theirs), n)
                })
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        let (mine, theirs, _) = task.await.unwrap();
        assert!(mine.is_some() && theirs.is_some());
    }
    for (owner, contact) in [(ann, bob), (bob, ann)] {
        let item = store.roster_item(owner, contact).await.unwrap().unwrap();
        let mut groups = item.groups.clone();
        groups.sort();
        let mut want: Vec<String> = (0..16).map(|n| format!("g{n}")).collect();
        want.sort();
        assert_eq!(groups, want, "no exchange lost ({owner:?}'s item)");
        // Every exchange bumped the owner's version once.
        assert_eq!(store.roster(owner).await.unwrap().0, 16);
    }
    // Nothing to write: nothing changes, not even the version.
    let (mine, theirs, ()) = store
        .update_roster_pair(a, ann, bob, |_, _| (None, None, ()))
        .await
        .unwrap();
    assert!(mine.is_none() && theirs.is_none());
    assert_eq!(store.roster(ann).await.unwrap().0, 16);
}
