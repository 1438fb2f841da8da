//! Loading manifests: files and directories of multi-document YAML (or
//! JSON) into a [`Snapshot`] and the other Herald objects.
//!
//! What is an error and what is not:
//! - a file that cannot be read, YAML that does not parse, a field of the
//!   wrong type, a field a Herald kind does not have, or a value the API
//!   server would reject (an unknown `ipFamilyPolicy`) stop loading with a
//!   [`LoadError`] naming the file, the object and, where the parser gives
//!   one, the line;
//! - a Herald object whose values Herald cannot use (a malformed pool
//!   entry, a bad community) is reported in [`Manifests::errors`] and the
//!   rest goes on, as the controller would do in a cluster;
//! - kinds Herald does not read are skipped with a note.
//!
//! Hostile files are refused before they are read: a path that is not a
//! regular file (a FIFO would block the read forever, a device such as
//! `/dev/zero` never ends) is an error when named, and when found in a
//! directory under a manifest name (`.yaml`, `.yml`, `.json`); a file
//! larger than [`MAX_MANIFEST_BYTES`] is an error. A leading UTF-8 byte
//! order mark is dropped. An object of a kind Herald reads must have a
//! `metadata.name`, as the API server requires.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use herald_core::bgp::{BfdProfile, BgpAdvertisement, BgpPeer};
use herald_core::plugin::{PluginSource, PolicyPluginSpec};
use herald_core::{ConfigError, Snapshot};
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_yaml_ng::{Mapping, Value};

use crate::bfd::BFDProfile;
use crate::bgp::{BGPAdvertisement, BGPPeer};
use crate::inputs::{
    add_allocation, add_bfd_profile, add_namespace, add_pool, add_service, check_bfd_profiles,
};
use crate::l2::L2Advertisement;
use crate::node::{add_endpoint_slice, validate_node};
use crate::plugin::PolicyPlugin;
use crate::pool::{IPAllocation, IPPool};
use crate::{API_VERSION, FieldError, GROUP};

/// Everything read from the manifests.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// What allocation needs: pools, Services, Namespaces, held addresses.
    pub snapshot: Snapshot,
    /// Nodes (for the speaker).
    pub nodes: Vec<herald_core::node::Node>,
    /// Ready endpoints per Service and node, from EndpointSlices.
    pub endpoints: herald_core::node::Endpoints,
    /// Valid `BGPPeer` objects.
    pub bgp_peers: Vec<BgpPeer>,
    /// Valid `BFDProfile` objects by name (every peer's `bfdProfile` is
    /// one of them: a peer naming another is left out and reported).
    pub bfd_profiles: BTreeMap<String, BfdProfile>,
    /// Valid `BGPAdvertisement` objects.
    pub bgp_advertisements: Vec<BgpAdvertisement>,
    /// Valid `L2Advertisement` objects.
    pub l2_advertisements: Vec<herald_core::l2::L2Advertisement>,
    /// Valid `PolicyPlugin` objects by name; a `source.file` relative path
    /// is resolved against the directory of the manifest that names it.
    pub plugins: Vec<(String, PolicyPluginSpec)>,
    /// Herald objects that are ignored because a value is unusable.
    pub errors: Vec<ConfigError>,
    /// One line per skipped document (a kind Herald does not read).
    pub notes: Vec<String>,
}

/// Where in the manifests something went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when the parser knows it.
    pub line: Option<usize>,
    /// 1-based column, when the parser knows it.
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// The largest manifest file read: 64 MiB. 100,000 Services are about
/// 20 MB of YAML, so real manifests fit with room to spare; the limit keeps
/// a runaway generator's output (or a file of zeros) from filling memory:
/// the parsed form takes several times the text.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Why the manifests could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A path that is neither a directory nor a regular file.
    #[error("{}: is {what}, not a regular file or directory", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is (`a FIFO`).
        what: &'static str,
    },
    /// A file larger than [`MAX_MANIFEST_BYTES`].
    #[error("{}: larger than {} MiB, the most Herald reads from one manifest file", path.display(), MAX_MANIFEST_BYTES >> 20)]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A document is not valid YAML, or an object does not fit its kind.
    #[error("{at}: {what}: {message}")]
    Invalid {
        /// File and line.
        at: Location,
        /// The document and object (`document 2 (IPPool "blue")`).
        what: String,
        /// What is wrong.
        message: String,
    },
}

