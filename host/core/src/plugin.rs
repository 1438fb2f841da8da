//! Policy plugins as the host sees them: which world a component
//! implements, where its bytes come from, the digest they must have, the
//! configuration handed to it, and the limits it runs under (DESIGN.md §6).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Default time limit of one call, in milliseconds. A policy is a pure
/// function of a snapshot and answers in microseconds; 20 ms leaves ample
/// room yet keeps a stuck plugin from stalling a reconcile of many Services.
pub const DEFAULT_TIMEOUT_MS: u32 = 20;

/// The longest time limit a plugin may ask for: beyond 10 s a stuck call
/// would hold up every allocation behind it for longer than any policy
/// decision is worth.
pub const MAX_TIMEOUT_MS: u32 = 10_000;

/// Default memory limit, in MiB: room for a component's code, its stack and
/// a copy of a large snapshot.
pub const DEFAULT_MEMORY_LIMIT_MIB: u32 = 16;

/// The largest memory limit, in MiB: 4 GiB is all a 32-bit linear memory
/// can address (65536 pages of 64 KiB).
pub const MAX_MEMORY_LIMIT_MIB: u32 = 4096;

/// The configuration a plugin gets when its object sets none: an empty JSON
/// object, so a plugin whose settings all have defaults needs no config.
pub const DEFAULT_CONFIG_JSON: &str = "{}";

/// A validated `PolicyPlugin` spec. The plugin's name (`metadata.name`) is
/// kept beside it by the caller: pools and advertisements refer to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyPluginSpec {
    /// `world`: the WIT world the component implements.
    pub world: World,
    /// `source`: where the component's bytes come from.
    pub source: PluginSource,
    /// `sha256`: the digest the bytes must have; a mismatch refuses the
    /// plugin.
    pub sha256: [u8; 32],
    /// `config`, serialized as compact JSON (default
    /// [`DEFAULT_CONFIG_JSON`]); handed to every call unchanged.
    pub config_json: String,
    /// `failurePolicy`: what a trap, timeout or invalid answer leads to.
    pub failure_policy: FailurePolicy,
    /// `timeoutMs`: the time limit of one call (1..=[`MAX_TIMEOUT_MS`],
    /// default [`DEFAULT_TIMEOUT_MS`]).
    pub timeout_ms: u32,
    /// `memoryLimitMiB`: the memory limit of one instance
    /// (1..=[`MAX_MEMORY_LIMIT_MIB`], default [`DEFAULT_MEMORY_LIMIT_MIB`]).
    pub memory_limit_mib: u32,
}

/// The WIT world a plugin implements (`herald:policy@0.1.0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Chooses addresses for Services (`allocator`).
    Allocator,
    /// Chooses the nodes and attributes of announcements (`announcer`).
    Announcer,
    /// Decides what a pod's network gets when it joins (`cni-chain`).
    CniChain,
}

impl World {
    /// Every world, in the order of the WIT package.
    pub const ALL: [World; 3] = [World::Allocator, World::Announcer, World::CniChain];

    /// The world's name in WIT and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Allocator => "allocator",
            World::Announcer => "announcer",
            World::CniChain => "cni-chain",
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for World {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        World::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| {
                format!("unknown world {s:?} (expected allocator, announcer or cni-chain)")
            })
    }
}

/// What a plugin failure (trap, timeout, out of memory, invalid answer)
/// leads to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum FailurePolicy {
    /// Decide with the built-in policy instead (the default: a broken plugin
    /// should not take Services down).
    #[default]
    Fallback,
    /// Make no decision: the Service stays Pending, or the announcement or
    /// the pod's network setup fails.
    Fail,
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailurePolicy::Fallback => "Fallback",
            FailurePolicy::Fail => "Fail",
        })
    }
}

impl FromStr for FailurePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Fallback" => Ok(FailurePolicy::Fallback),
            "Fail" => Ok(FailurePolicy::Fail),
            _ => Err(format!(
                "unknown failure policy {s:?} (expected Fallback or Fail)"
            )),
        }
    }
}

