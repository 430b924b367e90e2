//! flotilla-distribute integration tests, against real servers on loopback started by the tests.

// Files to deliver, the axum HTTP receiver and the pyftpdlib FTP server.
mod support;
// Parsing and validating target configuration.
mod config;
// Directory targets.
mod dir;
// HTTP targets: headers, retryable and non-retryable answers, checksum reports.
mod http;
// S3 targets on a moto server.
mod s3;
// FTP targets on a pyftpdlib server.
mod ftp;
// Private addresses refused unless allowed, for every network target.
mod private;
// Secret values never shown.
mod secrets;