/// Loads every path: files as they are, directories recursively (files
/// ending in `.yaml`, `.yml` or `.json`, in name order, hidden ones skipped).
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Manifests, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        collect(path.as_ref(), true, &mut files)?;
    }
    let mut out = Manifests::default();
    for file in files {
        let text = read_manifest(&file)?;
        load_str(&file, &text, &mut out)?;
    }
    check_bfd_profiles(&mut out.bgp_peers, &out.bfd_profiles, &mut out.errors);
    Ok(out)
}

/// The text of every manifest file under `paths`, found and guarded as
/// [`load_paths`] finds them (for readers of other formats, such as
/// [`crate::metallb`]).
pub fn read_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<(PathBuf, String)>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        collect(path.as_ref(), true, &mut files)?;
    }
    files
        .into_iter()
        .map(|file| read_manifest(&file).map(|text| (file, text)))
        .collect()
}

/// Reads a file [`collect`] found to be regular, at most
/// [`MAX_MANIFEST_BYTES`] of it.
fn read_manifest(file: &Path) -> Result<String, LoadError> {
    let read_err = |source| LoadError::Read {
        path: file.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    fs::File::open(file)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(LoadError::TooLarge {
            path: file.to_owned(),
        });
    }
    String::from_utf8(bytes)
        .map_err(|e| read_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// What a path that is not a regular file or a directory is.
fn special_file(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

fn collect(path: &Path, explicit: bool, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        let manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if !(explicit || manifest) {
            return Ok(());
        }
        // Checked before opening: opening a FIFO blocks until a writer
        // comes, and a device can be read forever.
        if !meta.is_file() {
            return Err(LoadError::NotAFile {
                path: path.to_owned(),
                what: special_file(meta.file_type()),
            });
        }
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(path)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if !hidden {
            collect(&entry, false, files)?;
        }
    }
    Ok(())
}

/// The parts of a document that say what it is.
struct Header {
    api_version: String,
    kind: String,
    name: String,
    what: String,
}

impl Header {
    fn of(index: usize, value: &Value) -> Header {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        let api_version = text(value.get("apiVersion"));
        let kind = text(value.get("kind"));
        let meta = value.get("metadata");
        let name = text(meta.and_then(|m| m.get("name")));
        let namespace = text(meta.and_then(|m| m.get("namespace")));
        let what = match (kind.is_empty(), name.is_empty(), namespace.is_empty()) {
            (true, _, _) => format!("document {index}"),
            (false, true, _) => format!("document {index} ({kind})"),
            (false, false, true) => format!("document {index} ({kind} {name:?})"),
            (false, false, false) => format!("document {index} ({kind} \"{namespace}/{name}\")"),
        };
        Header {
            api_version,
            kind,
            name,
            what,
        }
    }
}

/// Loads the documents of one file's text into `out`.
pub fn load_str(path: &Path, text: &str, out: &mut Manifests) -> Result<(), LoadError> {
    // Pass 1: parse every document to learn its kind (syntax errors carry
    // their line). Pass 2: deserialize each document again, straight from
    // the text, into its type, so type errors carry their line too. Between
    // the passes only each document's skeleton is kept.
    // A byte order mark is not part of the first document (the YAML parser
    // would read it as a document of its own).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut values = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).map_err(|e| LoadError::Invalid {
            at: location(path, &e),
            what: named_anyway(text, values.len()),
            message: clean(&e),
        })?;
        values.push(skeleton(value));
    }
    for (i, (doc, value)) in serde_yaml_ng::Deserializer::from_str(text)
        .zip(&values)
        .enumerate()
    {
        load_document(path, i + 1, doc, value, out)?;
    }
    Ok(())
}

/// What a document that pass 1 could not hold as a [`Value`] is (an
/// integer of 2^64 or more does not fit one): `document N (Kind "name")`
/// when its header still reads, else `document N`.
fn named_anyway(text: &str, index: usize) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        api_version: Option<String>,
        kind: Option<String>,
        metadata: Option<Meta>,
    }
    #[derive(Deserialize)]
    struct Meta {
        name: Option<String>,
        namespace: Option<String>,
    }
    let head = serde_yaml_ng::Deserializer::from_str(text)
        .nth(index)
        .and_then(|doc| Head::deserialize(doc).ok());
    let Some(head) = head else {
        return format!("document {}", index + 1);
    };
    let mut map = Mapping::new();
    let mut meta = Mapping::new();
    let put = |map: &mut Mapping, key: &str, v: Option<String>| {
        if let Some(v) = v {
            map.insert(key.into(), v.into());
        }
    };
    put(&mut map, "apiVersion", head.api_version);
    put(&mut map, "kind", head.kind);
    if let Some(m) = head.metadata {
        put(&mut meta, "name", m.name);
        put(&mut meta, "namespace", m.namespace);
    }
    map.insert("metadata".into(), Value::Mapping(meta));
    Header::of(index + 1, &Value::Mapping(map)).what
}

