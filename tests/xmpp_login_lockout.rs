//! Nobody can lock a user out: an address that guesses a user's password backs off from that
//! user, while the user's own logins (by password from their address, by session token from
//! anywhere) go on. Before, ten wrong passwords from anywhere refused the real user's password
//! and token for the whole window.

mod common;

use std::net::IpAddr;

use common::xmpp::XmppClient;
use common::*;

#[tokio::test]
async fn a_guessing_address_does_not_lock_the_user_out() {
    let t = TestServer::start_with(|c| c.api.login_failures_per_user = 3).await;
    let node = t.xmpp_user("ivy", "ivypass123").await;
    let attacker: IpAddr = "127.0.0.66".parse().unwrap();
    let login_from = |source: IpAddr, secret: String| {
        let (addr, cert) = (t.server.xmpp_addrs.tcp, t.server.tls.cert.clone());
        let node = node.clone();
        async move {
            XmppClient::authenticate_from(Some(source), addr, "localhost", &cert, &node, &secret)
                .await
        }
    };
    for _ in 0..3 {
        let refused = login_from(attacker, "wrong-guess".into())
            .await
            .err()
            .unwrap();
        assert!(refused.contains("not-authorized"), "{refused}");
    }
    // The guessing address backs off from ivy, even with the right password.
    let refused = login_from(attacker, "ivypass123".into())
        .await
        .err()
        .unwrap();
    assert!(refused.contains("temporary-auth-failure"), "{refused}");
    // Ivy logs in from her own address with her password…
    t.xmpp_login(&node, "ivypass123", Some("phone")).await;
    // …and with her session token from any address, the guessing one included.
    let token = t.session(Some(("ivy", "ivypass123"))).await;
    login_from(attacker, token)
        .await
        .expect("a valid session token always logs in");
}

#[tokio::test]
async fn every_login_path_shares_one_failure_count_per_user() {
    let t = TestServer::start_with(|c| c.api.login_failures_per_user = 3).await;
    let id = t
        .create_user("joan", "jopass1234", &[("email", "jo@example.com")])
        .await;
    let node = format!("{id}-{}", t.app.application_id);
    // One wrong guess by login, one by e-mail, one over XMPP, all from this address…
    assert_eq!(t.user_login("joan", "wrong-one").await.status(), 401);
    let token = t.session(None).await;
    let by_email = [
        ("email".to_string(), "jo@example.com".to_string()),
        ("password".to_string(), "wrong-two".to_string()),
    ];
    assert_eq!(
        t.post_form("/login.json", Some(&token), &by_email)
            .await
            .status(),
        401
    );
    let (addr, cert) = (t.server.xmpp_addrs.tcp, t.server.tls.cert.clone());
    let refused = XmppClient::authenticate(addr, "localhost", &cert, &node, "wrong-three")
        .await
        .err()
        .unwrap();
    assert!(refused.contains("not-authorized"), "{refused}");
    // …are three guesses at one user: this address now waits, whichever path it takes.
    let refused = XmppClient::authenticate(addr, "localhost", &cert, &node, "jopass1234")
        .await
        .err()
        .unwrap();
    assert!(refused.contains("temporary-auth-failure"), "{refused}");
    assert_eq!(t.user_login("joan", "jopass1234").await.status(), 429);
}
