//! `kt key`, `kt lookup`, `kt history`, `kt monitor`, `kt message`: the key directory and the
//! message log, with this device's keys in the key file (`--keys`).

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::Subcommand;
use futures::StreamExt as _;
use kt_client::directory::{
    foreign_versions, missing_confirmed, Alert, PreparedUpdate, RolledBack,
};
use kt_client::keys::{Algorithm, Confirmed, DeviceKey, KeyFile, MadeUpdate};
use kt_client::{DirectoryClient, LogClient, Lookup, UpdateReceipt, VerifiedHistory};
use kt_core::directory::{LabelState, Op, UserKey, VerifiedMessage, VerifiedUpdate};
use kt_core::hash::Hash;
use serde_json::{json, Value};

use super::{checkpoint_json, checkpoint_line, read_payload, Cli, Failure, B64};
use base64::Engine as _;

fn alg_parser() -> impl clap::builder::TypedValueParser<Value = Algorithm> {
    PossibleValuesParser::new(Algorithm::ALL.map(Algorithm::name))
        .map(|s| s.parse::<Algorithm>().expect("one of the possible values"))
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Generate a private key for <identifier> into the key file (no server contact).
    New {
        identifier: String,
        /// Key algorithm.
        #[arg(long, default_value = "ed25519", value_parser = alg_parser())]
        alg: Algorithm,
    },
    /// Register <identifier> with this device's new key (version 1). Needs the provider's token.
    Register {
        identifier: String,
        /// The identity provider's token, sent as `authorization: Bearer <token>`.
        #[arg(long, env = "KT_PROVIDER_TOKEN", hide_env_values = true)]
        provider_token: Option<String>,
    },
    /// Replace <identifier>'s current key (held by this device) with a new one.
    Rotate {
        identifier: String,
        /// Algorithm of the new key (default: that of the current key).
        #[arg(long, value_parser = alg_parser())]
        alg: Option<Algorithm>,
    },
    /// Remove <identifier>'s key from the directory (signed by its current key).
    Revoke { identifier: String },
    /// Install a new key after every key of <identifier> was lost. Needs the provider's token;
    /// the owner's monitors raise it.
    Recover {
        identifier: String,
        #[arg(long, env = "KT_PROVIDER_TOKEN", hide_env_values = true)]
        provider_token: Option<String>,
        /// Algorithm of the new key.
        #[arg(long, default_value = "ed25519", value_parser = alg_parser())]
        alg: Algorithm,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MessageCommand {
    /// Append a message signed by <identifier>'s current key (held by this device).
    Send {
        identifier: String,
        /// Namespace (a-z, 0-9, '.', '_', '-', '/').
        #[arg(long, short)]
        namespace: String,
        /// The payload; `-` reads standard input.
        payload: String,
        /// The author's sequence number (default: one after the author's message count in the
        /// map, from a verified lookup).
        #[arg(long)]
        sequence: Option<u64>,
    },
    /// Read <identifier>'s messages, verified: each signed by the author's key at its log index,
    /// none of the newest missing (against the author's message count in the map).
    Read {
        identifier: String,
        /// First sequence number.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// At most this many (1 to 1,000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}

/// The log's VRF public key from `--vrf-key` / `KT_VRF_KEY`.
fn vrf_key(cli: &Cli) -> anyhow::Result<kt_core::vrf::VrfPublicKey> {
    let Some(value) = &cli.vrf_key else {
        bail!(
            "no VRF key: pass --vrf-key (or KT_VRF_KEY) with the log's VRF public key, or the path \
             of its .pub file (make run writes data/vrf.pub); labels are checked with it"
        );
    };
    kt_client::directory::read_vrf_key(value).map_err(anyhow::Error::msg)
}

fn keys_path(cli: &Cli) -> anyhow::Result<PathBuf> {
    cli.keys
        .clone()
        .or_else(KeyFile::default_path)
        .ok_or_else(|| anyhow!("HOME is not set; pass --keys"))
}

fn open_keys(cli: &Cli) -> Result<KeyFile, Failure> {
    Ok(KeyFile::open(keys_path(cli)?)?)
}

fn versions(n: usize) -> String {
    if n == 1 {
        "1 version".to_owned()
    } else {
        format!("{n} versions")
    }
}

/// Adds what to do to a register or recover the server refused for want of the provider's token.
fn token_hint(e: kt_client::ClientError, op: &str, given: bool) -> Failure {
    match &e {
        kt_client::ClientError::Rpc(status) if status.code() == tonic::Code::Unauthenticated => {
            let hint = if given {
                format!("{op} needs the identity provider's token, and the one given was refused")
            } else {
                format!(
                    "{op} needs the identity provider's token: pass --provider-token or set \
                     KT_PROVIDER_TOKEN (or, where ktd takes the provider's client certificates, \
                     --tls-cert and --tls-key)"
                )
            };
            Failure::Other(anyhow::Error::from(e).context(hint))
        }
        _ => e.into(),
    }
}

fn key_json(key: Option<&UserKey>) -> Value {
    match key {
        None => Value::Null,
        Some(k) => json!({
            "algorithm": Algorithm::of(k).name(),
            "public": hex::encode(k.public_bytes()),
        }),
    }
}

fn key_text(key: Option<&UserKey>) -> String {
    match key {
        None => "no key".to_owned(),
        Some(k) => format!(
            "{} key {}",
            Algorithm::of(k).name(),
            hex::encode(k.public_bytes())
        ),
    }
}

fn update_json(v: &VerifiedUpdate) -> Value {
    json!({
        "version": v.update.version(),
        "op": v.update.op().to_string(),
        "key": key_json(v.update.key()),
        "time_ms": v.update.time_ms(),
        "index": v.index,
        "leaf_hash": hex::encode(v.leaf_hash),
        "prev": hex::encode(v.update.prev()),
    })
}

fn state_json(state: Option<&LabelState>) -> Value {
    match state {
        None => Value::Null,
        Some(s) => json!({
            "version": s.version,
            "key": key_json(s.key.as_ref()),
            "index": s.index,
            "leaf_hash": hex::encode(s.leaf_hash),
            "recovered": s.recovered,
        }),
    }
}

/// `kt key new`: a fresh key in the key file; nothing is sent.
pub(crate) fn key_new(cli: &Cli, identifier: &str, alg: Algorithm) -> Result<(), Failure> {
    kt_core::directory::check_identifier(identifier)
        .with_context(|| format!("identifier {identifier:?}"))?;
    let mut keys = open_keys(cli)?;
    if keys
        .identity(identifier)
        .is_some_and(|i| !i.keys.is_empty())
    {
        return Err(anyhow!(
            "{} already holds a key for {identifier}; `kt key rotate {identifier}` replaces a \
             registered key",
            keys.path().display()
        )
        .into());
    }
    let key = DeviceKey::generate(alg)?;
    let public = key.public().map_err(anyhow::Error::from)?;
    keys.add_key(identifier, key);
    keys.save()?;
    if cli.json {
        let out = json!({
            "identifier": identifier,
            "key": key_json(Some(&public)),
            "keys_file": keys.path().display().to_string(),
        });
        say!("{out}");
    } else {
        say!("new {} for {identifier}", key_text(Some(&public)));
        say!("  saved to {} (mode 0600)", keys.path().display());
        say!("  not registered yet: run `kt key register {identifier}`");
    }
    Ok(())
}

/// Saves the update's leaf hash (and any new key) before the server can have it: a lost answer
/// or a crash then leaves the device able to use whichever key the directory ends up naming, and
/// its monitor recognizes the update.
fn record_before_sending(
    keys: &mut KeyFile,
    prepared: &PreparedUpdate,
    new_key: Option<&DeviceKey>,
) -> Result<(), Failure> {
    let u = prepared.update();
    if let Some(k) = new_key {
        keys.add_key(prepared.identifier(), k.clone());
    }
    keys.record_made(
        prepared.identifier(),
        prepared.leaf_hash(),
        u.op(),
        u.version(),
    );
    keys.save()?;
    Ok(())
}

/// Records that the update's receipt verified: from now on the owner's monitor requires it in
/// every history proven under the receipt's epoch or a later one.
fn record_confirmed(keys: &mut KeyFile, prepared: &PreparedUpdate, receipt: &UpdateReceipt) {
    keys.record_confirmed(
        prepared.identifier(),
        prepared.leaf_hash(),
        Confirmed {
            epoch: receipt.checkpoint.checkpoint().epoch,
            index: receipt.update.index,
        },
    );
}

fn print_receipt(cli: &Cli, identifier: &str, receipt: &UpdateReceipt) {
    let u = &receipt.update;
    if cli.json {
        let out = json!({
            "identifier": identifier,
            "update": update_json(u),
            "checkpoint": checkpoint_json(&receipt.checkpoint),
        });
        say!("{out}");
    } else {
        say!(
            "{} of {identifier}: version {}, {} (verified)",
            u.update.op(),
            u.update.version(),
            key_text(u.update.key())
        );
        say!(
            "  log index {} in checkpoint {}",
            u.index,
            checkpoint_line(&receipt.checkpoint)
        );
        say!("  the map names this update for the label");
    }
}

/// The private key for `lookup`'s current key, or why this device cannot sign for it.
fn current_signer(
    keys: &KeyFile,
    lookup: &Lookup,
) -> anyhow::Result<kt_core::directory::UserSigner> {
    let id = &lookup.identifier;
    let Some(current) = &lookup.current else {
        bail!("{id} is not registered");
    };
    let version = current.update.version();
    let Some(key) = current.update.key() else {
        bail!("{id} has no key: it was revoked at version {version}; `kt key recover {id}` installs a new one");
    };
    keys.signer_for(id, key).ok_or_else(|| {
        anyhow!(
            "{} holds no private key for {id}'s current key (version {version}, {}); \
             if every key is lost, `kt key recover {id}` installs a new one",
            keys.path().display(),
            key_text(Some(key))
        )
    })
}

/// `kt key register|rotate|revoke|recover`.
pub(crate) async fn key(cli: &Cli, log: LogClient, cmd: &KeyCommand) -> Result<(), Failure> {
    let mut keys = open_keys(cli)?;
    let mut client = DirectoryClient::new(log, vrf_key(cli)?);
    match cmd {
        KeyCommand::New { .. } => unreachable!("handled without a server"),
        KeyCommand::Register {
            identifier,
            provider_token,
        } => {
            let key = keys.newest_key(identifier).cloned().ok_or_else(|| {
                anyhow!(
                    "{} holds no key for {identifier}: run `kt key new {identifier}` first",
                    keys.path().display()
                )
            })?;
            let signer = key.signer().map_err(anyhow::Error::from)?;
            let prepared = client.prepare_register(identifier, &signer).await?;
            record_before_sending(&mut keys, &prepared, None)?;
            let receipt = client
                .submit(&prepared, provider_token.as_deref())
                .await
                .map_err(|e| token_hint(e, "register", provider_token.is_some()))?;
            record_confirmed(&mut keys, &prepared, &receipt);
            keys.keep_only(identifier, &signer.public());
            keys.save()?;
            print_receipt(cli, identifier, &receipt);
        }
        KeyCommand::Rotate { identifier, alg } => {
            let lookup = client.lookup(identifier, None).await?;
            let old = current_signer(&keys, &lookup)?;
            let alg = alg.unwrap_or_else(|| Algorithm::of(&old.public()));
            let new = DeviceKey::generate(alg)?;
            let new_signer = new.signer().map_err(anyhow::Error::from)?;
            let prepared = client.prepare_rotate(identifier, &old, &new_signer).await?;
            record_before_sending(&mut keys, &prepared, Some(&new))?;
            let receipt = client.submit(&prepared, None).await?;
            record_confirmed(&mut keys, &prepared, &receipt);
            keys.keep_only(identifier, &new_signer.public());
            keys.save()?;
            print_receipt(cli, identifier, &receipt);
        }
        KeyCommand::Revoke { identifier } => {
            let lookup = client.lookup(identifier, None).await?;
            let signer = current_signer(&keys, &lookup)?;
            let prepared = client.prepare_revoke(identifier, &signer).await?;
            record_before_sending(&mut keys, &prepared, None)?;
            let receipt = client.submit(&prepared, None).await?;
            record_confirmed(&mut keys, &prepared, &receipt);
            keys.remove_keys(identifier);
            keys.save()?;
            print_receipt(cli, identifier, &receipt);
        }
        KeyCommand::Recover {
            identifier,
            provider_token,
            alg,
        } => {
            let new = DeviceKey::generate(*alg)?;
            let new_signer = new.signer().map_err(anyhow::Error::from)?;
            let prepared = client.prepare_recover(identifier, &new_signer).await?;
            record_before_sending(&mut keys, &prepared, Some(&new))?;
            let receipt = client
                .submit(&prepared, provider_token.as_deref())
                .await
                .map_err(|e| token_hint(e, "recover", provider_token.is_some()))?;
            record_confirmed(&mut keys, &prepared, &receipt);
            keys.keep_only(identifier, &new_signer.public());
            keys.save()?;
            print_receipt(cli, identifier, &receipt);
        }
    }
    Ok(())
}

/// `kt lookup`.
pub(crate) async fn lookup(
    cli: &Cli,
    log: LogClient,
    identifier: &str,
    epoch: Option<u64>,
) -> Result<(), Failure> {
    let mut client = DirectoryClient::new(log, vrf_key(cli)?);
    let lookup = client.lookup(identifier, epoch).await?;
    let trusted_epoch = client.log().trusted().map(|c| c.checkpoint().epoch);
    if cli.json {
        let out = json!({
            "identifier": identifier,
            "label": lookup.label.to_string(),
            "registered": lookup.current.is_some(),
            "key": key_json(lookup.key()),
            "current": lookup.current.as_ref().map(update_json),
            "checkpoint": checkpoint_json(&lookup.checkpoint),
        });
        say!("{out}");
        return Ok(());
    }
    match &lookup.current {
        None => say!("{identifier} has no key: not registered (non-membership proven)"),
        Some(c) => match c.update.key() {
            None => say!(
                "{identifier} has no key: revoked at version {} (log index {})",
                c.update.version(),
                c.index
            ),
            Some(k) => say!(
                "{identifier}: {} (version {}, {}, log index {})",
                key_text(Some(k)),
                c.update.version(),
                c.update.op(),
                c.index
            ),
        },
    }
    say!(
        "  verified in checkpoint {}",
        checkpoint_line(&lookup.checkpoint)
    );
    if let Some(trusted) = trusted_epoch.filter(|t| *t != lookup.checkpoint.checkpoint().epoch) {
        say!("  (consistent with the trusted epoch {trusted}, which stays trusted)");
    }
    Ok(())
}

fn history_json(history: &VerifiedHistory) -> Value {
    json!({
        "identifier": history.identifier,
        "label": history.label.to_string(),
        "versions": history.versions.iter().map(update_json).collect::<Vec<_>>(),
        "state": state_json(history.state.as_ref()),
        "checkpoint": checkpoint_json(&history.checkpoint),
    })
}

/// `kt history`.
pub(crate) async fn history(cli: &Cli, log: LogClient, identifier: &str) -> Result<(), Failure> {
    let mut client = DirectoryClient::new(log, vrf_key(cli)?);
    let history = client.history(identifier).await?;
    if cli.json {
        say!("{}", history_json(&history));
        return Ok(());
    }
    if history.versions.is_empty() {
        say!("{identifier} was never registered (non-membership proven)");
    } else {
        say!(
            "{identifier}: {} (verified)",
            versions(history.versions.len())
        );
    }
    for v in &history.versions {
        say!(
            "  v{:<3} {:<8} {}  log index {}, time {} ms",
            v.update.version(),
            v.update.op(),
            key_text(v.update.key()),
            v.index,
            v.update.time_ms()
        );
    }
    say!(
        "  verified in checkpoint {}",
        checkpoint_line(&history.checkpoint)
    );
    Ok(())
}

fn alert_json(a: &Alert) -> Value {
    json!({
        "kind": "foreign-version",
        "version": a.version,
        "op": a.op.to_string(),
        "recover": a.is_recover(),
        "key": key_json(a.key.as_ref()),
        "index": a.index,
        "leaf_hash": hex::encode(a.leaf_hash),
        "time_ms": a.time_ms,
    })
}

fn alert_text(identifier: &str, a: &Alert) -> String {
    let what = match a.op {
        Op::Recover => "a RECOVER (authorized by the provider, not by any key of yours)".to_owned(),
        op => format!("a {op}"),
    };
    format!(
        "ALERT: {identifier} version {} is {what} that this device did not make: {}, log index {}, time {} ms, leaf hash {}",
        a.version,
        key_text(a.key.as_ref()),
        a.index,
        a.time_ms,
        hex::encode(a.leaf_hash)
    )
}

fn rolled_back_json(r: &RolledBack) -> Value {
    json!({
        "kind": "rolled-back",
        "version": r.version,
        "op": r.op.to_string(),
        "leaf_hash": hex::encode(r.leaf_hash),
        "confirmed": { "epoch": r.confirmed.epoch, "index": r.confirmed.index },
        "history_versions": r.history_versions,
        "instead": r.instead.as_ref().map(|i| json!({
            "op": i.op.to_string(),
            "index": i.index,
            "leaf_hash": hex::encode(i.leaf_hash),
        })),
    })
}

fn rolled_back_text(identifier: &str, r: &RolledBack) -> String {
    let now = match &r.instead {
        None => format!("it ends at version {}", r.history_versions),
        Some(i) => format!(
            "its version {} is a {} with leaf hash {} at log index {}",
            r.version,
            i.op,
            hex::encode(i.leaf_hash),
            i.index
        ),
    };
    format!(
        "ALERT: {identifier} was ROLLED BACK: version {} (a {} this device made, leaf hash {}), \
         confirmed in epoch {} at log index {} by a verified receipt, is not in the history the \
         server now proves ({now})",
        r.version,
        r.op,
        hex::encode(r.leaf_hash),
        r.confirmed.epoch,
        r.confirmed.index
    )
}

/// What the monitor raises in one verified history.
struct Alerts {
    /// Versions this device did not make.
    foreign: Vec<Alert>,
    /// Updates this device saw confirmed that the history no longer holds.
    rolled_back: Vec<RolledBack>,
}

impl Alerts {
    fn of(history: &VerifiedHistory, made: &[MadeUpdate]) -> Alerts {
        let made_set: HashSet<Hash> = made.iter().map(|m| m.leaf_hash).collect();
        Alerts {
            foreign: foreign_versions(&history.versions, &made_set),
            rolled_back: missing_confirmed(
                &history.versions,
                made,
                history.checkpoint.checkpoint().epoch,
            ),
        }
    }

    fn is_empty(&self) -> bool {
        self.foreign.is_empty() && self.rolled_back.is_empty()
    }
}

/// Checks one verified history against this device's made updates; prints and returns whether
/// it alerted.
fn check_history(cli: &Cli, history: &VerifiedHistory, made: &[MadeUpdate]) -> bool {
    let alerts = Alerts::of(history, made);
    let id = &history.identifier;
    for r in &alerts.rolled_back {
        eprintln!("kt: {}", rolled_back_text(id, r));
    }
    for a in &alerts.foreign {
        eprintln!("kt: {}", alert_text(id, a));
    }
    if cli.json {
        let listed: Vec<Value> = alerts
            .rolled_back
            .iter()
            .map(rolled_back_json)
            .chain(alerts.foreign.iter().map(alert_json))
            .collect();
        let out = json!({
            "status": if alerts.is_empty() { "ok" } else { "alert" },
            "identifier": id,
            "alerts": listed,
            "versions": history.versions.len(),
            "state": state_json(history.state.as_ref()),
            "checkpoint": checkpoint_json(&history.checkpoint),
        });
        say!("{out}");
    } else if alerts.is_empty() {
        let own_recovers = history
            .versions
            .iter()
            .filter(|v| v.update.op() == Op::Recover)
            .count();
        say!(
            "ok: {id} has {}, all made by this device (verified in checkpoint {})",
            versions(history.versions.len()),
            checkpoint_line(&history.checkpoint)
        );
        if own_recovers > 0 {
            say!("  including {own_recovers} recover(s) made by this device");
        }
    }
    !alerts.is_empty()
}

/// `kt monitor`: the owner's check of its own label, once or at every new checkpoint.
pub(crate) async fn monitor(
    cli: &Cli,
    log: LogClient,
    identifier: &str,
    once: bool,
) -> Result<(), Failure> {
    let keys = open_keys(cli)?;
    let made = keys.made(identifier).to_vec();
    if made.is_empty() {
        eprintln!(
            "kt: {} records no update of {identifier} by this device: every version will be raised",
            keys.path().display()
        );
    }
    let mut client = DirectoryClient::new(log, vrf_key(cli)?);
    let history = client.history(identifier).await?;
    if check_history(cli, &history, &made) {
        return Err(Failure::Alert);
    }
    if once {
        return Ok(());
    }
    let after = client.log().trusted().map(|c| c.checkpoint().epoch);
    let mut stream = Box::pin(client.log().api().watch(after).await?);
    let mut seen_versions = history.versions.len();
    while let Some(checkpoint) = stream.next().await {
        client.follow(checkpoint?).await?;
        let history = client.history(identifier).await?;
        // Read again: this device may have made an update since (`kt key rotate` records it
        // before sending, so it is in the file before it can be in a checkpoint, and marks it
        // confirmed only after its receipt, which a history of an older epoch does not require).
        let made = open_keys(cli)?.made(identifier).to_vec();
        if !Alerts::of(&history, &made).is_empty() {
            check_history(cli, &history, &made);
            return Err(Failure::Alert);
        }
        if history.versions.len() != seen_versions || cli.json {
            seen_versions = history.versions.len();
            check_history(cli, &history, &made);
        }
    }
    Err(anyhow!("the server closed the checkpoint stream").into())
}

fn message_json(m: &VerifiedMessage) -> Value {
    let payload = m.message.payload();
    json!({
        "sequence": m.message.sequence(),
        "namespace": m.message.namespace().as_str(),
        "payload": String::from_utf8_lossy(payload),
        "payload_base64": B64.encode(payload),
        "index": m.index,
        "signature": hex::encode(m.message.signature()),
    })
}

/// `kt message send|read`.
pub(crate) async fn message(
    cli: &Cli,
    log: LogClient,
    cmd: &MessageCommand,
) -> Result<(), Failure> {
    let mut client = DirectoryClient::new(log, vrf_key(cli)?);
    match cmd {
        MessageCommand::Send {
            identifier,
            namespace,
            payload,
            sequence,
        } => {
            let keys = open_keys(cli)?;
            let lookup = client.lookup(identifier, None).await?;
            let signer = current_signer(&keys, &lookup)?;
            let payload = read_payload(payload)?;
            let receipt = match sequence {
                Some(seq) => {
                    client
                        .send_message_at(identifier, namespace, payload, &signer, *seq)
                        .await?
                }
                None => {
                    client
                        .send_message(identifier, namespace, payload, &signer)
                        .await?
                }
            };
            if cli.json {
                let out = json!({
                    "identifier": identifier,
                    "message": message_json(&receipt.message),
                    "checkpoint": checkpoint_json(&receipt.checkpoint),
                });
                say!("{out}");
            } else {
                say!(
                    "sent message {} of {identifier} in {} (verified)",
                    receipt.message.message.sequence(),
                    receipt.message.message.namespace()
                );
                say!(
                    "  log index {} in checkpoint {}",
                    receipt.message.index,
                    checkpoint_line(&receipt.checkpoint)
                );
            }
        }
        MessageCommand::Read {
            identifier,
            from,
            limit,
        } => {
            let read = client.read_messages(identifier, *from, *limit).await?;
            if cli.json {
                let out = json!({
                    "identifier": identifier,
                    "from": read.from,
                    "count": read.count,
                    "messages": read.messages.iter().map(message_json).collect::<Vec<_>>(),
                    "checkpoint": checkpoint_json(&read.checkpoint),
                });
                say!("{out}");
            } else {
                say!(
                    "{} message(s) of {identifier} from sequence {} (verified; the author has {} in all)",
                    read.messages.len(),
                    read.from,
                    read.count
                );
                for m in &read.messages {
                    say!(
                        "  #{} [{}] {}  (log index {})",
                        m.message.sequence(),
                        m.message.namespace(),
                        String::from_utf8_lossy(m.message.payload()),
                        m.index
                    );
                }
                say!(
                    "  verified in checkpoint {}",
                    checkpoint_line(&read.checkpoint)
                );
            }
        }
    }
    Ok(())
}