/// What pass 2 needs of a document parsed in pass 1: a `List` whole (its
/// items are loaded from it), anything else only the fields [`Header`]
/// reads. Keeping every parsed tree until pass 2 was most of the loader's
/// memory: 100,000 Services (20 MB of YAML) peaked at 684 MiB.
fn skeleton(value: Value) -> Value {
    let Value::Mapping(map) = &value else {
        return value;
    };
    if map.get("kind").and_then(Value::as_str) == Some("List") {
        return value;
    }
    let pick = |from: &Value, keys: &[&str]| {
        let mut out = Mapping::new();
        for &key in keys {
            if let Some(v) = from.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        out
    };
    let mut out = pick(&value, &["apiVersion", "kind"]);
    if let Some(meta) = value.get("metadata") {
        out.insert(
            "metadata".into(),
            Value::Mapping(pick(meta, &["name", "namespace"])),
        );
    }
    Value::Mapping(out)
}

fn load_document<'de, D>(
    path: &Path,
    index: usize,
    doc: D,
    value: &Value,
    out: &mut Manifests,
) -> Result<(), LoadError>
where
    D: Deserializer<'de, Error = serde_yaml_ng::Error>,
{
    if value.is_null() {
        return Ok(());
    }
    let header = Header::of(index, value);
    let invalid = |message: String| LoadError::Invalid {
        at: Location {
            path: path.to_owned(),
            line: None,
            column: None,
        },
        what: header.what.clone(),
        message,
    };
    if !value.is_mapping() {
        return Err(invalid(
            "a manifest must be a mapping with apiVersion and kind".into(),
        ));
    }
    let herald = header.api_version.split('/').next() == Some(GROUP);
    let read = matches!(
        (header.api_version.as_str(), header.kind.as_str()),
        ("v1", "Service" | "Node" | "Namespace")
            | ("discovery.k8s.io/v1", "EndpointSlice")
            | (
                API_VERSION,
                "IPPool"
                    | "IPAllocation"
                    | "BGPPeer"
                    | "BGPAdvertisement"
                    | "L2Advertisement"
                    | "PolicyPlugin"
                    | "BFDProfile"
            )
    );
    if read && header.name.is_empty() {
        return Err(invalid(
            "metadata.name is missing or empty (the API server requires a name)".into(),
        ));
    }
    match (header.api_version.as_str(), header.kind.as_str()) {
        ("v1", "Service") => {
            let svc: Service = typed(path, &header, doc, false)?;
            add_service(&mut out.snapshot, &svc).map_err(|e| invalid(field_message(&e)))?;
        }
        ("v1", "Node") => {
            let node: Node = typed(path, &header, doc, false)?;
            let node = validate_node(&node).map_err(|e| invalid(field_message(&e)))?;
            out.nodes.push(node);
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            let slice: EndpointSlice = typed(path, &header, doc, false)?;
            add_endpoint_slice(&slice, &mut out.endpoints);
        }
        ("v1", "Namespace") => {
            let ns: Namespace = typed(path, &header, doc, false)?;
            add_namespace(&mut out.snapshot, &ns);
        }
        (_, "List") if value.get("items").is_some_and(Value::is_sequence) => {
            let items = value
                .get("items")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten();
            for item in items {
                load_document(path, index, item.clone(), item, out)?;
            }
        }
        (API_VERSION, "IPPool") => {
            let pool: IPPool = typed(path, &header, doc, true)?;
            add_pool(&mut out.snapshot, &pool);
        }
        (API_VERSION, "IPAllocation") => {
            let record: IPAllocation = typed(path, &header, doc, true)?;
            if let Err(e) = add_allocation(&mut out.snapshot, &record) {
                out.errors.push(e);
            }
        }
        (API_VERSION, "BGPPeer") => {
            let peer: BGPPeer = typed(path, &header, doc, true)?;
            keep(peer.validate(), &mut out.bgp_peers, &mut out.errors);
        }
        (API_VERSION, "BFDProfile") => {
            let profile: BFDProfile = typed(path, &header, doc, true)?;
            if let Err(e) = add_bfd_profile(&mut out.bfd_profiles, &profile) {
                out.errors.push(e);
            }
        }
        (API_VERSION, "BGPAdvertisement") => {
            let adv: BGPAdvertisement = typed(path, &header, doc, true)?;
            keep(adv.validate(), &mut out.bgp_advertisements, &mut out.errors);
        }
        (API_VERSION, "L2Advertisement") => {
            let adv: L2Advertisement = typed(path, &header, doc, true)?;
            keep(adv.validate(), &mut out.l2_advertisements, &mut out.errors);
        }
        (API_VERSION, "PolicyPlugin") => {
            let plugin: PolicyPlugin = typed(path, &header, doc, true)?;
            match crate::inputs::plugin(&plugin) {
                Ok((name, mut spec)) => {
                    if let PluginSource::File(file) = &mut spec.source
                        && file.is_relative()
                    {
                        let dir = path.parent().unwrap_or(Path::new("."));
                        *file = dir.join(&*file);
                    }
                    out.plugins.push((name, spec));
                }
                Err(e) => out.errors.push(e),
            }
        }
        _ if herald => {
            return Err(invalid(format!(
                "Herald has no kind {:?} in {:?} (kinds of {API_VERSION}: IPPool, IPAllocation, BGPPeer, BGPAdvertisement, L2Advertisement, PolicyPlugin, BFDProfile)",
                header.kind, header.api_version
            )));
        }
        _ => out.notes.push(format!(
            "{}: {}: skipped ({} {} is not read by Herald)",
            path.display(),
            header.what,
            if header.api_version.is_empty() {
                "<no apiVersion>"
            } else {
                &header.api_version
            },
            if header.kind.is_empty() {
                "<no kind>"
            } else {
                &header.kind
            },
        )),
    }
    Ok(())
}

