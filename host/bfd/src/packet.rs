//! The BFD Control packet (RFC 5880 §4.1) and the checks every received
//! packet must pass before it reaches a session (RFC 5880 §6.8.6, the
//! steps that need no session state).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! ```
//!
//! Herald does not authenticate (RFC 5880 §6.7 is optional): a packet with
//! the A bit is parsed up to its Auth Type and refused.

use std::fmt;

/// The protocol version (RFC 5880 §4.1).
pub const VERSION: u8 = 1;

/// The length of a packet without the Authentication Section.
pub const LEN: usize = 24;

/// The least length of a packet with the A bit: the mandatory section and
/// the Auth Type and Auth Len octets (RFC 5880 §4.1, §6.8.6).
pub const LEN_WITH_AUTH: usize = 26;

/// The session states as carried in the Sta field (RFC 5880 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Held down by its operator (0).
    AdminDown,
    /// Down, or just created (1).
    Down,
    /// The remote end is heard, but has not yet said it hears us (2).
    Init,
    /// Both ends hear each other (3).
    Up,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 0b11 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The diagnostic code: why the sender's session last left Up (RFC 5880
/// §4.1). Values 9–31 are reserved and kept as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Diag(pub u8);

impl Diag {
    /// 0 — No Diagnostic.
    pub const NONE: Diag = Diag(0);
    /// 1 — Control Detection Time Expired.
    pub const DETECTION_TIME_EXPIRED: Diag = Diag(1);
    /// 3 — Neighbor Signaled Session Down.
    pub const NEIGHBOR_SIGNALED_DOWN: Diag = Diag(3);
    /// 7 — Administratively Down.
    pub const ADMIN_DOWN: Diag = Diag(7);
}

/// A BFD Control packet without an Authentication Section (the only kind
/// Herald sends or accepts). Intervals are in microseconds, as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Diag.
    pub diag: Diag,
    /// Sta: the sender's session state.
    pub state: State,
    /// P: the sender asks for a packet with F (a Poll Sequence, §6.5).
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: the sender wishes to run Demand mode.
    pub demand: bool,
    /// Detect Mult.
    pub detect_mult: u8,
    /// My Discriminator: the sender's, never 0.
    pub my_discriminator: u32,
    /// Your Discriminator: the receiver's as the sender knows it, 0 when
    /// it does not.
    pub your_discriminator: u32,
    /// Desired Min TX Interval, µs.
    pub desired_min_tx: u32,
    /// Required Min RX Interval, µs (0: send me nothing).
    pub required_min_rx: u32,
    /// Required Min Echo RX Interval, µs (0: no Echo).
    pub required_min_echo_rx: u32,
}

/// Why a received datagram is not a packet a session may see (RFC 5880
/// §6.8.6, in the order the RFC checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the mandatory section.
    #[error("{len} octets: shorter than a BFD Control packet ({LEN})")]
    Truncated {
        /// The datagram's length.
        len: usize,
    },
    /// Vers is not 1.
    #[error("version {0}, not {VERSION}")]
    Version(u8),
    /// The Length field is below the least for the packet's kind.
    #[error("Length field {length} is below {least}")]
    LengthTooSmall {
        /// The Length field.
        length: u8,
        /// 24, or 26 with the A bit.
        least: usize,
    },
    /// The Length field says more than the datagram holds.
    #[error("Length field {length} exceeds the {datagram}-octet datagram")]
    LengthBeyondDatagram {
        /// The Length field.
        length: u8,
        /// The datagram's length.
        datagram: usize,
    },
    /// Detect Mult is 0.
    #[error("Detect Mult is 0")]
    DetectMultZero,
    /// The M bit is set (multipoint BFD is not defined here).
    #[error("the Multipoint bit is set")]
    Multipoint,
    /// My Discriminator is 0.
    #[error("My Discriminator is 0")]
    MyDiscriminatorZero,
    /// Your Discriminator is 0 but the sender is neither Down nor
    /// AdminDown.
    #[error("Your Discriminator is 0 in state {0}")]
    YourDiscriminatorZero(State),
    /// The A bit is set: Herald does not authenticate, so the packet is
    /// refused (§6.8.6: "If the A bit is set and no authentication is in
    /// use … the packet MUST be discarded").
    #[error("authenticated (Auth Type {auth_type}); authentication is not supported")]
    Authenticated {
        /// The Auth Type octet.
        auth_type: u8,
    },
}

