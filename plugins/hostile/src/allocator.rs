//! An allocator: the wrong world for an announcer slot.

wit_bindgen::generate!({ world: "allocator", path: "../../wit" });

use exports::herald::policy::allocate::Guest;
use herald::policy::pools::Pool;
use herald::policy::types::{IpAddress, Service};

struct Component;

export!(Component);

impl Guest for Component {
    fn validate_config(_: String) -> Result<(), String> {
        Ok(())
    }

    fn choose(_: String, _: Service, pool: &Pool) -> Result<Option<IpAddress>, String> {
        Ok(pool.next_free_after(None))
    }
}
