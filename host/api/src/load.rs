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

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use herald_core::{ConfigError, Snapshot};
use k8s_openapi::api::core::v1::{Namespace, Service};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_yaml_ng::Value;

use crate::bgp::{BGPAdvertisement, BGPPeer};
use crate::l2::L2Advertisement;
use crate::plugin::PolicyPlugin;
use crate::pool::{IPAllocation, IPPool};
use crate::service::{namespace_labels, validate_service};
use crate::{API_VERSION, FieldError, GROUP};

/// Everything read from the manifests.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// What allocation needs: pools, Services, Namespaces, held addresses.
    pub snapshot: Snapshot,
    /// `BGPPeer` objects.
    pub bgp_peers: Vec<BGPPeer>,
    /// `BGPAdvertisement` objects.
    pub bgp_advertisements: Vec<BGPAdvertisement>,
    /// `L2Advertisement` objects.
    pub l2_advertisements: Vec<L2Advertisement>,
    /// `PolicyPlugin` objects, with the file each came from (plugin sources
    /// are relative to it).
    pub plugins: Vec<(PathBuf, PolicyPlugin)>,
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
        let text = fs::read_to_string(&file).map_err(|source| LoadError::Read {
            path: file.clone(),
            source,
        })?;
        load_str(&file, &text, &mut out)?;
    }
    Ok(out)
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
        if explicit || manifest {
            files.push(path.to_owned());
        }
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
            what,
        }
    }
}

/// Loads the documents of one file's text into `out`.
pub fn load_str(path: &Path, text: &str, out: &mut Manifests) -> Result<(), LoadError> {
    // Pass 1: parse every document to learn its kind (syntax errors carry
    // their line). Pass 2: deserialize each document again, straight from
    // the text, into its type, so type errors carry their line too.
    let mut values = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).map_err(|e| LoadError::Invalid {
            at: location(path, &e),
            what: format!("document {}", values.len() + 1),
            message: clean(&e),
        })?;
        values.push(value);
    }
    for (i, (doc, value)) in serde_yaml_ng::Deserializer::from_str(text)
        .zip(&values)
        .enumerate()
    {
        load_document(path, i + 1, doc, value, out)?;
    }
    Ok(())
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
    match (header.api_version.as_str(), header.kind.as_str()) {
        ("v1", "Service") => {
            let svc: Service = typed(path, &header, doc, false)?;
            let svc = validate_service(&svc).map_err(|e| invalid(field_message(&e)))?;
            out.snapshot.services.push(svc);
        }
        ("v1", "Namespace") => {
            let ns: Namespace = typed(path, &header, doc, false)?;
            let (name, labels) = namespace_labels(&ns);
            out.snapshot.namespaces.insert(name, labels);
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
            out.snapshot.pools.push(pool.validate());
        }
        (API_VERSION, "IPAllocation") => {
            let record: IPAllocation = typed(path, &header, doc, true)?;
            match record.validate() {
                Ok(held) => out.snapshot.allocations.push(held),
                Err(e) => out.errors.push(config_error(e)),
            }
        }
        (API_VERSION, "BGPPeer") => {
            let peer: BGPPeer = typed(path, &header, doc, true)?;
            if let Err(e) = peer.validate() {
                out.errors.push(config_error(e));
            }
            out.bgp_peers.push(peer);
        }
        (API_VERSION, "BGPAdvertisement") => {
            let adv: BGPAdvertisement = typed(path, &header, doc, true)?;
            if let Err(e) = adv.validate() {
                out.errors.push(config_error(e));
            }
            out.bgp_advertisements.push(adv);
        }
        (API_VERSION, "L2Advertisement") => {
            let adv: L2Advertisement = typed(path, &header, doc, true)?;
            if let Err(e) = adv.validate() {
                out.errors.push(config_error(e));
            }
            out.l2_advertisements.push(adv);
        }
        (API_VERSION, "PolicyPlugin") => {
            let plugin: PolicyPlugin = typed(path, &header, doc, true)?;
            if let Err(e) = plugin.validate() {
                out.errors.push(config_error(e));
            }
            out.plugins.push((path.to_owned(), plugin));
        }
        _ if herald => {
            return Err(invalid(format!(
                "Herald has no kind {:?} in {:?} (kinds of {API_VERSION}: IPPool, IPAllocation, BGPPeer, BGPAdvertisement, L2Advertisement, PolicyPlugin)",
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
            let text = clean(&inner);
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

fn config_error(e: FieldError) -> ConfigError {
    ConfigError {
        kind: e.kind.to_owned(),
        message: field_message(&e),
        name: e.name,
    }
}
