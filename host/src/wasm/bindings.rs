//! Host bindings generated from the root `wit/` directory.

wasmtime::component::bindgen!({
    world: "handler",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
});

pub use self::sluice::plugin::host::Level;
