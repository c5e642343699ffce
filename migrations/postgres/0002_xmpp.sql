-- XMPP state that must survive a restart: rosters (RFC 6121), offline messages (XEP-0160),
-- privacy lists (XEP-0016), block lists (XEP-0191) and last activity (XEP-0012).
CREATE TABLE roster_items (
    app_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    contact_id BIGINT NOT NULL,
    name TEXT,
    -- none | to | from | both
    subscription TEXT NOT NULL DEFAULT 'none',
    -- 1 while our subscription request to the contact is pending
    ask_out BIGINT NOT NULL DEFAULT 0,
    -- 1 while the contact's request to us awaits an answer
    pending_in BIGINT NOT NULL DEFAULT 0,
    -- groups joined by newlines (a group name cannot contain one)
    groups TEXT NOT NULL DEFAULT '',
    version BIGINT NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);

CREATE TABLE roster_versions (
    user_id BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);

CREATE TABLE offline_messages (
    id BIGSERIAL PRIMARY KEY,
    app_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    stanza TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX offline_messages_user ON offline_messages (user_id, id);

CREATE TABLE privacy_lists (
    user_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    -- the <item/> elements exactly as set, in order
    items TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);

CREATE TABLE privacy_defaults (
    user_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE block_list (
    user_id BIGINT NOT NULL,
    jid TEXT NOT NULL,
    PRIMARY KEY (user_id, jid)
);

ALTER TABLE users ADD COLUMN last_logout_at BIGINT;
ALTER TABLE users ADD COLUMN last_status TEXT;
