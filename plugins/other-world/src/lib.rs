//! A component built for another world (it exports `run`, not `handle`), for the tests
//! that check Sluice refuses it at load time.
//!
//! Build: `cargo build -p other-world --target wasm32-wasip2 --profile plugin`

wit_bindgen::generate!({ world: "other", path: "wit" });

struct Other;

impl Guest for Other {
    fn run() -> u32 {
        42
    }
}

export!(Other);