/// Decodes and validates a received datagram (RFC 5880 §6.8.6).
pub fn decode(datagram: &[u8]) -> Result<Packet, DecodeError> {
    if datagram.len() < LEN {
        return Err(DecodeError::Truncated {
            len: datagram.len(),
        });
    }
    let version = datagram[0] >> 5;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let flags = datagram[1];
    let auth = flags & 0x04 != 0;
    let length = datagram[3];
    let least = if auth { LEN_WITH_AUTH } else { LEN };
    if usize::from(length) < least {
        return Err(DecodeError::LengthTooSmall { length, least });
    }
    if usize::from(length) > datagram.len() {
        return Err(DecodeError::LengthBeyondDatagram {
            length,
            datagram: datagram.len(),
        });
    }
    let word = |at: usize| {
        u32::from_be_bytes([
            datagram[at],
            datagram[at + 1],
            datagram[at + 2],
            datagram[at + 3],
        ])
    };
    let state = State::from_bits(flags >> 6);
    let packet = Packet {
        diag: Diag(datagram[0] & 0x1f),
        state,
        poll: flags & 0x20 != 0,
        final_: flags & 0x10 != 0,
        control_plane_independent: flags & 0x08 != 0,
        demand: flags & 0x02 != 0,
        detect_mult: datagram[2],
        my_discriminator: word(4),
        your_discriminator: word(8),
        desired_min_tx: word(12),
        required_min_rx: word(16),
        required_min_echo_rx: word(20),
    };
    if packet.detect_mult == 0 {
        return Err(DecodeError::DetectMultZero);
    }
    if flags & 0x01 != 0 {
        return Err(DecodeError::Multipoint);
    }
    if packet.my_discriminator == 0 {
        return Err(DecodeError::MyDiscriminatorZero);
    }
    if packet.your_discriminator == 0 && !matches!(state, State::Down | State::AdminDown) {
        return Err(DecodeError::YourDiscriminatorZero(state));
    }
    if auth {
        return Err(DecodeError::Authenticated {
            auth_type: datagram[LEN],
        });
    }
    Ok(packet)
}

