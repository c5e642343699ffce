//! The little this crate reads from an SDP itself: which media sections a publisher sends
//! (kind, mid, direction), to know what its subscribers will get before any packet arrives.
//! Everything else is str0m's.

/// One media section of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// `audio`, `video`, `application`, …
    pub kind: String,
    /// Its `a=mid`.
    pub mid: Option<String>,
    /// The sender sends on it (`sendonly`/`sendrecv`, port not 0).
    pub sends: bool,
}

/// The media sections of `sdp`, in order.
pub fn sections(sdp: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(media) = line.strip_prefix("m=") {
            let mut parts = media.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_string();
            let port = parts.next().unwrap_or("0");
            sections.push(Section {
                kind,
                mid: None,
                // sendrecv is the default direction; a port of 0 rejects the section.
                sends: port != "0",
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            continue;
        };
        if let Some(mid) = line.strip_prefix("a=mid:") {
            section.mid = Some(mid.trim().to_string());
        } else if line == "a=recvonly" || line == "a=inactive" {
            section.sends = false;
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_only_offer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\nm=audio 9 RTP 0\r\na=mid:3\r\na=recvonly\r\n";
        let got = sections(sdp);
        assert_eq!(got.len(), 4);
        assert_eq!(
            (got[0].kind.as_str(), got[0].mid.as_deref(), got[0].sends),
            ("audio", Some("0"), true)
        );
        assert!(got[1].sends);
        assert!(!got[2].sends, "port 0");
        assert!(!got[3].sends, "recvonly");
    }
}
