//! The transport: gRPC calls whose answers are checked as far as they can be without history.

use futures::{Stream, StreamExt};
use kt_core::checkpoint::{CheckpointOpener, SignedCheckpoint};
use kt_core::entry::Record;
use kt_core::hash::Hash;
use kt_core::note::NoteVerifier;
use kt_proto::v1::log_client::LogClient as RpcClient;
use kt_proto::v1::witnessing_client::WitnessingClient;
use kt_proto::v1::{
    AddCosignatureRequest, AppendRequest, GetCheckpointBodiesRequest, GetCheckpointRequest,
    GetConsistencyProofRequest, GetEntriesRequest, GetInclusionProofRequest,
    WatchCheckpointsRequest,
};
use kt_proto::{checkpoint_note, hashes_from_wire, AppendReceipt};
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::ClientError;

/// Where `kt` connects when no server is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// Largest gRPC message accepted from the server.
pub(crate) const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// TLS options of a connection to an `https://` server (`kt --tls-ca/--tls-cert/--tls-key`).
///
/// Without a CA file the system's roots are trusted; with one, only the CA(s) in it (a private
/// CA is then the only one that can vouch for the server). A client certificate and key are sent
/// when the server asks (the identity provider's mTLS).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM CA certificate(s) to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// A PEM certificate chain and its PEM key.
type CertAndKey = (Vec<u8>, Vec<u8>);