/// Where a plugin's component comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PluginSource {
    /// A file on the host, as written (the caller resolves relative paths).
    File(PathBuf),
    /// A key of a ConfigMap's `binaryData` (or `data`).
    ConfigMap {
        /// The ConfigMap's namespace.
        namespace: String,
        /// The ConfigMap's name.
        name: String,
        /// The key holding the component.
        key: String,
    },
}

/// Parses a SHA-256 digest written as 64 hex digits (either case).
pub fn parse_sha256(text: &str) -> Result<[u8; 32], DigestError> {
    if let Some((position, character)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(DigestError::NotHex {
            character,
            position,
        });
    }
    if text.len() != 64 {
        return Err(DigestError::Length { len: text.len() });
    }
    // Every byte is a hex digit now, so `to_digit` cannot fail.
    let nibble = |b: u8| char::from(b).to_digit(16).unwrap_or(0) as u8;
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = nibble(pair[0]) << 4 | nibble(pair[1]);
    }
    Ok(digest)
}

/// A digest as 64 lowercase hex digits (what `status.loadedDigest` shows).
pub fn sha256_hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a digest does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not 64 characters long.
    #[error("a SHA-256 digest is 64 hex digits, not {len}")]
    Length {
        /// How many hex digits it has.
        len: usize,
    },
    /// A character that is not a hex digit.
    #[error("a SHA-256 digest is 64 hex digits; {character:?} at byte {position} is not one")]
    NotHex {
        /// The offending character.
        character: char,
        /// Its byte offset.
        position: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn world_spellings_round_trip() {
        for (world, name) in [
            (World::Allocator, "allocator"),
            (World::Announcer, "announcer"),
            (World::CniChain, "cni-chain"),
        ] {
            assert_eq!(world.to_string(), name);
            assert_eq!(name.parse::<World>(), Ok(world));
        }
        let e = "cni_chain".parse::<World>().unwrap_err();
        assert!(
            e.contains("\"cni_chain\"") && e.contains("cni-chain"),
            "{e}"
        );
    }

    #[test]
    fn failure_policy_defaults_to_fallback() {
        assert_eq!(FailurePolicy::default(), FailurePolicy::Fallback);
        for p in [FailurePolicy::Fallback, FailurePolicy::Fail] {
            assert_eq!(p.to_string().parse::<FailurePolicy>(), Ok(p));
        }
        assert!("fail".parse::<FailurePolicy>().is_err());
    }

    #[test]
    fn digest_parses_and_prints() {
        let d = parse_sha256(DIGEST).unwrap();
        assert_eq!(d[0], 0xe3);
        assert_eq!(d[31], 0x55);
        assert_eq!(sha256_hex(&d), DIGEST);
        let upper = parse_sha256(&DIGEST.to_uppercase()).unwrap();
        assert_eq!(upper, d);
    }

    #[test]
    fn digest_errors_say_where() {
        assert_eq!(
            parse_sha256(&DIGEST[1..]),
            Err(DigestError::Length { len: 63 })
        );
        assert_eq!(parse_sha256(""), Err(DigestError::Length { len: 0 }));
        let mut bad = DIGEST.to_owned();
        bad.replace_range(5..6, "g");
        assert_eq!(
            parse_sha256(&bad),
            Err(DigestError::NotHex {
                character: 'g',
                position: 5
            })
        );
        // 62 ASCII bytes and a 2-byte character: 64 bytes, not 64 digits.
        let accented = format!("{}é", &DIGEST[..62]);
        assert_eq!(accented.len(), 64);
        let e = parse_sha256(&accented).unwrap_err();
        assert_eq!(
            e,
            DigestError::NotHex {
                character: 'é',
                position: 62
            }
        );
        assert!(e.to_string().contains("'é'"), "{e}");
    }
}
