//! The hostile announcers; the cargo feature picks the misbehaviour.

wit_bindgen::generate!({ world: "announcer", path: "../../wit" });

use exports::herald::policy::announce::{Choice, Guest, Query};

struct Component;

export!(Component);

fn choice(node: String) -> Choice {
    Choice {
        node,
        weight: 1,
        local_pref: None,
        med: None,
        communities: Vec::new(),
        large_communities: Vec::new(),
        as_path_prepend: None,
    }
}

impl Guest for Component {
    fn validate_config(_: String) -> Result<(), String> {
        Ok(())
    }

    #[allow(unreachable_code, unused_variables)]
    fn announce(_: String, q: Query) -> Result<Vec<Choice>, String> {
        #[cfg(feature = "infinite-loop")]
        {
            let mut i: u64 = 0;
            loop {
                i = std::hint::black_box(i.wrapping_add(1));
            }
        }
        #[cfg(feature = "memory-bomb")]
        {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(std::hint::black_box(vec![0xAB; 1 << 20]));
            }
        }
        #[cfg(feature = "trap")]
        panic!("hostile plugin panics on purpose");
        #[cfg(feature = "forbidden-import")]
        {
            let stolen = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
            return Ok(vec![choice(stolen)]);
        }
        #[cfg(feature = "huge-output")]
        return Ok((0..100_000)
            .map(|i| choice(format!("node-{i:058}")))
            .collect());
        // `unknown-node`, and the default.
        Ok(vec![choice("no-such-node".to_owned())])
    }
}
