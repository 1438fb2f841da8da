//! The codec adapter: BGP messages to and from bytes through
//! netgauze-bgp-pkt, with the framing checks of RFC 4271 §4.1 and §6.1 done
//! here, before netgauze sees a byte, so that every malformed message maps
//! onto the NOTIFICATION the RFC prescribes.

use std::collections::HashMap;

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::notification::{BgpNotificationMessage, MessageHeaderError};
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

use crate::Error;

/// Marker (16), length (2) and type (1): RFC 4271 §4.1.
pub const HEADER_LEN: usize = 19;

/// The largest message without the Extended Message capability (RFC 4271
/// §4.1; RFC 8654 raises it only when both sides advertise it, and Herald
/// does not: its UPDATEs fit 4096 octets).
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Writes one message.
pub fn encode(message: &BgpMessage) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(64);
    message
        .write(&mut out)
        .map_err(|e| Error::Encode(format!("{e:?}")))?;
    if out.len() > MAX_MESSAGE_LEN {
        return Err(Error::Encode(format!(
            "a {:?} message of {} octets is over the {MAX_MESSAGE_LEN}-octet limit",
            message.get_type(),
            out.len()
        )));
    }
    Ok(out)
}

/// How many octets `message` takes, whatever the limit: for sizing a
/// message before it is filled.
pub fn encoded_len(message: &BgpMessage) -> Result<usize, Error> {
    let mut out = Vec::with_capacity(MAX_MESSAGE_LEN);
    message
        .write(&mut out)
        .map_err(|e| Error::Encode(format!("{e:?}")))?;
    Ok(out.len())
}

/// The length of the first message in `buf`, once its header is complete:
/// `Ok(None)` while fewer than [`HEADER_LEN`] octets are there. A header
/// with a broken marker or an impossible length is the peer's error
/// (RFC 4271 §6.1): the NOTIFICATION to send is returned.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, BgpNotificationMessage> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16].iter().any(|b| *b != 0xff) {
        // "If the Marker field of the message header is not as expected,
        // then a synchronization error has occurred" (§6.1).
        return Err(BgpNotificationMessage::MessageHeaderError(
            MessageHeaderError::ConnectionNotSynchronized {
                value: Box::new([]),
            },
        ));
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        // "the Data field MUST contain the erroneous Length field" (§6.1).
        return Err(BgpNotificationMessage::MessageHeaderError(
            MessageHeaderError::BadMessageLength {
                value: Box::new([buf[16], buf[17]]),
            },
        ));
    }
    Ok(Some(len))
}

/// Decodes one complete message (as framed by [`frame_len`]); `asn4` says
/// whether AS numbers in AS_PATH are 4 octets wide on this session (both
/// sides sent the capability, RFC 6793 §3). A malformed message yields the
/// NOTIFICATION to send (RFC 4271 §6).
pub fn decode(frame: &[u8], asn4: bool) -> Result<BgpMessage, BgpNotificationMessage> {
    let mut ctx =
        BgpParsingContext::new(asn4, HashMap::new(), HashMap::new(), true, true, true, true);
    let mut reader = SliceReader::new(frame);
    BgpMessage::parse(&mut reader, &mut ctx).map_err(BgpNotificationMessage::from)
}

/// The (code, subcode) of a NOTIFICATION, for logs and tests (RFC 4271
/// §4.5).
pub fn notification_codes(n: &BgpNotificationMessage) -> (u8, u8) {
    let bytes = encode(&BgpMessage::Notification(n.clone())).unwrap_or_default();
    match bytes.get(HEADER_LEN..HEADER_LEN + 2) {
        Some(codes) => (codes[0], codes[1]),
        None => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_a_bare_header() {
        let bytes = encode(&BgpMessage::KeepAlive).unwrap();
        let mut expected = vec![0xff; 16];
        expected.extend_from_slice(&[0, 19, 4]);
        assert_eq!(bytes, expected);
        assert_eq!(frame_len(&bytes).unwrap(), Some(19));
        assert_eq!(decode(&bytes, true).unwrap(), BgpMessage::KeepAlive);
    }

    #[test]
    fn short_header_waits_for_more() {
        assert_eq!(frame_len(&[0xff; 18]).unwrap(), None);
    }

    #[test]
    fn broken_marker_is_connection_not_synchronized() {
        let mut bytes = encode(&BgpMessage::KeepAlive).unwrap();
        bytes[3] = 0;
        let n = frame_len(&bytes).unwrap_err();
        assert_eq!(notification_codes(&n), (1, 1));
    }

    #[test]
    fn oversized_and_undersized_lengths_are_bad_message_length() {
        for len in [18u16, 4097, 65535] {
            let mut bytes = vec![0xff; 16];
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.push(2);
            let n = frame_len(&bytes).unwrap_err();
            assert_eq!(notification_codes(&n), (1, 2), "length {len}");
            let BgpNotificationMessage::MessageHeaderError(MessageHeaderError::BadMessageLength {
                value,
            }) = n
            else {
                panic!("{n:?}")
            };
            assert_eq!(&value[..], &len.to_be_bytes());
        }
    }

    #[test]
    fn unknown_type_is_bad_message_type() {
        let mut bytes = vec![0xff; 16];
        bytes.extend_from_slice(&[0, 19, 9]);
        let n = decode(&bytes, true).unwrap_err();
        assert_eq!(notification_codes(&n), (1, 3));
    }
}
