//! The `herald-cni` binary: reads the CNI variables and stdin, runs the
//! request, prints the reply or the CNI error object, exits with its code.
//! All logic is in the library (`herald_cni`).

use std::io::{Read, Write};

fn main() {
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("CNI_"))
        .collect();
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => herald_cni::protocol::invoke(&env, &stdin, herald_cni::run),
        Err(source) => herald_cni::protocol::Outcome::error(
            &herald_cni::Error::Io {
                what: "reading stdin".into(),
                source,
            },
            herald_cni::protocol::LATEST_VERSION,
        ),
    };
    // Nothing useful can be done if stdout is gone; the exit code still
    // tells the runtime.
    let _ = std::io::stdout().write_all(&outcome.stdout);
    std::process::exit(outcome.exit);
}
