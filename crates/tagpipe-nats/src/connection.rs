//! Connecting to NATS: one client per component, which connects in the background and keeps
//! reconnecting (to any of the listed servers) for as long as tagpipe runs; connection changes
//! are logged.

use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use tagpipe_core::{BoxError, ComponentId};

use crate::config::ConnectionConfig;

impl ConnectionConfig {
    /// A client for component `id`. Returns at once even when no server answers yet: the client
    /// connects as soon as it can, and publishes and fetches fail (and are retried) until then.
    pub(crate) async fn connect(&self, id: &ComponentId) -> Result<Client, BoxError> {
        self.client(id, true).await
    }

    /// A client that tries once and fails when no server answers (health checks): nothing keeps
    /// reconnecting in the background once the check has dropped it.
    pub(crate) async fn connect_once(&self, id: &ComponentId) -> Result<Client, BoxError> {
        self.client(id, false).await
    }

    async fn client(&self, id: &ComponentId, keep_trying: bool) -> Result<Client, BoxError> {
        let servers = self.servers()?;
        // TLS uses the process's rustls provider: ring, as everywhere in tagpipe (a no-op when
        // another component installed it first).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let component = id.to_string();
        let mut options = ConnectOptions::new()
            .name(format!("tagpipe {id}"))
            .connection_timeout(self.connect_timeout)
            .event_callback(move |event| {
                let component = component.clone();
                async move { log_event(&component, &event) }
            });
        if keep_trying {
            options = options.retry_on_initial_connect().max_reconnects(None);
        }
        if let Some(file) = &self.credentials_file {
            options = options
                .credentials_file(file)
                .await
                .map_err(|e| format!("credentials file {}: {e}", file.display()))?;
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.expose().to_owned());
        }
        if let Some(token) = &self.token {
            options = options.token(token.expose().to_owned());
        }
        if self.tls.required {
            options = options.require_tls(true);
        }
        if let Some(ca) = &self.tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls.cert_file, &self.tls.key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options.connect(servers).await?)
    }

    fn servers(&self) -> Result<Vec<ServerAddr>, BoxError> {
        self.urls
            .iter()
            .flat_map(|entry| crate::config::split_urls(entry))
            .map(|url| {
                url.parse::<ServerAddr>()
                    .map_err(|e| format!("`{url}` is not a NATS server URL: {e}").into())
            })
            .collect()
    }
}

fn log_event(component: &str, event: &Event) {
    match event {
        Event::Connected => tracing::info!(component, "connected to NATS"),
        Event::Disconnected => {
            tracing::warn!(component, "disconnected from NATS; reconnecting");
        }
        Event::ClientError(error) => {
            tracing::warn!(component, %error, "NATS unreachable; retrying");
        }
        other => tracing::debug!(component, event = %other, "NATS connection event"),
    }
}
