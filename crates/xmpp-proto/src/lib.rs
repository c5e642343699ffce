//! I/O-free XMPP core.
