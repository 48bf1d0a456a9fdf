//! `ktd`, the KeyTrail server: the gRPC log service, the single-writer sequencer, RocksDB storage
//! and the read-only tlog-tiles HTTP endpoint. `main.rs` only parses flags and calls [`start`], so
//! tests run the real server on `127.0.0.1:0`.

pub mod config;
pub mod directory_epoch;
pub mod directory_service;
pub mod directory_store;
pub mod error;
pub mod http;
pub mod keys;
pub mod limits;
pub mod sequencer;
pub mod service;
pub mod startup;
pub mod storage;
pub mod tls;
pub mod vrf_labels;
pub mod witnessing;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kt_core::note::NoteSigner;
use kt_proto::v1::directory_server::DirectoryServer;
use kt_proto::v1::log_server::LogServer;
use kt_proto::v1::messages_server::MessagesServer;
use kt_proto::v1::witnessing_server::WitnessingServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::{Config, KeySource, ProviderTokenSource};
use crate::directory_service::{DirectoryService, ProviderToken};
use crate::sequencer::Sequencer;
use crate::service::LogService;
use crate::storage::Storage;
use crate::witnessing::WitnessingService;

/// Largest gRPC message the server accepts or sends.
pub const MAX_GRPC_MESSAGE: usize = 256 * 1024;
/// Largest gRPC answer: a history of up to `MAX_HISTORY_VERSIONS` versions or a page of messages
/// with their proofs. Clients accept answers up to this size (`kt-client`'s `MAX_MESSAGE`).
pub const MAX_GRPC_ANSWER: usize = 4 * 1024 * 1024;

