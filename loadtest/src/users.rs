//! The users file: one `jid password` per line, shared by every XMPP scenario so the same
//! accounts can be registered on Switchboard and on peer servers.
//!
//! Blank lines and lines starting with `#` are skipped. The password is the rest of the line
//! after the first run of spaces or tabs, so it may itself contain spaces (not leading ones).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context};

/// One account the tool logs in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Bare JID, `node@domain`.
    pub jid: String,
    /// The SASL PLAIN password (or a QuickBlox session token).
    pub password: String,
}

impl User {
    /// The JID's local part: the SASL PLAIN authentication identity.
    pub fn node(&self) -> &str {
        self.jid.split_once('@').map_or("", |(node, _)| node)
    }

    /// The JID's domain.
    pub fn domain(&self) -> &str {
        self.jid.split_once('@').map_or("", |(_, domain)| domain)
    }
}

/// Reads and parses a users file.
pub fn read(path: &Path) -> anyhow::Result<Vec<User>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read users file {}", path.display()))?;
    parse(&text).with_context(|| format!("in users file {}", path.display()))
}

/// Parses the text of a users file.
pub fn parse(text: &str) -> anyhow::Result<Vec<User>> {
    let mut users = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((jid, password)) = trimmed.split_once([' ', '\t']) else {
            bail!("line {}: expected `jid password`", number + 1);
        };
        let password = password.trim_start_matches([' ', '\t']);
        let valid_jid = matches!(jid.split_once('@'),
            Some((node, domain)) if !node.is_empty() && !domain.is_empty()
                && !domain.contains(['@', '/']));
        if !valid_jid {
            bail!("line {}: {jid:?} is not a bare JID node@domain", number + 1);
        }
        if password.is_empty() {
            bail!("line {}: empty password", number + 1);
        }
        users.push(User {
            jid: jid.to_owned(),
            password: password.to_owned(),
        });
    }
    Ok(users)
}

/// The text of a users file holding `users`.
pub fn format(users: &[User]) -> String {
    let mut out = String::new();
    for user in users {
        let _ = writeln!(out, "{} {}", user.jid, user.password);
    }
    out
}

/// Writes a users file readable only by its owner (it holds passwords).
pub fn write(path: &Path, users: &[User]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;

    std::fs::write(path, format(users))
        .with_context(|| format!("cannot write users file {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict permissions of {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_comments_and_passwords_with_spaces() {
        let text = "# users\n\n7-42@localhost secret\r\n  8-42@localhost\tpass word \n";
        let users = parse(text).unwrap();
        assert_eq!(
            users,
            [
                User {
                    jid: "7-42@localhost".into(),
                    password: "secret".into()
                },
                User {
                    jid: "8-42@localhost".into(),
                    password: "pass word ".into()
                },
            ]
        );
        assert_eq!(users[0].node(), "7-42");
        assert_eq!(users[0].domain(), "localhost");
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "onlyjid",
            "nodomain@ pw",
            "@dom pw",
            "a@b/res pw",
            "a@b@c pw",
            "a@b ",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let error = parse("a@b pw\nbroken\n").unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[test]
    fn format_round_trips() {
        let users = vec![
            User {
                jid: "1-2@d".into(),
                password: "p w".into(),
            },
            User {
                jid: "3-2@d".into(),
                password: "x".into(),
            },
        ];
        assert_eq!(parse(&format(&users)).unwrap(), users);
    }
}