/// Deserializes a document into `T`, with the field path of a type error
/// and, for Herald's kinds (`strict`), every unknown field reported.
fn typed<'de, T, D>(path: &Path, header: &Header, doc: D, strict: bool) -> Result<T, LoadError>
where
    T: DeserializeOwned,
    D: Deserializer<'de, Error = serde_yaml_ng::Error>,
{
    let mut unknown = Vec::new();
    // kube's generated root types do not keep apiVersion and kind; the
    // dispatch above has already checked them.
    let mut note = |p: serde_ignored::Path<'_>| {
        let p = p.to_string();
        if p != "apiVersion" && p != "kind" {
            unknown.push(p);
        }
    };
    let result: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(doc, &mut note));
    match result {
        Err(e) => {
            let field = e.path().to_string();
            let inner = e.into_inner();
            // The YAML parser names the path itself when it knows it.
            let mut text = clean(&inner);
            if text.contains(OUT_OF_TIME) {
                text = format!(
                    "a time after {}, the latest Herald can represent (the API server accepts up to 9999-12-31T23:59:59Z)",
                    k8s_openapi::jiff::Timestamp::MAX.strftime("%Y-%m-%dT%H:%M:%SZ")
                );
            }
            let message = if field == "." || text.starts_with(&field) {
                text
            } else {
                format!("{field}: {text}")
            };
            Err(LoadError::Invalid {
                at: location(path, &inner),
                what: header.what.clone(),
                message,
            })
        }
        Ok(_) if strict && !unknown.is_empty() => Err(LoadError::Invalid {
            at: Location {
                path: path.to_owned(),
                line: None,
                column: None,
            },
            what: header.what.clone(),
            message: format!(
                "unknown field{} {} (is it spelled right, and under spec?)",
                if unknown.len() == 1 { "" } else { "s" },
                unknown.join(", ")
            ),
        }),
        Ok(value) => Ok(value),
    }
}

/// How jiff, the time type of k8s-openapi, says a valid RFC 3339 time is
/// outside its range (it ends a day before year 10000, where the API
/// server's ends).
const OUT_OF_TIME: &str = "failed to convert civil datetime to timestamp";