/// A started server. Drop does not stop it; call [`RunningServer::shutdown`].
#[derive(Debug)]
pub struct RunningServer {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub verifier_key: String,
    /// The VRF public key, 64 hex digits (what `<data_dir>/vrf.pub` holds).
    pub vrf_public_key: String,
    pub origin: String,
    storage: Arc<Storage>,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sequencer_shutdown: Arc<AtomicBool>,
    sequencer: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// The storage the server runs on (tests inspect it).
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Stops accepting connections, lets the sequencer finish its current epoch (every queued
    /// append is sequenced and answered), then waits for the servers to drain.
    pub async fn shutdown(mut self) {
        self.sequencer_shutdown.store(true, Ordering::SeqCst);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.sequencer.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                tracing::warn!("a listener did not drain within 10 s");
            }
        }
        // Tasks that outlive their request (a watch stream noticing that the log closed) still
        // hold the storage for a moment: wait for them, so that the database is closed (and
        // its lock released) when this returns.
        for _ in 0..500 {
            if Arc::strong_count(&self.storage) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn load_or_create_key(config: &Config) -> anyhow::Result<NoteSigner> {
    Ok(match &config.key {
        KeySource::File(path) => keys::load(path, &config.origin)?,
        KeySource::GenerateAt(path) => {
            let signer = keys::generate(path, &config.origin)?;
            tracing::info!(
                key_file = %path.display(),
                verifier_key = %signer.verifier(),
                "generated a new signing key for a new log"
            );
            signer
        }
    })
}

/// Checks that the database belongs to this origin, log key and VRF key, recording them in a new
/// database.
fn check_identity(
    storage: &Storage,
    origin: &str,
    verifier_key: &str,
    vrf_public_key: &str,
) -> anyhow::Result<()> {
    for (field, want) in [
        ("origin", origin),
        ("verifier_key", verifier_key),
        ("vrf_public_key", vrf_public_key),
    ] {
        match storage.meta(field)? {
            Some(found) if found != want => anyhow::bail!(
                "the log in this data directory has {field} {found:?}, but the configuration gives {want:?}"
            ),
            Some(_) => {}
            None => storage.set_meta(field, want)?,
        }
    }
    Ok(())
}

/// Opens storage, verifies it, and starts the sequencer and both listeners.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    // Bind first, so a busy port fails before anything is written (the config is already valid).
    let grpc_listener = TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC address {}", config.grpc_addr))?;
    let http_listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding HTTP address {}", config.http_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let signer = load_or_create_key(&config)?;
    let verifier = signer.verifier();
    let log_key = verifier.clone();
    let verifier_key = verifier.to_string();
    let storage = Arc::new(
        Storage::open_with(&config.data_dir, config.storage_memory)
            .with_context(|| format!("opening storage in {}", config.data_dir.display()))?,
    );
    let vrf = Arc::new(vrf_labels::load_or_create(&config.vrf_key)?);
    let vrf_public_key = hex::encode(vrf.public().as_bytes());
    check_identity(&storage, &config.origin, &verifier_key, &vrf_public_key)?;
    let recovered = {
        let storage = storage.clone();
        let (origin, check) = (config.origin.clone(), config.startup_check);
        tokio::task::spawn_blocking(move || startup::recover(&storage, &origin, &verifier, check))
            .await??
    };
    let (sequencer, latest) = Sequencer::new(
        storage.clone(),
        signer,
        recovered.frontier,
        recovered.latest,
    )?;
    {
        let cp = latest.borrow();
        tracing::info!(
            epoch = cp.checkpoint().epoch,
            size = cp.checkpoint().size,
            "storage verified against the last signed checkpoint"
        );
    }
    // The latest checkpoint is published with the cosignatures stored for it before a restart.
    let publisher = sequencer.publisher();
    {
        let epoch = latest.borrow().checkpoint().epoch;
        let note = storage
            .checkpoint(epoch)?
            .context("the latest checkpoint is missing")?;
        let cosigned = Arc::new(kt_core::checkpoint::SignedCheckpoint::open(
            &note,
            &config.origin,
            &log_key,
        )?);
        if let Some(sender) = publisher.upgrade() {
            sender.send_if_modified(|current| {
                let same = current.checkpoint() == cosigned.checkpoint();
                if same {
                    *current = cosigned.clone();
                }
                same
            });
        }
    }
    let (cosigned, _) = tokio::sync::broadcast::channel(64);
    let witnessing = WitnessingService::new(
        storage.clone(),
        config.witnesses.clone(),
        log_key,
        publisher,
        cosigned.clone(),
    );
    // Every secret is loaded before the writer starts, so a bad token file stops start-up with
    // nothing running.
    let provider_token = match &config.provider_token {
        ProviderTokenSource::Value(token) => token.clone(),
        ProviderTokenSource::File(path) => keys::load_or_create_provider_token(path)?,
    };
    let sequencer_shutdown = Arc::new(AtomicBool::new(false));
    let (handle, sequencer_thread) =
        sequencer.spawn(config.sequencer.clone(), sequencer_shutdown.clone());

    let directory = DirectoryService::new(
        storage.clone(),
        handle.clone(),
        latest.clone(),
        ProviderToken::new(Some(&provider_token))
            .with_client_certs(config.tls.as_ref().is_some_and(|t| t.provider_mtls())),
        vrf,
    );
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<LogServer<LogService>>().await;
    health_reporter
        .set_serving::<DirectoryServer<DirectoryService>>()
        .await;
    health_reporter
        .set_serving::<MessagesServer<DirectoryService>>()
        .await;
    health_reporter
        .set_serving::<WitnessingServer<WitnessingService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kt_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let stop = futures::future::FutureExt::shared(async move {
        let _ = stop_rx.await;
    });
    let peer_limits = limits::PeerLimits::new(&config.limits);
    let service = LogService::new(storage.clone(), handle, latest.clone(), cosigned)
        .with_limits(peer_limits.clone());
    let grpc = {
        let stop = stop.clone();
        let log = LogServer::new(service)
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_ANSWER);
        let messages = MessagesServer::new(directory.clone())
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_ANSWER);
        let witnessing = WitnessingServer::new(witnessing)
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_ANSWER);
        let directory = DirectoryServer::new(directory)
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_ANSWER);
        let health_service = health_service
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_ANSWER);
        let reflection = reflection
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_ANSWER);
        let builder = tls::grpc_server(config.tls.as_ref())?;
        // Transport limits (`crate::limits`); the peer limits are one layer around every service.
        let mut builder = builder
            .http2_keepalive_interval(Some(limits::HTTP2_KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(limits::HTTP2_KEEPALIVE_TIMEOUT))
            .max_concurrent_streams(limits::MAX_STREAMS_PER_CONNECTION)
            .http2_max_header_list_size(limits::MAX_GRPC_HEADER_LIST)
            .timeout(limits::request_timeout(config.sequencer.epoch_interval));
        if let Some(age) = config.limits.max_connection_age {
            builder = builder
                .max_connection_age(age)
                .max_connection_age_grace(limits::CONNECTION_AGE_GRACE);
        }
        let incoming = limits::grpc_incoming(grpc_listener, peer_limits.clone());
        let layer = limits::GrpcLimitLayer::new(peer_limits.clone());
        tokio::spawn(async move {
            let result = builder
                .layer(layer)
                .add_service(health_service)
                .add_service(reflection)
                .add_service(log)
                .add_service(directory)
                .add_service(messages)
                .add_service(witnessing)
                .serve_with_incoming_shutdown(incoming, stop)
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "gRPC server failed");
            }
        })
    };
    let http = {
        let router = http::router(storage.clone(), latest);
        let http_listener = tls::http_listener(http_listener, config.tls.as_ref());
        tokio::spawn(http::serve(http_listener, router, peer_limits, stop))
    };
    Ok(RunningServer {
        grpc_addr,
        http_addr,
        verifier_key,
        vrf_public_key,
        origin: config.origin.clone(),
        storage,
        stop: Some(stop_tx),
        tasks: vec![grpc, http],
        sequencer_shutdown,
        sequencer: Some(sequencer_thread),
    })
}
