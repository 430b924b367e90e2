//! The shared Store conformance suite, run against PostgreSQL: every case on a fresh
//! schema with two independent stores on it (see `common`).

mod common;

flotilla_store_tests::store_conformance!(crate::common::harness);