fn location(path: &Path, e: &serde_yaml_ng::Error) -> Location {
    let loc = e.location();
    Location {
        path: path.to_owned(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
    }
}

/// The parser's message without its own " at line L column C" suffix (the
/// location is printed in front).
fn clean(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn field_message(e: &FieldError) -> String {
    format!("{}: {}", e.field, e.message)
}

/// Keeps a valid object; reports an invalid one.
fn keep<T>(validated: Result<T, FieldError>, valid: &mut Vec<T>, errors: &mut Vec<ConfigError>) {
    match validated {
        Ok(v) => valid.push(v),
        Err(e) => errors.push(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Manifests, LoadError> {
        let mut out = Manifests::default();
        load_str(Path::new("dir/m.yaml"), text, &mut out).map(|()| out)
    }

    #[test]
    fn lists_empty_documents_and_other_kinds() {
        let m = load(
            "---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: a}\n",
        )
        .unwrap();
        assert_eq!(m.snapshot.namespaces.len(), 1);
        assert_eq!(m.notes.len(), 1);
        assert!(m.notes[0].contains("Deployment"), "{}", m.notes[0]);
    }

    #[test]
    fn unusable_herald_objects_are_reported_not_fatal() {
        let m = load(
            "apiVersion: herald.dev/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: bad}\nspec: {communities: [\"65536:1\"]}\n---\napiVersion: herald.dev/v1alpha1\nkind: IPAllocation\nmetadata: {name: x}\nspec: {address: nope, pool: p, services: []}\n",
        )
        .unwrap();
        assert!(m.bgp_advertisements.is_empty());
        let kinds: Vec<&str> = m.errors.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["BGPAdvertisement", "IPAllocation"]);
        assert!(
            m.errors[0].message.starts_with("spec.communities[0]"),
            "{:?}",
            m.errors[0]
        );
    }

    #[test]
    fn plugin_files_are_relative_to_their_manifest() {
        let m = load(&format!(
            "apiVersion: herald.dev/v1alpha1\nkind: PolicyPlugin\nmetadata: {{name: hash}}\nspec: {{world: allocator, sha256: \"{}\", source: {{file: plugins/hash.wasm}}}}\n",
            "ab".repeat(32)
        ))
        .unwrap();
        let (name, spec) = &m.plugins[0];
        assert_eq!(name, "hash");
        assert_eq!(
            spec.source,
            PluginSource::File(PathBuf::from("dir/plugins/hash.wasm"))
        );
    }

    #[test]
    fn an_integer_too_large_for_any_field_keeps_the_objects_name() {
        let err = load("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {type: LoadBalancer, ports: [{port: 18446744073709551616}]}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("dir/m.yaml:8:") && err.contains("document 2 (Service \"a/s\")"),
            "{err}"
        );
    }

    #[test]
    fn times_beyond_what_herald_represents_name_the_field() {
        let doc = |t: &str| {
            format!(
                "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: p, creationTimestamp: \"{t}\"}}\nspec: {{addresses: [198.51.100.0/24]}}\n"
            )
        };
        let m = load(&doc("9999-12-30T22:00:00Z")).unwrap();
        assert!(m.snapshot.pools[0].created.is_some());
        let err = load(&doc("9999-12-31T23:59:59Z")).unwrap_err().to_string();
        assert!(
            err.contains("IPPool \"p\"")
                && err.contains("metadata.creationTimestamp: a time after 9999-12-30T22:00:00Z"),
            "{err}"
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_dropped() {
        let m = load("\u{feff}apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n").unwrap();
        assert_eq!(m.snapshot.namespaces.len(), 1);
        // Only a leading one: elsewhere it is the parser's to judge.
        let err =
            load("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n\u{feff}x: [\n")
                .unwrap_err();
        assert!(err.to_string().contains("document 2"), "{err}");
    }

    #[test]
    fn objects_herald_reads_must_have_a_name() {
        for doc in [
            "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {}\nspec: {addresses: [198.51.100.0/24]}\n",
            "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: \"\"}\nspec: {addresses: [198.51.100.0/24]}\n",
            "apiVersion: v1\nkind: Service\nmetadata: {namespace: a}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n",
            "apiVersion: v1\nkind: Namespace\n",
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Node, metadata: {labels: {a: b}}}\n",
        ] {
            let err = load(doc).unwrap_err().to_string();
            assert!(
                err.starts_with("dir/m.yaml: document 1")
                    && err.contains("metadata.name is missing"),
                "{doc}: {err}"
            );
        }
        // Kinds Herald does not read are skipped, named or not.
        let m = load("apiVersion: apps/v1\nkind: Deployment\nmetadata: {}\n").unwrap();
        assert_eq!(m.notes.len(), 1);
    }

    #[test]
    fn special_and_oversized_files_are_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("herald-special-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // A socket: opening it fails rather than blocks, so a regression
        // cannot hang this test (the FIFO is tested through `herald plan`
        // with a timeout).
        let socket = dir.join("s.yaml");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let err = load_paths(&[&socket]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: is a socket, not a regular file or directory",
                socket.display()
            )
        );
        let err = load_paths(&[&dir]).unwrap_err();
        assert!(
            matches!(err, LoadError::NotAFile { ref path, .. } if *path == socket),
            "{err}"
        );
        let err = load_paths(&[Path::new("/dev/zero")]).unwrap_err();
        assert!(err.to_string().contains("a character device"), "{err}");
        fs::remove_file(&socket).unwrap();
        // Under a name that is not a manifest's, a directory walk skips it.
        let _listener = std::os::unix::net::UnixListener::bind(dir.join("s.sock")).unwrap();
        assert!(load_paths(&[&dir]).is_ok());

        let big = dir.join("big.yaml");
        let file = fs::File::create(&big).unwrap();
        // Sparse: no disk is used. Spaces would parse; the size is refused first.
        file.set_len(MAX_MANIFEST_BYTES + 1).unwrap();
        let err = load_paths(&[&big]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: larger than 64 MiB, the most Herald reads from one manifest file",
                big.display()
            )
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wrong_api_version_of_a_herald_kind_is_an_error() {
        let err =
            load("apiVersion: herald.dev/v1\nkind: IPPool\nmetadata: {name: p}\n").unwrap_err();
        assert!(err.to_string().contains("herald.dev/v1"), "{err}");
    }

    #[test]
    fn directories_are_read_recursively_in_order_skipping_hidden_and_other_files() {
        let dir = std::env::temp_dir().join(format!("herald-load-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::create_dir_all(dir.join(".git")).unwrap();
        let ns = |n: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n");
        fs::write(dir.join("sub/a.yml"), ns("a")).unwrap();
        fs::write(
            dir.join("b.json"),
            r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}"#,
        )
        .unwrap();
        fs::write(dir.join(".git/c.yaml"), ns("c")).unwrap();
        fs::write(dir.join("README.md"), "not: [yaml").unwrap();
        fs::write(dir.join("explicit.txt"), ns("d")).unwrap();
        let m = load_paths(&[dir.clone(), dir.join("explicit.txt")]).unwrap();
        let names: Vec<&String> = m.snapshot.namespaces.keys().collect();
        assert_eq!(names, ["a", "b", "d"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_peer_is_kept_only_when_its_bfd_profile_is_valid_whichever_file_comes_first() {
        let dir = std::env::temp_dir().join(format!("herald-bfd-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let peer = |name: &str, profile: &str| {
            format!(
                "apiVersion: herald.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {{peerAddress: 192.0.2.1, peerASN: 65001, myASN: 65010, bfdProfile: {profile}}}\n---\n"
            )
        };
        // The peers come before the profiles (file order).
        fs::write(
            dir.join("a-peers.yaml"),
            format!(
                "{}{}{}",
                peer("good", "fast"),
                peer("missing", "nowhere"),
                peer("broken", "echo")
            ),
        )
        .unwrap();
        fs::write(
            dir.join("b-profiles.yaml"),
            "apiVersion: herald.dev/v1alpha1\nkind: BFDProfile\nmetadata: {name: fast}\nspec: {receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}\n---\napiVersion: herald.dev/v1alpha1\nkind: BFDProfile\nmetadata: {name: echo}\nspec: {echoMode: true}\n",
        )
        .unwrap();
        let m = load_paths(&[&dir]).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let peers: Vec<(&str, Option<&str>)> = m
            .bgp_peers
            .iter()
            .map(|p| (p.name.as_str(), p.bfd_profile.as_deref()))
            .collect();
        assert_eq!(peers, [("good", Some("fast"))]);
        assert_eq!(m.bfd_profiles["fast"].receive_interval_ms, 100);
        let errors: Vec<String> = m
            .errors
            .iter()
            .map(|e| format!("{} {:?}: {}", e.kind, e.name, e.message))
            .collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("BFDProfile") && errors[0].contains("spec.echoMode"));
        assert!(
            errors[1].contains("\"missing\"")
                && errors[1].contains("no valid BFDProfile \"nowhere\""),
            "{errors:#?}"
        );
        assert!(errors[2].contains("\"broken\"") && errors[2].contains("\"echo\""));
    }

    #[test]
    fn a_bfd_profile_field_herald_lacks_is_named() {
        let e = load(
            "apiVersion: herald.dev/v1alpha1\nkind: BFDProfile\nmetadata: {name: p}\nspec: {receiveIntervall: 100}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("spec.receiveIntervall"), "{e}");
    }
}
