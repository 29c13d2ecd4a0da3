//! Fault scenarios with counted events, in their own test binary so that their load does not
//! compete with the end-to-end suite (cargo runs test binaries one after another).

// Shared with the end-to-end suite; not every helper is used here.
#[allow(dead_code)]
#[path = "../e2e/http_client.rs"]
mod http_client;
mod scenarios;
#[allow(dead_code)]
#[path = "../e2e/support.rs"]
mod support;
