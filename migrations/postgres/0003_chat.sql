-- QuickBlox Chat: dialogs, their members, history and per-user message state.
--
-- Dialog and message ids are 24-hex ObjectIds (the SDK splits room JIDs on '_' and uses the
-- XMPP stanza id as the history id). History is read by key set on (dialog_id, date_sent, seq),
-- never by OFFSET,
-- so a page costs the same at message 10 and message 1,000,000.
CREATE TABLE dialogs (
    id TEXT PRIMARY KEY,
    app_id BIGINT NOT NULL,
    -- 1 public group, 2 group, 3 private
    type BIGINT NOT NULL,
    -- the creator (owner)
    user_id BIGINT NOT NULL,
    name TEXT,
    photo TEXT,
    is_join_required BIGINT NOT NULL DEFAULT 0,
    -- custom parameters as a JSON object ({"class_name": …, field: value, …}), or NULL
    data TEXT,
    -- private dialogs: "low:high" user ids, one dialog per pair; NULL otherwise
    pair TEXT,
    -- occupants_ids as the client sees them, comma-joined in the order they were added;
    -- dialog_members holds the same set for queries
    occupants TEXT NOT NULL DEFAULT '',
    last_message TEXT,
    last_message_date_sent BIGINT,
    last_message_user_id BIGINT,
    last_message_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX dialogs_pair ON dialogs (app_id, pair);
CREATE INDEX dialogs_public ON dialogs (app_id, type);

-- One row per (dialog, user) with state: an occupant, or a user who hid a public dialog.
CREATE TABLE dialog_members (
    dialog_id TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    -- 1 while the user is in occupants_ids
    occupant BIGINT NOT NULL DEFAULT 1,
    -- 1 after "delete for me" until the next message in the dialog
    hidden BIGINT NOT NULL DEFAULT 0,
    -- messages from others the user has not read
    unread BIGINT NOT NULL DEFAULT 0,
    -- offline alerts for this dialog (PUT /chat/Dialog/{id}/notifications)
    notifications BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (dialog_id, user_id)
);
CREATE INDEX dialog_members_user ON dialog_members (user_id, dialog_id);

CREATE TABLE messages (
    -- arrival order: ties of date_sent (one second holds many messages, and client ids from
    -- different devices do not sort by time) are broken by it
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    app_id BIGINT NOT NULL,
    dialog_id TEXT NOT NULL,
    sender_id BIGINT NOT NULL,
    recipient_id BIGINT,
    body TEXT,
    date_sent BIGINT NOT NULL,
    -- JSON array of attachment objects, or NULL
    attachments TEXT,
    -- JSON object of the custom parameters, or NULL
    custom TEXT,
    markable BIGINT NOT NULL DEFAULT 0,
    -- the message as routed (XML), for MAM; NULL for messages created over REST
    stanza TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX messages_dialog ON messages (dialog_id, date_sent, seq);

-- Delivered, read and "deleted for me", per (message, user); a row only once one is set.
CREATE TABLE message_marks (
    message_id TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    dialog_id TEXT NOT NULL,
    is_delivered BIGINT NOT NULL DEFAULT 0,
    is_read BIGINT NOT NULL DEFAULT 0,
    is_hidden BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, user_id)
);
