//! FTP targets: passive mode, binary type, upload to a temporary name, rename, then check with `SIZE`.
//!
//! The control connection goes to an address that was checked; data connections go to that same address
//! (suppaftp's NAT workaround ignores the address in the `PASV` reply), so a server cannot steer the data
//! connection elsewhere.
//!
//! Logging: suppaftp logs every control command at `trace` level under the `suppaftp` target, `PASS` included.
//! Applications must keep that target below `trace` (e.g. `RUST_LOG=…,suppaftp=info`).

use std::net::SocketAddr;
use std::pin::Pin;

use suppaftp::tokio::AsyncFtpStream;
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpResult, Mode};
use tokio::net::TcpStream;

use crate::address::resolve_for_target;
use crate::config::{FtpEndpoint, FtpTarget};
use crate::distributor::{Attempt, CONNECT_TIMEOUT, transfer_timeout};
use crate::secrets::{Secret, scrub};
use crate::{DeliveryError, Receipt};

/// Password sent for anonymous logins.
const ANONYMOUS_PASSWORD: &str = "flotilla@";

pub(crate) async fn deliver(
    attempt: &Attempt<'_>,
    target: &FtpTarget,
) -> Result<Receipt, DeliveryError> {
    let errors = attempt.errors;
    let endpoint = target.endpoint().map_err(|e| errors.invalid_config(e))?;
    let password = match &target.password {
        Some(reference) => Some(
            reference
                .resolve(attempt.secrets)
                .ok_or_else(|| errors.missing_secret(reference.variable()))?,
        ),
        None => None,
    };
    let addrs =
        resolve_for_target(errors, &endpoint.host, endpoint.port, target.allow_private).await?;
    let session = Session {
        attempt,
        endpoint: &endpoint,
        password: password.as_ref(),
    };
    let budget = transfer_timeout(attempt.delivery.size);
    let verified = match tokio::time::timeout(budget, session.run(&addrs)).await {
        Ok(result) => result?,
        Err(_) => return Err(errors.unavailable(format!("FTP transfer exceeded {budget:?}"), None)),
    };
    Ok(attempt.receipt(location(&endpoint, attempt.name.as_str()), verified))
}

/// One FTP session for one delivery.
struct Session<'a> {
    attempt: &'a Attempt<'a>,
    endpoint: &'a FtpEndpoint,
    password: Option<&'a Secret>,
}

