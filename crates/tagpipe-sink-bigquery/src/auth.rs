//! Building the BigQuery client with the configured credentials and endpoint.

use std::sync::Arc;

use gcp_bigquery_client::Client;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;

use crate::config::{AuthKind, BigQuerySinkConfig};

/// No credentials: emulators ignore the token.
#[derive(Clone)]
struct NoCredentials;

#[async_trait::async_trait]
impl Authenticator for NoCredentials {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok("no-credentials".to_owned())
    }
}

/// A client for `config`.
pub(crate) async fn client(config: &BigQuerySinkConfig) -> Result<Client, String> {
    let mut builder = ClientBuilder::new();
    if let Some(rest) = &config.endpoint.rest {
        builder.with_v2_base_url(rest.trim_end_matches('/').to_owned());
    }
    let built = match config.auth.kind {
        AuthKind::None => {
            builder
                .build_from_authenticator(Arc::new(NoCredentials))
                .await
        }
        AuthKind::ServiceAccountKey => {
            let path = config
                .auth
                .key_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            builder.build_from_service_account_key_file(&path).await
        }
        AuthKind::ApplicationDefault => builder.build_from_application_default_credentials().await,
    };
    built.map_err(|e| {
        format!(
            "cannot set up BigQuery credentials ({:?}): {e}",
            config.auth.kind
        )
    })
}