/// Encodes `packet` (A and M clear, Length 24).
pub fn encode(packet: &Packet) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    out[0] = (VERSION << 5) | (packet.diag.0 & 0x1f);
    out[1] = (packet.state.bits() << 6)
        | u8::from(packet.poll) << 5
        | u8::from(packet.final_) << 4
        | u8::from(packet.control_plane_independent) << 3
        | u8::from(packet.demand) << 1;
    out[2] = packet.detect_mult;
    out[3] = LEN as u8;
    out[4..8].copy_from_slice(&packet.my_discriminator.to_be_bytes());
    out[8..12].copy_from_slice(&packet.your_discriminator.to_be_bytes());
    out[12..16].copy_from_slice(&packet.desired_min_tx.to_be_bytes());
    out[16..20].copy_from_slice(&packet.required_min_rx.to_be_bytes());
    out[20..24].copy_from_slice(&packet.required_min_echo_rx.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Up packet with a Poll, 300 ms / 100 ms, multiplier 3 — the
    /// golden vector also checked against tcpdump (tests/second_decoder.rs).
    const UP_POLL: [u8; LEN] = [
        0x20, 0xe0, 0x03, 0x18, // v1, diag 0, Up, P, mult 3, len 24
        0x11, 0x22, 0x33, 0x44, // my discriminator
        0x55, 0x66, 0x77, 0x88, // your discriminator
        0x00, 0x04, 0x93, 0xe0, // desired min TX 300000 µs
        0x00, 0x01, 0x86, 0xa0, // required min RX 100000 µs
        0x00, 0x00, 0x00, 0x00, // no echo
    ];

    fn up_poll() -> Packet {
        Packet {
            diag: Diag::NONE,
            state: State::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 0x1122_3344,
            your_discriminator: 0x5566_7788,
            desired_min_tx: 300_000,
            required_min_rx: 100_000,
            required_min_echo_rx: 0,
        }
    }

    fn with(mut bytes: [u8; LEN], at: usize, value: u8) -> [u8; LEN] {
        bytes[at] = value;
        bytes
    }

    #[test]
    fn the_golden_vector_encodes_and_decodes_both_ways() {
        assert_eq!(encode(&up_poll()), UP_POLL);
        assert_eq!(decode(&UP_POLL), Ok(up_poll()));
    }

    #[test]
    fn every_flag_and_state_round_trips() {
        for state in [State::AdminDown, State::Down, State::Init, State::Up] {
            for bits in 0..16u8 {
                let p = Packet {
                    state,
                    diag: Diag(bits + 1),
                    poll: bits & 1 != 0,
                    final_: bits & 2 != 0,
                    control_plane_independent: bits & 4 != 0,
                    demand: bits & 8 != 0,
                    ..up_poll()
                };
                assert_eq!(decode(&encode(&p)), Ok(p));
            }
        }
    }

    #[test]
    fn a_diagnostic_and_down_state_sit_where_rfc_5880_4_1_puts_them() {
        let p = Packet {
            diag: Diag::DETECTION_TIME_EXPIRED,
            state: State::Down,
            poll: false,
            your_discriminator: 0,
            ..up_poll()
        };
        let b = encode(&p);
        assert_eq!(b[0], 0x21);
        assert_eq!(b[1], 0x40);
        assert_eq!(&b[8..12], &[0, 0, 0, 0]);
    }

    #[test]
    fn a_short_datagram_is_truncated() {
        assert_eq!(
            decode(&UP_POLL[..23]),
            Err(DecodeError::Truncated { len: 23 })
        );
        assert_eq!(decode(&[]), Err(DecodeError::Truncated { len: 0 }));
    }

    #[test]
    fn rfc_5880_6_8_6_version_other_than_1_is_discarded() {
        assert_eq!(
            decode(&with(UP_POLL, 0, 0x40)),
            Err(DecodeError::Version(2))
        );
        assert_eq!(
            decode(&with(UP_POLL, 0, 0x00)),
            Err(DecodeError::Version(0))
        );
    }

    #[test]
    fn rfc_5880_6_8_6_length_below_24_or_beyond_the_datagram_is_discarded() {
        assert_eq!(
            decode(&with(UP_POLL, 3, 23)),
            Err(DecodeError::LengthTooSmall {
                length: 23,
                least: 24
            })
        );
        assert_eq!(
            decode(&with(UP_POLL, 3, 25)),
            Err(DecodeError::LengthBeyondDatagram {
                length: 25,
                datagram: 24
            })
        );
        // Trailing octets beyond Length are not an error.
        let mut long = UP_POLL.to_vec();
        long.extend_from_slice(&[0xff; 4]);
        assert_eq!(decode(&long), Ok(up_poll()));
    }

    #[test]
    fn rfc_5880_6_8_6_with_the_a_bit_the_least_length_is_26() {
        let mut auth = with(UP_POLL, 1, 0xe4).to_vec();
        assert_eq!(
            decode(&auth),
            Err(DecodeError::LengthTooSmall {
                length: 24,
                least: 26
            })
        );
        // Simple Password (type 1), 4-octet section: key id 1, password "a".
        auth[3] = 28;
        auth.extend_from_slice(&[1, 4, 1, b'a']);
        assert_eq!(
            decode(&auth),
            Err(DecodeError::Authenticated { auth_type: 1 })
        );
    }

    #[test]
    fn rfc_5880_6_8_6_detect_mult_0_multipoint_and_my_discriminator_0_are_discarded() {
        assert_eq!(
            decode(&with(UP_POLL, 2, 0)),
            Err(DecodeError::DetectMultZero)
        );
        assert_eq!(
            decode(&with(UP_POLL, 1, 0xe1)),
            Err(DecodeError::Multipoint)
        );
        let mut b = UP_POLL;
        b[4..8].copy_from_slice(&[0; 4]);
        assert_eq!(decode(&b), Err(DecodeError::MyDiscriminatorZero));
    }

    #[test]
    fn rfc_5880_6_8_6_your_discriminator_0_only_in_down_or_admin_down() {
        let mut b = UP_POLL;
        b[8..12].copy_from_slice(&[0; 4]);
        assert_eq!(
            decode(&b),
            Err(DecodeError::YourDiscriminatorZero(State::Up))
        );
        b[1] = 0x80; // Init
        assert_eq!(
            decode(&b),
            Err(DecodeError::YourDiscriminatorZero(State::Init))
        );
        b[1] = 0x40; // Down
        assert!(decode(&b).is_ok());
        b[1] = 0x00; // AdminDown
        assert!(decode(&b).is_ok());
    }
}