impl Session<'_> {
    async fn run(&self, addrs: &[SocketAddr]) -> Result<&'static [&'static str], DeliveryError> {
        let mut ftp = self.connect(addrs).await?;
        let result = self.upload(&mut ftp).await;
        let _ = ftp.quit().await;
        result
    }

    async fn connect(&self, addrs: &[SocketAddr]) -> Result<AsyncFtpStream, DeliveryError> {
        let mut last_error = None;
        for addr in addrs {
            match AsyncFtpStream::connect_timeout(*addr, CONNECT_TIMEOUT).await {
                Ok(ftp) => return self.prepare(ftp, *addr).await,
                Err(e) => last_error = Some(e),
            }
        }
        Err(self.ftp_error("connecting", last_error.unwrap_or(FtpError::BadResponse)))
    }

    /// Logs in, selects binary type and passive mode with data connections pinned to the control address.
    async fn prepare(
        &self,
        ftp: AsyncFtpStream,
        control: SocketAddr,
    ) -> Result<AsyncFtpStream, DeliveryError> {
        let mut ftp = ftp
            .passive_stream_builder(move |data: SocketAddr| pinned_data_connection(control, data));
        ftp.set_mode(Mode::Passive);
        ftp.set_passive_nat_workaround(true);
        let password = self.password.map_or(ANONYMOUS_PASSWORD, Secret::expose);
        ftp.login(self.endpoint.user.as_str(), password)
            .await
            .map_err(|e| self.ftp_error("logging in", e))?;
        ftp.transfer_type(FileType::Binary)
            .await
            .map_err(|e| self.ftp_error("selecting binary mode", e))?;
        Ok(ftp)
    }

    async fn upload(
        &self,
        ftp: &mut AsyncFtpStream,
    ) -> Result<&'static [&'static str], DeliveryError> {
        let delivery = self.attempt.delivery;
        let name = self.attempt.name.as_str();
        let (folders, file_name) = match name.rsplit_once('/') {
            Some((folders, file_name)) => (folders.split('/').collect(), file_name),
            None => (Vec::new(), name),
        };
        for folder in self.endpoint.dir.iter().map(String::as_str).chain(folders) {
            self.enter_folder(ftp, folder).await?;
        }
        let temp_name = format!(".{file_name}.{:016x}.part", rand::random::<u64>());
        let mut source = tokio::fs::File::open(&delivery.file)
            .await
            .map_err(|e| self.attempt.errors.io("opening the source", e))?;
        let sent = match ftp.put_file(temp_name.as_str(), &mut source).await {
            Ok(sent) => sent,
            Err(e) => {
                let _ = ftp.rm(temp_name.as_str()).await;
                return Err(self.ftp_error("uploading", e));
            }
        };
        self.rename_into_place(ftp, &temp_name, file_name).await?;
        self.verify_size(ftp, file_name, sent).await
    }

    /// `CWD` into a folder, creating it first if needed.
    async fn enter_folder(
        &self,
        ftp: &mut AsyncFtpStream,
        folder: &str,
    ) -> Result<(), DeliveryError> {
        if ftp.cwd(folder).await.is_ok() {
            return Ok(());
        }
        let _ = ftp.mkdir(folder).await;
        ftp.cwd(folder)
            .await
            .map_err(|e| self.ftp_error("entering the target folder", e))
    }

    /// Renames the upload over the final name; servers that refuse to overwrite get the old file deleted first.
    async fn rename_into_place(
        &self,
        ftp: &mut AsyncFtpStream,
        temp_name: &str,
        file_name: &str,
    ) -> Result<(), DeliveryError> {
        if ftp.rename(temp_name, file_name).await.is_ok() {
            return Ok(());
        }
        let _ = ftp.rm(file_name).await;
        if let Err(e) = ftp.rename(temp_name, file_name).await {
            let _ = ftp.rm(temp_name).await;
            return Err(self.ftp_error("renaming the upload into place", e));
        }
        Ok(())
    }

    async fn verify_size(
        &self,
        ftp: &mut AsyncFtpStream,
        file_name: &str,
        sent: u64,
    ) -> Result<&'static [&'static str], DeliveryError> {
        let expected = self.attempt.delivery.size;
        let errors = self.attempt.errors;
        if sent != expected {
            return Err(errors.mismatch(format!("sent {sent} bytes, the delivery is {expected}")));
        }
        match ftp.size(file_name).await {
            Ok(stored) if stored as u64 == expected => Ok(&["size"]),
            Ok(stored) => {
                Err(errors.mismatch(format!("server reports {stored} bytes, sent {expected}")))
            }
            Err(FtpError::UnexpectedResponse(response)) if response.status.code() >= 500 => {
                tracing::warn!(
                    target_name = self.attempt.target,
                    "FTP server does not support SIZE; size unverified"
                );
                Ok(&[])
            }
            Err(e) => Err(self.ftp_error("checking the size", e)),
        }
    }

    /// Maps an FTP error: 4xx replies and connection trouble are retryable, 5xx replies are rejections.
    fn ftp_error(&self, step: &str, error: FtpError) -> DeliveryError {
        let errors = self.attempt.errors;
        let secrets: Vec<Secret> = self.password.cloned().into_iter().collect();
        match error {
            FtpError::UnexpectedResponse(response) => {
                let code = response.status.code();
                let text = scrub(String::from_utf8_lossy(&response.body).trim(), &secrets);
                let detail = format!(
                    "{step}: FTP {code} {}",
                    text.chars().take(200).collect::<String>()
                );
                if (400..500).contains(&code) {
                    errors.unavailable(detail, None)
                } else {
                    errors.rejected(detail)
                }
            }
            FtpError::ConnectionError(e) => {
                errors.unavailable(format!("{step}: {e}"), Some(Box::new(e)))
            }
            other => errors.unavailable(format!("{step}: {other}"), None),
        }
    }
}

/// Opens a passive data connection, only to the control connection's IP, within the connect timeout.
fn pinned_data_connection(
    control: SocketAddr,
    data: SocketAddr,
) -> Pin<Box<dyn Future<Output = FtpResult<TcpStream>> + Send + Sync>> {
    Box::pin(async move {
        if data.ip() != control.ip() {
            let refused = std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "data connection to {} refused (control is {})",
                    data.ip(),
                    control.ip()
                ),
            );
            return Err(FtpError::ConnectionError(refused));
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(data)).await {
            Ok(stream) => stream.map_err(FtpError::ConnectionError),
            Err(_) => Err(FtpError::ConnectionError(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "data connection timed out",
            ))),
        }
    })
}

fn location(endpoint: &FtpEndpoint, name: &str) -> String {
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host)
    } else {
        endpoint.host.clone()
    };
    let mut path: Vec<&str> = endpoint.dir.iter().map(String::as_str).collect();
    path.push(name);
    format!("ftp://{host}:{}/{}", endpoint.port, path.join("/"))
}
