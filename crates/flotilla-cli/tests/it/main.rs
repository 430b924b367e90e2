//! End-to-end tests of the `flotilla` binary: real server processes on loopback ports.

mod bench;
mod cli_commands;
mod copy;
mod deploy;
mod fleet;
mod media;
mod models;
mod multi_server;
mod processes;
mod python_example;
mod secrets;
mod slow_clients;
mod supervisor;
mod support;
mod tls;
