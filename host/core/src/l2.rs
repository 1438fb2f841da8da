//! L2 advertisements as the announcement planner sees them: which VIPs are
//! answered for by ARP/NDP, from which nodes, on which interfaces.

use std::fmt;
use std::str::FromStr;

use crate::selector::LabelSelector;

/// The kernel's buffer for an interface name, the terminating NUL included
/// (`IFNAMSIZ` in `<linux/if.h>`).
pub const IFNAMSIZ: usize = 16;

/// The longest interface name Linux accepts, in bytes: [`IFNAMSIZ`] less
/// the NUL.
pub const MAX_INTERFACE_NAME_LEN: usize = IFNAMSIZ - 1;

/// A validated `L2Advertisement`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Advertisement {
    /// `metadata.name`.
    pub name: String,
    /// `ipPools`: the pools whose addresses are announced (empty: every
    /// pool).
    pub ip_pools: Vec<String>,
    /// `nodeSelector`: the nodes that may own a VIP (empty: every node).
    pub node_selector: LabelSelector,
    /// `interfaces`: where the owner answers ARP/NDP (empty: the
    /// interfaces whose subnet contains the VIP, else the one holding the
    /// default route of its family; see docs/l2.md).
    pub interfaces: Vec<InterfaceName>,
    /// `announcerPlugin`: the PolicyPlugin (world `announcer`) that picks
    /// the owner instead of the built-in policy.
    pub announcer_plugin: Option<String>,
}

/// A name Linux accepts for a network interface (the rules of the kernel's
/// `dev_valid_name`, restricted to printable ASCII as systemd does).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InterfaceName(String);

impl InterfaceName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InterfaceName {
    type Err = InterfaceNameError;

    /// Accepts 1 to [`MAX_INTERFACE_NAME_LEN`] bytes of printable ASCII
    /// other than `/` (the name is a directory under `/sys/class/net`) and
    /// `:` (the kernel refuses it; `eth0:1` is an address label, not an
    /// interface), except `.` and `..`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name.is_empty() {
            return Err(InterfaceNameError::Empty);
        }
        if name.len() > MAX_INTERFACE_NAME_LEN {
            return Err(InterfaceNameError::TooLong {
                name: name.to_owned(),
                len: name.len(),
            });
        }
        if name == "." || name == ".." {
            return Err(InterfaceNameError::DotName {
                name: name.to_owned(),
            });
        }
        if let Some(c) = name
            .chars()
            .find(|&c| !c.is_ascii_graphic() || c == '/' || c == ':')
        {
            return Err(InterfaceNameError::BadCharacter {
                name: name.to_owned(),
                character: c,
            });
        }
        Ok(InterfaceName(name.to_owned()))
    }
}

/// Why a name is not a valid Linux interface name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceNameError {
    /// The empty string.
    #[error("an interface name must not be empty")]
    Empty,
    /// More bytes than the kernel keeps.
    #[error(
        "interface name {name:?} is {len} bytes long; Linux allows at most {MAX_INTERFACE_NAME_LEN}"
    )]
    TooLong {
        /// The name as written.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// `.` or `..`.
    #[error("{name:?} is not a valid interface name")]
    DotName {
        /// The name as written.
        name: String,
    },
    /// A character Linux (or Herald) refuses in interface names.
    #[error(
        "interface name {name:?} contains {character:?}; use printable ASCII without spaces, '/' or ':'"
    )]
    BadCharacter {
        /// The name as written.
        name: String,
        /// The first refused character.
        character: char,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usual_names_are_accepted() {
        for name in [
            "eth0",
            "enp3s0f1",
            "br-lan",
            "bond0.100",
            "wg_0",
            "a",
            "abcdefghijklmno",
        ] {
            let parsed: InterfaceName = name.parse().unwrap();
            assert_eq!(parsed.as_str(), name);
            assert_eq!(parsed.to_string(), name);
        }
    }

    #[test]
    fn invalid_names_say_why() {
        assert_eq!("".parse::<InterfaceName>(), Err(InterfaceNameError::Empty));
        let e = "abcdefghijklmnop".parse::<InterfaceName>().unwrap_err();
        assert_eq!(
            e,
            InterfaceNameError::TooLong {
                name: "abcdefghijklmnop".into(),
                len: 16
            }
        );
        assert!(e.to_string().contains("at most 15"), "{e}");
        for dots in [".", ".."] {
            assert!(matches!(
                dots.parse::<InterfaceName>(),
                Err(InterfaceNameError::DotName { .. })
            ));
        }
        for (name, character) in [
            ("eth/0", '/'),
            ("eth0:1", ':'),
            ("eth 0", ' '),
            ("eth\t0", '\t'),
            ("eth\u{0}", '\u{0}'),
            ("éth0", 'é'),
        ] {
            assert_eq!(
                name.parse::<InterfaceName>(),
                Err(InterfaceNameError::BadCharacter {
                    name: name.into(),
                    character
                }),
                "{name:?}"
            );
        }
    }
}
