//! `herald import metallb`: MetalLB's configuration files in, Herald's
//! objects out (one YAML file per kind, or a stream on stdout), and the
//! report of what was not carried over on stderr. The translation is
//! `herald_api::metallb`; this module only reads and writes files.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use herald_api::metallb::{self, Import};
use serde::Serialize;

use crate::{EXIT_INVALID_INPUT, EXIT_NOT_CARRIED_OVER};

/// `herald import`'s subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Translate MetalLB's configuration (metallb.io CRDs, or the legacy
    /// ConfigMap) into Herald objects.
    Metallb(Args),
}

/// Flags of `herald import metallb`.
#[derive(clap::Args)]
pub struct Args {
    /// MetalLB manifest files and directories (read recursively), as
    /// `kubectl get -o yaml` exports them.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Write one file per kind into this directory (ippools.yaml,
    /// bgppeers.yaml, bgpadvertisements.yaml, l2advertisements.yaml)
    /// instead of one stream on stdout.
    #[arg(long, value_name = "DIR", env = "HERALD_IMPORT_OUT")]
    out: Option<PathBuf>,
    /// Exit with 4 when any field could not be carried over.
    #[arg(long, env = "HERALD_IMPORT_STRICT")]
    strict: bool,
}

/// Runs `herald import`.
pub fn run(command: &Command) -> ExitCode {
    let Command::Metallb(args) = command;
    let files = match herald_api::load::read_paths(&args.paths) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("herald import metallb: {e}");
            return ExitCode::from(EXIT_INVALID_INPUT);
        }
    };
    let mut objects = Vec::new();
    for (path, text) in &files {
        match metallb::read(&path.display().to_string(), text) {
            Ok(read) => objects.extend(read),
            Err(e) => {
                eprintln!("herald import metallb: {e}");
                return ExitCode::from(EXIT_INVALID_INPUT);
            }
        }
    }
    let imported = match metallb::import(&objects) {
        Ok(imported) => imported,
        Err(e) => {
            eprintln!("herald import metallb: {e}");
            return ExitCode::from(EXIT_INVALID_INPUT);
        }
    };
    let written = match &args.out {
        Some(dir) => write_files(dir, &imported),
        None => {
            // A closed pipe (`… | head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(all_kinds(&imported).as_bytes());
            Ok(())
        }
    };
    if let Err(e) = written {
        eprintln!("herald import metallb: {e}");
        return ExitCode::FAILURE;
    }
    eprint!("{}", report(&imported));
    if args.strict && !imported.dropped.is_empty() {
        ExitCode::from(EXIT_NOT_CARRIED_OVER)
    } else {
        ExitCode::SUCCESS
    }
}

/// The report: what was not carried over, then notes, one line each.
pub fn report(imported: &Import) -> String {
    let mut out = String::new();
    for d in &imported.dropped {
        out.push_str(&format!("not carried over: {d}\n"));
    }
    for d in &imported.notes {
        out.push_str(&format!("note: {d}\n"));
    }
    out
}

fn documents<T: Serialize>(objects: &[T]) -> String {
    objects
        .iter()
        .map(|o| {
            let yaml = serde_yaml_ng::to_string(o).expect("a Herald object serializes");
            format!("---\n{yaml}")
        })
        .collect()
}

/// The output files, by name, with their text (empty for a kind with no
/// objects).
fn by_kind(imported: &Import) -> [(&'static str, String); 5] {
    [
        ("ippools.yaml", documents(&imported.pools)),
        ("bgppeers.yaml", documents(&imported.bgp_peers)),
        (
            "bgpadvertisements.yaml",
            documents(&imported.bgp_advertisements),
        ),
        (
            "l2advertisements.yaml",
            documents(&imported.l2_advertisements),
        ),
        ("bfdprofiles.yaml", documents(&imported.bfd_profiles)),
    ]
}

fn all_kinds(imported: &Import) -> String {
    by_kind(imported)
        .into_iter()
        .map(|(_, text)| text)
        .collect()
}

/// Writes one file per kind that has objects, and removes the file of a
/// kind that has none (left by an earlier import), so that `kubectl apply
/// -f DIR` applies exactly this import.
fn write_files(dir: &Path, imported: &Import) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let at = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{path}: {e}"))
    };
    for (name, text) in by_kind(imported) {
        let path = dir.join(name);
        if text.is_empty() {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(at(&path)(e)),
                _ => {}
            }
        } else {
            std::fs::write(&path, text).map_err(at(&path))?;
        }
    }
    Ok(())
}
