//! The OpenAPI 3.1 document, generated from the handlers and the wire types. A copy is
//! checked in at `docs/openapi.json`; a test fails when the two differ.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, assets, fleet, jobs, runs, workers};

#[derive(OpenApi)]
#[openapi(
    info(title = "Flotilla", description = "Durable task queues with pull-based workers. Every error is `{\"error\":{\"code\",\"message\"}}`."),
    paths(
        jobs::enqueue, jobs::enqueue_batch, jobs::get, jobs::list, jobs::cancel, jobs::retry,
        runs::create, runs::get, runs::list,
        assets::upload, assets::get, assets::list, assets::output, assets::put_resource, assets::release,
        workers::register, workers::status, workers::poll, workers::heartbeat, workers::complete, workers::fail,
        workers::ack_batch,
        admin::queues, admin::queue, admin::configure, admin::pause, admin::resume, admin::workers, admin::dead, admin::replay,
        admin::purge,
        fleet::scaling, fleet::report, fleet::list,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "producers", description = "Enqueue and follow jobs (role producer)."),
        (name = "workers", description = "Register, long-poll, heartbeat and acknowledge (role worker)."),
        (name = "admin", description = "Queues, workers and dead letters (role admin)."),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document as pretty JSON.
pub fn json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
