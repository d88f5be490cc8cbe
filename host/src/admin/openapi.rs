//! The API's OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

use super::{dead, health, letters, pipelines, plugins, shadow};

/// The API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(
        info(title = "Sluice admin API", description = "Health, metrics, pipelines, plugins and dead letters of a Sluice daemon. Calls that change something or read data (dead letters, handler state, plugin paths) need `Authorization: Bearer $SLUICE_ADMIN_TOKEN`."),
        paths(
            plugins::list, plugins::show, plugins::deploy, plugins::reload,
            health::metrics, health::ready, pipelines::list, pipelines::show,
            pipelines::pause, pipelines::resume, letters::page, dead::replay, dead::purge,
            pipelines::state_key, shadow::attach, shadow::show, shadow::detach,
            shadow::promote, shadow::revert,
        ),
        modifiers(&BearerAuth)
    )]
    struct Doc;
    Doc::openapi()
}

/// Declares the bearer-token scheme.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
