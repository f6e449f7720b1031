//! AWS SDK clients: the standard credential chain and region resolution, an optional
//! endpoint override (local emulators, VPC endpoints), and one HTTPS client built on rustls.

use aws_config::{BehaviorVersion, Region, SdkConfig};
// The error types every SDK crate re-exports (the same types in each).
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

/// Where AWS calls go; every field is optional and falls back to the standard chain.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    /// Attempts per call, first included (emulators answer unimplemented calls with 500s,
    /// which would otherwise be retried for seconds).
    pub max_attempts: Option<u32>,
}

impl AwsSettings {
    /// The settings a config section names (`region`, `endpoint_url`, `profile`).
    pub fn from_config(
        region: &Option<String>,
        endpoint_url: &Option<String>,
        profile: &Option<String>,
    ) -> AwsSettings {
        AwsSettings {
            region: region.clone(),
            endpoint_url: endpoint_url.clone(),
            profile: profile.clone(),
            max_attempts: None,
        }
    }
}

/// The shared SDK configuration for `settings`.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint.clone());
    }
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    // The SDK sets no timeouts of its own: a call to a service that stops answering would
    // wait forever and stall the shard (or the batch) behind it.
    loader = loader.timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .operation_attempt_timeout(std::time::Duration::from_secs(60))
            .operation_timeout(std::time::Duration::from_secs(300))
            .build(),
    );
    if let Some(attempts) = settings.max_attempts {
        loader = loader.retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(attempts));
    }
    loader.load().await
}

/// What to do when the standard chain finds no credentials: it looks in this order.
const NO_CREDENTIALS: &str = "no AWS credentials found: tried the environment \
    (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), the shared files (~/.aws/credentials and \
    ~/.aws/config, profile AWS_PROFILE or `profile`), a web identity token \
    (AWS_WEB_IDENTITY_TOKEN_FILE), ECS container credentials and EC2 instance metadata; set \
    AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (or `profile` in the \
    configuration), or run with a role attached";

/// The credentials could not be loaded; the message names what was tried and what to set.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CredentialsError {
    message: String,
    #[source]
    source: Option<aws_credential_types::provider::error::CredentialsError>,
}

/// Loads credentials from `config`'s chain once, before the first call, so that their absence
/// is one line naming what was tried rather than a transport error after a metadata timeout.
pub async fn require_credentials(config: &SdkConfig) -> Result<(), CredentialsError> {
    use aws_credential_types::provider::error::CredentialsError as E;
    use aws_credential_types::provider::ProvideCredentials as _;
    let Some(provider) = config.credentials_provider() else {
        return Err(CredentialsError { message: NO_CREDENTIALS.into(), source: None });
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(e @ E::CredentialsNotLoaded(_)) => {
            Err(CredentialsError { message: NO_CREDENTIALS.into(), source: Some(e) })
        }
        Err(e) => {
            let mut message = format!("cannot load AWS credentials: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(&format!(": {s}"));
                source = s.source();
            }
            Err(CredentialsError { message, source: Some(e) })
        }
    }
}

/// An S3 client; path-style addressing when an endpoint is given (emulators and most
/// S3-compatible stores have no per-bucket host names).
pub fn s3_client(config: &SdkConfig, settings: &AwsSettings) -> aws_sdk_s3::Client {
    let s3 =
        aws_sdk_s3::config::Builder::from(config).force_path_style(settings.endpoint_url.is_some()).build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// An SDK error as one line: the service's code and message, or the transport's chain.
pub fn sdk_message<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(s) if s.err().code().is_some() => {
            let err = s.err();
            format!("{}: {}", err.code().unwrap_or("error"), err.message().unwrap_or(""))
        }
        // No error code: the response could not be read (the reason is in the source chain).
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}
