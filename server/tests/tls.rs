//! TLS on both listeners and the identity provider's mTLS, against the real server. Every
//! certificate is made here with rcgen: a CA for the server, the provider's CA for client
//! certificates, and a stranger's CA that nobody trusts.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::binary;
use kt_client::{ClientError, DirectoryClient, LogClient, TlsOptions};
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::directory::UserSigner;
use kt_core::note::NoteVerifier;
use ktd::config::{Config, ConfigError, RawConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::Code;

/// A certificate authority whose certificate is written to `<dir>/<name>-ca.pem`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: PathBuf,
}

/// A leaf certificate and its key (mode 0600), as files.
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, issuer.pem()).unwrap();
        Ca { issuer, pem }
    }

    fn leaf(&self, dir: &Path, name: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        write_private(&leaf.key, &key.serialize_pem());
        leaf
    }

    /// A server certificate for 127.0.0.1 and localhost.
    fn server(&self, dir: &Path, name: &str) -> Leaf {
        self.leaf(
            dir,
            name,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self, dir: &Path, name: &str) -> Leaf {
        self.leaf(dir, name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The certificates of one test.
struct Pki {
    server_ca: Ca,
    provider_ca: Ca,
    stranger_ca: Ca,
    server: Leaf,
    provider: Leaf,
    /// A client certificate from the stranger's CA.
    stranger: Leaf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let server_ca = Ca::new(dir, "server");
        let provider_ca = Ca::new(dir, "provider");
        let stranger_ca = Ca::new(dir, "stranger");
        Pki {
            server: server_ca.server(dir, "ktd"),
            provider: provider_ca.client(dir, "provider-client"),
            stranger: stranger_ca.client(dir, "stranger-client"),
            server_ca,
            provider_ca,
            stranger_ca,
        }
    }

    fn raw_config(&self, dir: &Path, provider_mtls: bool) -> RawConfig {
        RawConfig {
            tls_cert_file: Some(self.server.cert.clone()),
            tls_key_file: Some(self.server.key.clone()),
            provider_client_ca_file: provider_mtls.then(|| self.provider_ca.pem.clone()),
            ..common::raw_config(dir)
        }
    }

    fn trusting(&self, ca: &Ca) -> TlsOptions {
        TlsOptions {
            ca_file: Some(ca.pem.clone()),
            ..TlsOptions::default()
        }
    }

    fn with_client(&self, client: &Leaf) -> TlsOptions {
        TlsOptions {
            cert_file: Some(client.cert.clone()),
            key_file: Some(client.key.clone()),
            ..self.trusting(&self.server_ca)
        }
    }
}

fn https_url(server: &ktd::RunningServer) -> String {
    format!("https://{}", server.grpc_addr)
}

fn vrf_key(server: &ktd::RunningServer) -> kt_core::vrf::VrfPublicKey {
    common::directory::vrf_key_of(server)
}

/// Connecting and refreshing over `url` with `tls`: the first step that can fail.
async fn refresh(
    server: &ktd::RunningServer,
    url: &str,
    tls: &TlsOptions,
    state: PathBuf,
) -> Result<(), ClientError> {
    let mut client = LogClient::connect_tls(url, &server.verifier_key, state, tls).await?;
    client.refresh().await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_append_prove_and_look_up_and_others_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = Pki::new(dir);
    let server = common::start_with(pki.raw_config(dir, false)).await;
    let url = https_url(&server);
    let tls = pki.trusting(&pki.server_ca);

    // A client that trusts the server's CA appends, proves and looks up.
    let mut client = LogClient::connect_tls(&url, &server.verifier_key, dir.join("a.json"), &tls)
        .await
        .unwrap();
    let receipt = client.append("tls", b"over TLS".to_vec()).await.unwrap();
    let proof = client.prove(receipt.index).await.unwrap();
    assert_eq!(proof.entry, receipt.entry);
    let mut directory = DirectoryClient::new(client, vrf_key(&server));
    let alice = UserSigner::ed25519_from_seed([1; 32]);
    directory
        .register("alice@example.com", &alice, Some(common::PROVIDER_TOKEN))
        .await
        .unwrap();
    let found = directory.lookup("alice@example.com", None).await.unwrap();
    assert_eq!(found.current.unwrap().update.key(), Some(&alice.public()));

    // Without provider_client_ca_file the server asks for no certificate: one the client holds
    // is never sent and makes nobody the provider.
    let mut with_cert = DirectoryClient::connect_tls(
        &url,
        &server.verifier_key,
        vrf_key(&server),
        dir.join("cert.json"),
        &pki.with_client(&pki.provider),
    )
    .await
    .unwrap();
    let bob = UserSigner::ed25519_from_seed([2; 32]);
    let err = with_cert
        .register("bob@example.com", &bob, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Rpc(s) if s.code() == Code::Unauthenticated),
        "{err}"
    );

    // Plaintext to the TLS port fails.
    let plain = format!("http://{}", server.grpc_addr);
    let err = refresh(&server, &plain, &TlsOptions::default(), dir.join("p.json"))
        .await
        .unwrap_err();
    eprintln!("plaintext client: {err}");
    // A client that trusts another CA refuses the server's certificate.
    let err = refresh(
        &server,
        &url,
        &pki.trusting(&pki.stranger_ca),
        dir.join("s.json"),
    )
    .await
    .unwrap_err();
    eprintln!("client trusting another CA: {err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // TLS options are refused for a plaintext URL rather than silently ignored.
    let err = refresh(&server, &plain, &tls, dir.join("o.json"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
    // Neither attempt left a trusted state behind.
    for name in ["p.json", "s.json", "o.json"] {
        assert!(!dir.join(name).exists(), "{name}");
    }

    // The HTTP tiles over https with the CA; plaintext HTTP fails.
    let http = tls.http_client(reqwest::Client::builder()).unwrap();
    let checkpoint_url = format!("https://{}/checkpoint", server.http_addr);
    let resp = http.get(&checkpoint_url).send().await.unwrap();
    assert!(resp.status().is_success());
    let note = resp.bytes().await.unwrap();
    let verifier = NoteVerifier::parse(&server.verifier_key).unwrap();
    let cp = SignedCheckpoint::open(&note, &server.origin, &verifier).unwrap();
    assert!(cp.checkpoint().size >= 2);
    let tile = http
        .get(format!("https://{}/tile/0/000.p/1", server.http_addr))
        .send()
        .await
        .unwrap();
    assert!(tile.status().is_success());
    assert_eq!(tile.bytes().await.unwrap().len(), 32);
    let plain_http = reqwest::Client::new()
        .get(format!("http://{}/checkpoint", server.http_addr))
        .send()
        .await;
    assert!(
        plain_http
            .as_ref()
            .map_or(true, |r| !r.status().is_success()),
        "{plain_http:?}"
    );
    // Nor does an https client that does not trust the CA get the tiles.
    let stranger = pki
        .trusting(&pki.stranger_ca)
        .http_client(reqwest::Client::builder())
        .unwrap();
    assert!(stranger.get(&checkpoint_url).send().await.is_err());
    // The listeners still serve after the failed handshakes.
    assert!(http
        .get(&checkpoint_url)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    refresh(&server, &url, &tls, dir.join("again.json"))
        .await
        .unwrap();
    server.shutdown().await;
}

/// Registers `identifier` through `tls` (and `token`), returning the server's verdict.
async fn register(
    server: &ktd::RunningServer,
    tls: &TlsOptions,
    state: PathBuf,
    identifier: &str,
    token: Option<&str>,
) -> Result<(), ClientError> {
    let mut client = DirectoryClient::connect_tls(
        &https_url(server),
        &server.verifier_key,
        vrf_key(server),
        state,
        tls,
    )
    .await?;
    let key = UserSigner::ed25519_from_seed([identifier.len() as u8; 32]);
    client.register(identifier, &key, token).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_certificate_replaces_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = Pki::new(dir);
    let server = common::start_with(pki.raw_config(dir, true)).await;
    let plain_tls = pki.trusting(&pki.server_ca);

    // The provider's certificate, no token: registered.
    register(
        &server,
        &pki.with_client(&pki.provider),
        dir.join("provider.json"),
        "carol@example.com",
        None,
    )
    .await
    .unwrap();

    // A certificate from another CA: refused at the handshake, never registered. Under TLS 1.3
    // the client finishes its side before the server checks the certificate, so the refusal
    // reaches the client as a closed connection on its first call (CANCELLED or UNAVAILABLE).
    let err = register(
        &server,
        &pki.with_client(&pki.stranger),
        dir.join("stranger.json"),
        "mallory@example.com",
        None,
    )
    .await
    .unwrap_err();
    eprintln!("stranger's certificate: {err}");
    if let ClientError::Rpc(status) = &err {
        assert!(
            matches!(
                status.code(),
                Code::Unauthenticated
                    | Code::PermissionDenied
                    | Code::Unavailable
                    | Code::Cancelled
                    | Code::Unknown
            ),
            "{status:?}"
        );
    }
    // The server certificate's own CA does not make clients the provider either.
    let server_ca_client = pki.server_ca.client(dir, "server-ca-client");
    assert!(register(
        &server,
        &pki.with_client(&server_ca_client),
        dir.join("server-ca.json"),
        "trent@example.com",
        None,
    )
    .await
    .is_err());

    // No certificate and no token: UNAUTHENTICATED.
    let err = register(
        &server,
        &plain_tls,
        dir.join("none.json"),
        "dave@example.com",
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Rpc(s) if s.code() == Code::Unauthenticated),
        "{err}"
    );
    // No certificate, the token: registered, as without mTLS.
    register(
        &server,
        &plain_tls,
        dir.join("token.json"),
        "erin@example.com",
        Some(common::PROVIDER_TOKEN),
    )
    .await
    .unwrap();
    // The provider's certificate with a wrong token: the certificate decides.
    register(
        &server,
        &pki.with_client(&pki.provider),
        dir.join("provider2.json"),
        "frank@example.com",
        Some("not-the-provider-token"),
    )
    .await
    .unwrap();

    let mut reader = DirectoryClient::connect_tls(
        &https_url(&server),
        &server.verifier_key,
        vrf_key(&server),
        dir.join("reader.json"),
        &plain_tls,
    )
    .await
    .unwrap();
    for (id, registered) in [
        ("carol@example.com", true),
        ("mallory@example.com", false),
        ("trent@example.com", false),
        ("dave@example.com", false),
        ("erin@example.com", true),
        ("frank@example.com", true),
    ] {
        let found = reader.lookup(id, None).await.unwrap();
        assert_eq!(found.current.is_some(), registered, "{id}");
    }
    server.shutdown().await;
}

fn run(name: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(binary(name));
    cmd.args(args);
    for var in [
        "KT_SERVER",
        "KT_LOG_KEY",
        "KT_VRF_KEY",
        "KT_STATE",
        "KT_KEYS",
        "KT_PROVIDER_TOKEN",
        "KT_TLS_CA",
        "KT_TLS_CERT",
        "KT_TLS_KEY",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    eprintln!(
        "$ {name} {}\n-> {:?}\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kt_and_kt_audit_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = Pki::new(dir);
    let server = common::start_with(pki.raw_config(dir, true)).await;
    let url = https_url(&server);
    let log_key = dir.join("db/log.pub");
    let vrf_key = dir.join("db/vrf.pub");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let (ca, cert, key) = (
        s(&pki.server_ca.pem),
        s(&pki.provider.cert),
        s(&pki.provider.key),
    );
    let state = s(&dir.join("kt.json"));
    let keys = s(&dir.join("keys.json"));
    let kt = |extra: &[&str], args: &[&str]| {
        let mut all = vec![
            "--server",
            url.as_str(),
            "--log-key",
            log_key.to_str().unwrap(),
            "--vrf-key",
            vrf_key.to_str().unwrap(),
            "--state",
            state.as_str(),
            "--keys",
            keys.as_str(),
        ];
        all.extend_from_slice(extra);
        all.extend_from_slice(args);
        run("kt", &all)
    };
    let with_ca = ["--tls-ca", ca.as_str()];

    let out = kt(&with_ca, &["append", "-n", "cli", "over TLS"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("appended entry 0 (verified)"));
    let out = kt(&with_ca, &["prove", "0"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("payload   over TLS"));
    // Without the CA, the system's roots do not vouch for this server.
    let out = kt(&[], &["checkpoint"]);
    assert_eq!(out.status.code(), Some(1));

    // The provider registers with its certificate and no token.
    assert!(kt(&[], &["key", "new", "grace@example.com"])
        .status
        .success());
    let out = kt(&with_ca, &["key", "register", "grace@example.com"]);
    assert!(!out.status.success(), "no certificate, no token");
    let provider = [
        "--tls-ca",
        ca.as_str(),
        "--tls-cert",
        cert.as_str(),
        "--tls-key",
        key.as_str(),
    ];
    let out = kt(&provider, &["key", "register", "grace@example.com"]);
    assert!(out.status.success());
    let out = kt(&with_ca, &["lookup", "grace@example.com"]);
    assert!(out.status.success());

    // kt-audit over TLS, the tiles over https too.
    let tiles = format!("https://{}", server.http_addr);
    let audit_dir = s(&dir.join("audit"));
    let audit = |extra: &[&str]| {
        let mut all = vec![
            "--server",
            url.as_str(),
            "--log-key",
            log_key.to_str().unwrap(),
            "--state-dir",
            audit_dir.as_str(),
            "--tiles-url",
            tiles.as_str(),
            "--once",
        ];
        all.extend_from_slice(extra);
        run("kt-audit", &all)
    };
    let out = audit(&with_ca);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit passed"));
    let other = s(&pki.stranger_ca.pem);
    let out = audit(&["--tls-ca", other.as_str()]);
    assert_eq!(out.status.code(), Some(1));
    server.shutdown().await;
}

/// The field a configuration is refused for.
fn refused(raw: RawConfig) -> &'static str {
    match Config::validate(raw) {
        Err(ConfigError::Invalid { field, reason }) => {
            eprintln!("{field}: {reason}");
            field
        }
        other => panic!("expected a refused TLS setting, got {other:?}"),
    }
}

#[test]
fn bad_tls_settings_are_refused_before_anything_binds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = Pki::new(dir);
    let good = pki.raw_config(dir, true);
    let config = Config::validate(good.clone()).unwrap();
    assert!(config.tls.unwrap().provider_mtls());

    assert_eq!(
        refused(RawConfig {
            tls_cert_file: Some(dir.join("missing.pem")),
            ..good.clone()
        }),
        "tls_cert_file"
    );
    // The key of another certificate.
    assert_eq!(
        refused(RawConfig {
            tls_key_file: Some(pki.provider.key.clone()),
            ..good.clone()
        }),
        "tls_key_file"
    );
    // A key others can read.
    let open_key = dir.join("open.key");
    std::fs::copy(&pki.server.key, &open_key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        refused(RawConfig {
            tls_key_file: Some(open_key),
            ..good.clone()
        }),
        "tls_key_file"
    );
    // A certificate file that is not PEM.
    assert_eq!(
        refused(RawConfig {
            tls_cert_file: Some(dir.join("db-missing").join("x")),
            ..good.clone()
        }),
        "tls_cert_file"
    );
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    assert_eq!(
        refused(RawConfig {
            tls_cert_file: Some(not_pem.clone()),
            ..good.clone()
        }),
        "tls_cert_file"
    );
    assert_eq!(
        refused(RawConfig {
            provider_client_ca_file: Some(not_pem),
            ..good.clone()
        }),
        "provider_client_ca_file"
    );
    // Half a pair, or mTLS without TLS.
    assert_eq!(
        refused(RawConfig {
            tls_key_file: None,
            ..good.clone()
        }),
        "tls_key_file"
    );
    assert_eq!(
        refused(RawConfig {
            tls_cert_file: None,
            tls_key_file: None,
            ..good.clone()
        }),
        "provider_client_ca_file"
    );
    // Nothing was created: refused before the server would have started.
    assert!(!dir.join("db").exists());
}
