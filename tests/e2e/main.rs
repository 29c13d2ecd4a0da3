//! End-to-end tests: the real `tagpipe` binary, real files, real HTTP.

mod bigquery;
mod cli;
mod http;
mod http_client;
mod metrics;
mod nats;
mod processors;
mod reference;
mod reload;
mod secrets;
mod spotify_delivery;
mod spotify_vectors;
mod support;
mod throughput;
