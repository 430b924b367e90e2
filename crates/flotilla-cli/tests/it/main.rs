//! End-to-end tests of the `flotilla` binary: real server processes on loopback ports.

mod processes;
mod python_example;
mod support;
mod tls;
