//! S3 targets, through `flotilla-objects` with this crate's HTTP client (so the guarded resolver applies).

use flotilla_objects::{
    ACCESS_KEY_ID_VAR, ObjectsError, OpenOptions, S3Credentials, S3Location, SECRET_ACCESS_KEY_VAR,
    SESSION_TOKEN_VAR,
};

use crate::address::{check_literal_host, find_refusal};
use crate::config::S3Target;
use crate::distributor::Attempt;
use crate::secrets::SecretRef;
use crate::{DeliveryError, Receipt};

pub(crate) async fn deliver(
    attempt: &Attempt<'_>,
    target: &S3Target,
    client: &reqwest::Client,
) -> Result<Receipt, DeliveryError> {
    let errors = attempt.errors;
    let location =
        S3Location::parse(&target.url).map_err(|e| errors.invalid_config(e.to_string()))?;
    let (host, _port) = location.service_host();
    check_literal_host(errors, &host, target.allow_private).await?;
    let options = OpenOptions {
        credentials: Some(credentials(attempt, target)?),
        http_client: Some(client.clone()),
        max_retries: 0,
    };
    let objects =
        flotilla_objects::Objects::s3(&location, options).map_err(|e| objects_error(attempt, e))?;
    let key = &attempt.name;
    let put = objects
        .put_file(key, &attempt.delivery.file)
        .await
        .map_err(|e| objects_error(attempt, e))?;
    let head = objects
        .head(key)
        .await
        .map_err(|e| objects_error(attempt, e))?;
    verify(attempt, put.sha256.as_deref(), head.size)?;
    let mut verified = vec!["size", "sha256"];
    if head.e_tag.is_some() && head.e_tag == put.e_tag {
        verified.push("etag");
    }
    Ok(attempt.receipt(object_url(&location, key.as_str()), &verified))
}

/// The bytes sent must hash to the delivery's sha256 (S3 checks each request's signed payload hash), and
/// the stored object must have the delivery's size.
fn verify(
    attempt: &Attempt<'_>,
    sent_sha256: Option<&str>,
    stored_size: u64,
) -> Result<(), DeliveryError> {
    let delivery = attempt.delivery;
    if !sent_sha256.is_some_and(|sha| sha.eq_ignore_ascii_case(&delivery.sha256)) {
        return Err(attempt.errors.mismatch(format!(
            "the source read as sha256 {}, the delivery says {}",
            sent_sha256.unwrap_or("unknown"),
            delivery.sha256
        )));
    }
    if stored_size != delivery.size {
        return Err(attempt.errors.mismatch(format!(
            "stored object is {stored_size} bytes, sent {}",
            delivery.size
        )));
    }
    Ok(())
}

fn credentials(attempt: &Attempt<'_>, target: &S3Target) -> Result<S3Credentials, DeliveryError> {
    let resolve = |configured: &Option<SecretRef>, default: &str| {
        let reference = configured
            .clone()
            .unwrap_or_else(|| SecretRef::named(default));
        reference
            .resolve(attempt.secrets)
            .map(|secret| secret.expose().to_owned())
            .ok_or_else(|| attempt.errors.missing_secret(reference.variable()))
    };
    Ok(S3Credentials {
        access_key_id: resolve(&target.access_key_id, ACCESS_KEY_ID_VAR)?,
        secret_access_key: resolve(&target.secret_access_key, SECRET_ACCESS_KEY_VAR)?,
        session_token: resolve(&None, SESSION_TOKEN_VAR).ok(),
    })
}

fn objects_error(attempt: &Attempt<'_>, error: ObjectsError) -> DeliveryError {
    let errors = attempt.errors;
    if let Some(refused) = find_refusal(&error) {
        return errors.private(refused);
    }
    match error.code() {
        "unavailable" => errors.unavailable(error.to_string(), Some(Box::new(error))),
        "invalid_config" | "invalid_key" => errors.invalid_config(error.to_string()),
        "io" => errors.io("reading the source", std::io::Error::other(error)),
        _ => errors.rejected(error.to_string()),
    }
}

fn object_url(location: &S3Location, key: &str) -> String {
    if location.prefix.is_empty() {
        format!("s3://{}/{key}", location.bucket)
    } else {
        format!("s3://{}/{}/{key}", location.bucket, location.prefix)
    }
}
