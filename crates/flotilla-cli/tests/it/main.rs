//! End-to-end tests of the `flotilla` binary: real server processes on loopback ports.

mod copy;
mod fleet;
mod media;
mod multi_server;
mod processes;
mod python_example;
mod secrets;
mod slow_clients;
mod support;
mod tls;
