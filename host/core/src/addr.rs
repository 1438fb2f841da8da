//! Addresses as numbers, address families, and the address entries of a pool
//! (CIDRs and inclusive ranges).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Serialize;

/// An IP address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Family {
    /// IPv4.
    IPv4,
    /// IPv6.
    IPv6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::IPv4, Family::IPv6];

    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::IPv4,
            IpAddr::V6(_) => Family::IPv6,
        }
    }

    /// The other family.
    pub fn other(self) -> Family {
        match self {
            Family::IPv4 => Family::IPv6,
            Family::IPv6 => Family::IPv4,
        }
    }

    /// Index into per-family arrays: 0 for IPv4, 1 for IPv6.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The largest address of the family, as a number.
    pub fn max_value(self) -> u128 {
        match self {
            Family::IPv4 => u128::from(u32::MAX),
            Family::IPv6 => u128::MAX,
        }
    }

    /// The address with numeric value `value` (which must fit the family).
    pub fn addr(self, value: u128) -> IpAddr {
        match self {
            // Truncation cannot happen: callers keep values within `max_value`.
            Family::IPv4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
            Family::IPv6 => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }

    fn bits(self) -> u32 {
        match self {
            Family::IPv4 => 32,
            Family::IPv6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::IPv4 => "IPv4",
            Family::IPv6 => "IPv6",
        })
    }
}

impl FromStr for Family {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "IPv4" => Ok(Family::IPv4),
            "IPv6" => Ok(Family::IPv6),
            _ => Err(format!("unknown IP family {s:?} (expected IPv4 or IPv6)")),
        }
    }
}

/// The numeric value of an address within its family.
pub fn value(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// An inclusive range of addresses of one family: what one entry of
/// `IPPool.spec.addresses` denotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressRange {
    /// The family of both ends.
    pub family: Family,
    /// The first address, as a number.
    pub first: u128,
    /// The last address, as a number (`first <= last`).
    pub last: u128,
}

impl AddressRange {
    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family && (self.first..=self.last).contains(&value(ip))
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &AddressRange) -> bool {
        self.family == other.family && self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.family.addr(self.first),
            self.family.addr(self.last)
        )
    }
}

/// Why an address entry is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressEntryError {
    /// Neither an address, a CIDR nor a range.
    #[error("{entry:?} is not a CIDR (198.51.100.0/24) or a range (198.51.100.10-198.51.100.20)")]
    Unparsable {
        /// The entry as written.
        entry: String,
    },
    /// A bare address; one address is written `/32` or `/128`.
    #[error("{entry:?} is a bare address; write one address as {entry}/{bits}")]
    BareAddress {
        /// The entry as written.
        entry: String,
        /// 32 or 128.
        bits: u32,
    },
    /// A prefix length longer than the family allows.
    #[error("{entry:?} has a prefix length over {bits}")]
    PrefixTooLong {
        /// The entry as written.
        entry: String,
        /// 32 or 128.
        bits: u32,
    },
    /// Host bits set below the prefix length.
    #[error("{entry:?} has host bits set; did you mean {network}?")]
    HostBitsSet {
        /// The entry as written.
        entry: String,
        /// The network the entry probably meant.
        network: String,
    },
    /// A range whose ends are of different families.
    #[error("range {entry:?} mixes IPv4 and IPv6")]
    MixedFamilies {
        /// The entry as written.
        entry: String,
    },
    /// A range whose end comes before its start.
    #[error("range {entry:?} runs backwards")]
    Backwards {
        /// The entry as written.
        entry: String,
    },
}

impl FromStr for AddressRange {
    type Err = AddressEntryError;