impl TlsOptions {
    /// Whether any option is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    fn read(what: &str, path: &Path) -> Result<Vec<u8>, ClientError> {
        std::fs::read(path).map_err(|e| ClientError::Tls(format!("{what} {}: {e}", path.display())))
    }

    fn ca_pem(&self) -> Result<Option<Vec<u8>>, ClientError> {
        self.ca_file
            .as_deref()
            .map(|p| Self::read("CA file", p))
            .transpose()
    }

    /// The client certificate and key (PEM), both or neither.
    fn identity_pem(&self) -> Result<Option<CertAndKey>, ClientError> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some((
                Self::read("client certificate", cert)?,
                Self::read("client key", key)?,
            ))),
            (None, None) => Ok(None),
            _ => Err(ClientError::Tls(
                "a client certificate needs its key, and a key its certificate".into(),
            )),
        }
    }

    /// The TLS configuration for `server`: `None` for `http://` (where no option may be set).
    fn grpc(&self, server: &str) -> Result<Option<ClientTlsConfig>, ClientError> {
        if !server.starts_with("https://") {
            if !self.is_empty() {
                return Err(ClientError::Tls(format!(
                    "TLS options need an https:// server, not {server:?}"
                )));
            }
            return Ok(None);
        }
        // tonic's rustls configurations take the process's default provider: make it the same
        // ring provider the server uses, whatever other crates enable.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mut config = ClientTlsConfig::new();
        config = match self.ca_pem()? {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = self.identity_pem()? {
            config = config.identity(Identity::from_pem(cert, key));
        }
        Ok(Some(config))
    }

    /// An HTTP client (tiles, `https://` URLs) that trusts what these options trust and presents
    /// their client certificate.
    pub fn http_client(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::Client, ClientError> {
        let mut builder = builder;
        if let Some(ca) = self.ca_pem()? {
            let certs = reqwest::Certificate::from_pem_bundle(&ca)
                .map_err(|e| ClientError::Tls(format!("CA file: {e}")))?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = self.identity_pem()? {
            let identity = reqwest::Identity::from_pem(&[key, cert].concat())
                .map_err(|e| ClientError::Tls(format!("client certificate: {e}")))?;
            builder = builder.identity(identity);
        }
        builder
            .build()
            .map_err(|e| ClientError::Tls(format!("HTTP client: {e}")))
    }
}

/// The log's gRPC API with per-answer checks.
#[derive(Debug, Clone)]
pub struct LogApi {
    rpc: RpcClient<Channel>,
    channel: Channel,
    /// Every answer of an epoch carries the same checkpoint note: it is verified once.
    checkpoints: CheckpointOpener,
}

impl LogApi {
    /// Connects to `server` (e.g. `http://127.0.0.1:50051`) for the log whose note verifier key
    /// is `log_key`; the key's name is the log's origin.
    pub async fn connect(server: &str, log_key: &str) -> Result<Self, ClientError> {
        Self::connect_tls(server, log_key, &TlsOptions::default()).await
    }

    /// [`LogApi::connect`] with TLS options; an `https://` server is reached over TLS.
    pub async fn connect_tls(
        server: &str,
        log_key: &str,
        tls: &TlsOptions,
    ) -> Result<Self, ClientError> {
        let verifier = NoteVerifier::parse(log_key.trim())?;
        let connect_err = |reason: String| ClientError::Connect {
            server: server.to_owned(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(server.to_owned())
            .map_err(|e| connect_err(e.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(10));
        if let Some(config) = tls.grpc(server)? {
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| ClientError::Tls(error_chain(&e)))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            let reason = error_chain(&e);
            // A refused certificate is its own answer; anything else may be a wrong address.
            if reason.contains("certificate") {
                connect_err(reason)
            } else {
                connect_err(format!("{reason}: is ktd running there?"))
            }
        })?;
        let rpc = RpcClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        Ok(LogApi {
            rpc,
            channel,
            checkpoints: CheckpointOpener::new(verifier.name().as_str().to_owned(), verifier),
        })
    }

    /// The connection, for the other services of the same server (directory, messages).
    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The log's verifier key.
    pub fn verifier(&self) -> &NoteVerifier {
        self.checkpoints.verifier()
    }

    /// The log's origin (the verifier key's name).
    pub fn origin(&self) -> &str {
        self.checkpoints.origin()
    }

    /// Opens a checkpoint note: the log's signature and origin must verify.
    pub fn open(&self, note: &[u8]) -> Result<SignedCheckpoint, ClientError> {
        Ok(self.checkpoints.open(note)?)
    }

    /// The latest checkpoint, or the one of `epoch`, signature-checked.
    pub async fn checkpoint(&self, epoch: Option<u64>) -> Result<SignedCheckpoint, ClientError> {
        let resp = self
            .rpc
            .clone()
            .get_checkpoint(GetCheckpointRequest { epoch })
            .await?
            .into_inner();
        let cp = self.open(&checkpoint_note(resp)?)?;
        if let Some(epoch) = epoch {
            if cp.checkpoint().epoch != epoch {
                return Err(ClientError::Unexpected(format!(
                    "asked for the checkpoint of epoch {epoch}, got epoch {}",
                    cp.checkpoint().epoch
                )));
            }
        }
        Ok(cp)
    }

    /// The checkpoint bodies of epochs `from..=to`, oldest first, in as many calls as the server's
    /// page size needs. Checked here: the count, and that each is UTF-8; that they link is
    /// `kt_core::trust::verify_chain`'s to check.
    pub async fn checkpoint_bodies(&self, from: u64, to: u64) -> Result<Vec<String>, ClientError> {
        let want = to.checked_sub(from).map_or(0, |n| n + 1);
        let mut out = Vec::with_capacity(want.min(1 << 20) as usize);
        while (out.len() as u64) < want {
            let from_epoch = from + out.len() as u64;
            let page = self
                .rpc
                .clone()
                .get_checkpoint_bodies(GetCheckpointBodiesRequest {
                    from_epoch,
                    to_epoch: to,
                })
                .await?
                .into_inner()
                .bodies;
            let left = want - out.len() as u64;
            if page.is_empty() || page.len() as u64 > left {
                return Err(ClientError::Unexpected(format!(
                    "asked for the {left} checkpoint bodies of epochs {from_epoch}..={to}, got {}",
                    page.len()
                )));
            }
            for (i, body) in page.into_iter().enumerate() {
                out.push(String::from_utf8(body).map_err(|_| {
                    ClientError::Unexpected(format!(
                        "the checkpoint body of epoch {} is not UTF-8",
                        from_epoch + i as u64
                    ))
                })?);
            }
        }
        Ok(out)
    }

    /// Appends a message-log record; the receipt is returned unverified (see
    /// `LogClient::append`).
    pub async fn append(&self, record: &Record) -> Result<AppendReceipt, ClientError> {
        let resp = self
            .rpc
            .clone()
            .append(AppendRequest::from(record))
            .await?
            .into_inner();
        Ok(AppendReceipt::try_from(resp)?)
    }

    /// Inclusion proof hashes (to be verified by the caller against a root it trusts).
    pub async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, ClientError> {
        let resp = self
            .rpc
            .clone()
            .get_inclusion_proof(GetInclusionProofRequest { index, tree_size })
            .await?
            .into_inner();
        Ok(hashes_from_wire("hashes", &resp.hashes)?)
    }

    /// Consistency proof hashes (to be verified by the caller).
    pub async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, ClientError> {
        let resp = self
            .rpc
            .clone()
            .get_consistency_proof(GetConsistencyProofRequest { old_size, new_size })
            .await?
            .into_inner();
        Ok(hashes_from_wire("hashes", &resp.hashes)?)
    }

    /// The entries in `[start, end)` (at most 10,000), checked to be exactly that range in order.
    /// Their bytes are verified by whoever hashes them against a root.
    pub async fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, ClientError> {
        let mut stream = self
            .rpc
            .clone()
            .get_entries(GetEntriesRequest { start, end })
            .await?
            .into_inner();
        let want = (end - start) as usize;
        let mut out = Vec::with_capacity(want);
        while let Some(entry) = stream.message().await? {
            let expected = start + out.len() as u64;
            if entry.index != expected || out.len() == want {
                return Err(ClientError::Unexpected(format!(
                    "asked for entries [{start}, {end}), got entry {} where {expected} was due",
                    entry.index
                )));
            }
            out.push(entry.data);
        }
        if out.len() != want {
            return Err(ClientError::WrongEntryCount {
                got: out.len(),
                want,
            });
        }
        Ok(out)
    }

    /// Submits a witness cosignature line (without its final newline) over the checkpoint of
    /// `epoch` (the `Witnessing` service).
    pub async fn add_cosignature(&self, epoch: u64, line: String) -> Result<(), ClientError> {
        WitnessingClient::new(self.channel.clone())
            .add_cosignature(AddCosignatureRequest {
                epoch,
                cosignature: line,
            })
            .await?;
        Ok(())
    }

    /// Every checkpoint after `after_epoch` (or from the latest), then each new one, each
    /// signature-checked. Chain and consistency checks are the caller's.
    pub async fn watch(
        &self,
        after_epoch: Option<u64>,
    ) -> Result<impl Stream<Item = Result<SignedCheckpoint, ClientError>> + use<>, ClientError>
    {
        let stream = self
            .rpc
            .clone()
            .watch_checkpoints(WatchCheckpointsRequest { after_epoch })
            .await?
            .into_inner();
        let api = self.clone();
        Ok(stream.map(move |item| api.open(&item?.note)))
    }
}

/// An error with its causes: tonic's transport errors say only "transport error" themselves,
/// and the reason (refused connection, unknown CA, bad certificate) is in their sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
