//! Host bindings generated from the root `wit/` directory: the `stateful-handler` world,
//! which includes `handler`, so that one linker serves both kinds of component.

wasmtime::component::bindgen!({
    world: "stateful-handler",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
});

pub use self::sluice::plugin::host::Level;
pub use self::sluice::plugin::state::StateError as WitStateError;
/// The generated world type, under the name the rest of the module uses.
pub use StatefulHandler as Handler;
pub use StatefulHandlerPre as HandlerPre;