    /// Parses `198.51.100.0/24`, `2001:db8::/120` or
    /// `198.51.100.10-198.51.100.20` (spaces around the dash allowed).
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let unparsable = || AddressEntryError::Unparsable {
            entry: entry.to_owned(),
        };
        let text = entry.trim();
        if let Some((a, b)) = text.split_once('-') {
            let a: IpAddr = a.trim().parse().map_err(|_| unparsable())?;
            let b: IpAddr = b.trim().parse().map_err(|_| unparsable())?;
            if Family::of(a) != Family::of(b) {
                return Err(AddressEntryError::MixedFamilies {
                    entry: entry.to_owned(),
                });
            }
            let (first, last) = (value(a), value(b));
            if last < first {
                return Err(AddressEntryError::Backwards {
                    entry: entry.to_owned(),
                });
            }
            return Ok(AddressRange {
                family: Family::of(a),
                first,
                last,
            });
        }
        let Some((addr, len)) = text.split_once('/') else {
            let ip: IpAddr = text.parse().map_err(|_| unparsable())?;
            return Err(AddressEntryError::BareAddress {
                entry: entry.to_owned(),
                bits: Family::of(ip).bits(),
            });
        };
        let ip: IpAddr = addr.parse().map_err(|_| unparsable())?;
        // Only plain decimal digits: `u32::from_str` would accept "+24".
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
            return Err(unparsable());
        }
        let len: u32 = len.parse().map_err(|_| unparsable())?;
        let family = Family::of(ip);
        let bits = family.bits();
        if len > bits {
            return Err(AddressEntryError::PrefixTooLong {
                entry: entry.to_owned(),
                bits,
            });
        }
        let host_bits = bits - len;
        let host_mask: u128 = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let first = value(ip);
        if first & host_mask != 0 {
            return Err(AddressEntryError::HostBitsSet {
                entry: entry.to_owned(),
                network: format!("{}/{len}", family.addr(first & !host_mask)),
            });
        }
        Ok(AddressRange {
            family,
            first,
            last: first | host_mask,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> Result<AddressRange, AddressEntryError> {
        s.parse()
    }

    #[test]
    fn cidr_covers_network_and_broadcast() {
        let r = range("198.51.100.0/24").unwrap();
        assert!(r.contains("198.51.100.0".parse().unwrap()));
        assert!(r.contains("198.51.100.255".parse().unwrap()));
        assert!(!r.contains("198.51.101.0".parse().unwrap()));
        assert_eq!(r.last - r.first + 1, 256);
    }

    #[test]
    fn ipv6_cidr_and_whole_space() {
        let r = range("2001:db8::/120").unwrap();
        assert_eq!(r.family, Family::IPv6);
        assert_eq!(r.last - r.first + 1, 256);
        let all = range("::/0").unwrap();
        assert_eq!((all.first, all.last), (0, u128::MAX));
        let all4 = range("0.0.0.0/0").unwrap();
        assert_eq!(all4.last, u128::from(u32::MAX));
    }

    #[test]
    fn inclusive_range() {
        let r = range("198.51.100.10 - 198.51.100.20").unwrap();
        assert_eq!(r.last - r.first + 1, 11);
        assert_eq!(r.to_string(), "198.51.100.10-198.51.100.20");
        assert!(range("198.51.100.10-198.51.100.10").is_ok());
    }

    #[test]
    fn malformed_entries_are_rejected_with_the_reason() {
        assert!(matches!(
            range("198.51.100.5/24"),
            Err(AddressEntryError::HostBitsSet { network, .. }) if network == "198.51.100.0/24"
        ));
        assert!(matches!(
            range("198.51.100.5"),
            Err(AddressEntryError::BareAddress { bits: 32, .. })
        ));
        assert!(matches!(
            range("2001:db8::1"),
            Err(AddressEntryError::BareAddress { bits: 128, .. })
        ));
        assert!(matches!(
            range("198.51.100.0/33"),
            Err(AddressEntryError::PrefixTooLong { .. })
        ));
        assert!(matches!(
            range("198.51.100.20-198.51.100.10"),
            Err(AddressEntryError::Backwards { .. })
        ));
        assert!(matches!(
            range("198.51.100.1-2001:db8::1"),
            Err(AddressEntryError::MixedFamilies { .. })
        ));
        for bad in [
            "",
            "pool",
            "198.51.100.0/",
            "198.51.100.0/+4",
            "1.2.3.4/24/1",
            "1.2.3-1.2.3.4",
        ] {
            assert!(
                matches!(range(bad), Err(AddressEntryError::Unparsable { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn overlap() {
        let a = range("198.51.100.0/25").unwrap();
        let b = range("198.51.100.127-198.51.100.200").unwrap();
        let c = range("198.51.100.128/25").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&c));
        assert!(!a.overlaps(&c));
        assert!(!a.overlaps(&range("2001:db8::/120").unwrap()));
    }
}
