//! HTTPS in the daemon with certificate files made by a test CA (rcgen), trusted by the test's
//! own client only: the hub over TLS (HTTP/1.1 and HTTP/2), HSTS, the HTTP port redirecting
//! (except the ACME challenge path and the local CLI's API), `Secure` cookies, new files
//! served after `orrery config reload` while a connection opened before keeps working, and
//! `X-Forwarded-Proto` believed only from `http.trusted_proxies`.

use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::common::{free_port, Daemon};

/// A test CA: (its certificate PEM, an issuer for leaves).
pub fn test_ca() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Orrery test CA");
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A leaf for 127.0.0.1 and localhost with common name `cn`, written to `dir`: (cert, key).
pub(crate) fn leaf(
    dir: &Path,
    ca: &Issuer<'static, KeyPair>,
    cn: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (c, k, _) = leaf_with_spki(dir, ca, cn);
    (c, k)
}

/// As [`leaf`], also returning the base64 SHA-256 of its public key (what Chromium's
/// `--ignore-certificate-errors-spki-list` takes: that browser trusts this key only).
pub fn leaf_with_spki(
    dir: &Path,
    ca: &Issuer<'static, KeyPair>,
    cn: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    use base64::Engine;
    use rcgen::PublicKeyData;
    use sha2::Digest;
    let key = KeyPair::generate().unwrap();
    let spki = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(key.subject_public_key_info()));
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, ca).unwrap();
    let (c, k) = (dir.join("hub.crt"), dir.join("hub.key"));
    // Written whole, then renamed, as an operator's tooling replaces them.
    std::fs::write(dir.join("new.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("new.key"), key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("new.key"), &k).unwrap();
    std::fs::rename(dir.join("new.crt"), &c).unwrap();
    (c, k, spki)
}

/// A new certificate for the key in `key_file` (so a browser trusting that key still trusts
/// it), also naming `extra`; written over `cert_file` by the caller: returns its PEM.
pub fn reissue(ca: &Issuer<'static, KeyPair>, key_file: &Path, extra: &str) -> String {
    let key = KeyPair::from_pem(&std::fs::read_to_string(key_file).unwrap()).unwrap();
    let params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        extra.to_string(),
    ])
    .unwrap();
    params.signed_by(&key, ca).unwrap().pem()
}

/// A client trusting only `ca_pem`.
fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What the daemon says it serves (the admin API's TLS status).
async fn cn_from_status(port: u16, ca_pem: &str) -> String {
    let r = client(ca_pem)
        .get(format!("https://127.0.0.1:{port}/hub/api/orrery/tls"))
        .header(
            "Authorization",
            format!("token {}", crate::common::ADMIN_SERVICE_TOKEN),
        )
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    v["certificate"]["issuer"]
        .as_str()
        .unwrap_or_default()
        .to_string()
        + "|"
        + &v["certificate"]["names"].to_string()
}

#[tokio::test]
async fn https_with_certificate_files_redirects_reloads_and_sets_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, ca) = test_ca();
    let (cert, key) = leaf(dir.path(), &ca, "first");
    let https_port = free_port();
    let mut d = Daemon::start(&format!(
        "[https]\nenabled = true\nport = {https_port}\n[https.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ))
    .await;
    let tls = client(&ca_pem);
    let base = format!("https://127.0.0.1:{https_port}");

    // Over TLS, with HSTS; HTTP/2 when the client offers it (ALPN).
    let r = tls.get(format!("{base}/hub/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let h2 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = h2.get(format!("{base}/hub/health")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);

    // The HTTP port redirects (keeping the path), except the ACME challenge path and the
    // local CLI's API.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!("{}/hub/login?next=%2Fhub%2Fhome", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://127.0.0.1:{https_port}/hub/login?next=%2Fhub%2Fhome").as_str()
    );
    let r = plain
        .get(format!("{}/.well-known/acme-challenge/unknown", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the challenge path is not redirected");
    let (code, out, err) = d.cli(&["users", "list"], None);
    assert_eq!(code, 0, "the CLI still reaches the daemon: {out}{err}");
    // `orrery status` shows the hub at a glance, the certificate included.
    let (code, out, err) = d.cli(&["status"], None);
    assert_eq!(code, 0, "{err}");
    eprintln!("$ orrery status\n{out}");
    for needle in [
        "orrery 0.1.0: running",
        &format!("  https      127.0.0.1:{https_port}"),
        "certificate localhost, 127.0.0.1 (from files), issued by CN=Orrery test CA, expires 4096-01-01",
        "  users      0",
        "  servers    0 ready, 0 starting",
        "  kernels    0 running, 0 starting, 0 reclaimed, 0 dead",
    ] {
        assert!(out.contains(needle), "{needle:?} in:\n{out}");
    }
    // `orrery doctor` shows what is served.
    let (_, out, _) = d.cli(&["doctor"], None);
    let line = out
        .lines()
        .find(|l| l.contains("https"))
        .unwrap_or_default();
    assert!(
        line.starts_with("[ok  ] https")
            && line.contains("localhost, 127.0.0.1, issued by CN=Orrery test CA, valid until"),
        "{out}"
    );

    // Absolute links the API builds (pagination) use https.
    d.create_users(&["ann", "bob"], false).await;
    let (_, next) = through_proxy(&ca_pem, https_port).await;
    assert!(
        next.starts_with(&format!("https://127.0.0.1:{https_port}/hub/api/users?")),
        "{next}"
    );

    // Cookies set over HTTPS are Secure.
    let r = tls.get(format!("{base}/hub/login")).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("_xsrf=") && cookie.contains("; Secure"),
        "{cookie}"
    );

    // A connection opened before the files change keeps working, and new connections get
    // the new certificate after `orrery config reload` (the files are also watched).
    let before = cn_from_status(https_port, &ca_pem).await;
    assert!(before.contains("127.0.0.1"), "{before}");
    let kept = client(&ca_pem);
    let r = kept.get(format!("{base}/hub/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (ca2_pem, ca2) = test_ca();
    leaf(dir.path(), &ca2, "second");
    let (code, out, err) = d.cli(&["config", "reload"], None);
    assert_eq!(code, 0, "{out}{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        // A client trusting only the new CA connects once the new certificate is served.
        if let Ok(r) = client(&ca2_pem)
            .get(format!("{base}/hub/health"))
            .send()
            .await
        {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was not served:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection opened before (pooled by `kept`) still answers, without a new
    // handshake (which would fail: `kept` trusts only the first CA).
    let r = kept.get(format!("{base}/hub/health")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the open connection was kept");

    // Without a daemon, `orrery status` says so and fails.
    d.stop();
    let (code, _, err) = d.cli(&["status"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no daemon answers"), "{err}");
}

/// `X-Forwarded-Proto: https` makes cookies `Secure` only from an address in
/// `http.trusted_proxies`.
#[tokio::test]
async fn forwarded_proto_is_believed_only_from_trusted_proxies() {
    let secure_xsrf = |d: &Daemon| {
        let url = format!("{}/hub/login", d.url);
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("X-Forwarded-Proto", "https")
                .send()
                .await
                .unwrap();
            let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
            assert!(cookie.starts_with("_xsrf="), "{cookie}");
            cookie.contains("; Secure")
        }
    };
    let untrusted = Daemon::start("").await;
    assert!(
        !secure_xsrf(&untrusted).await,
        "an untrusted client cannot claim HTTPS"
    );
    let trusted = Daemon::start("[http]\ntrusted_proxies = [\"127.0.0.0/8\"]\n").await;
    assert!(secure_xsrf(&trusted).await, "a trusted proxy can");
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pebble (the ACME test server Let's Encrypt publishes, from Debian) and its DNS
/// (`pebble-challtestsrv`, every name → 127.0.0.1), its validator pointed at `http_port`.
struct Pebble {
    _pebble: Killed,
    _dns: Killed,
    /// The ACME directory.
    directory: String,
    /// The test CA that signed Pebble's own HTTPS certificate (for its API).
    ca_file: std::path::PathBuf,
    ca_pem: String,
    management: u16,
}

fn require(bin: &str) {
    if !Path::new(bin).exists() {
        panic!(
            "{bin} not found: the ACME tests need Debian's pebble package \
             (`apt-get install -y pebble`; .ci/run installs it)"
        );
    }
}

impl Pebble {
    async fn start(dir: &Path, http_port: u16) -> Pebble {
        require("/usr/bin/pebble");
        require("/usr/bin/pebble-challtestsrv");
        let (ca_pem, ca) = test_ca();
        let (cert, key) = leaf(dir, &ca, "pebble");
        let ca_file = dir.join("pebble-ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap();
        let (listen, management, dns_port, dns_mgmt) =
            (free_port(), free_port(), free_port(), free_port());
        let config = dir.join("pebble.json");
        std::fs::write(
            &config,
            serde_json::json!({"pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cert, "privateKey": key,
                "httpPort": http_port, "tlsPort": free_port(),
                "ocspResponderURL": "", "externalAccountBindingRequired": false,
            }})
            .to_string(),
        )
        .unwrap();
        let dns = Killed(
            std::process::Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let pebble = Killed(
            std::process::Command::new("pebble")
                .arg("-config")
                .arg(&config)
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let directory = format!("https://127.0.0.1:{listen}/dir");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while client(&ca_pem).get(&directory).send().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "pebble did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Pebble {
            _pebble: pebble,
            _dns: dns,
            directory,
            ca_file,
            ca_pem,
            management,
        }
    }

    /// The root Pebble issues under (new at every start).
    async fn issuing_root(&self) -> String {
        client(&self.ca_pem)
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The `[https]` of a daemon getting a certificate for `domain` from this Pebble.
    fn config(&self, https_port: u16, domain: &str, renew_fraction: f64) -> String {
        format!(
            "[https]\nenabled = true\nport = {https_port}\n[https.letsencrypt]\n\
             email = \"admin@orrery.test\"\ndomains = [\"{domain}\"]\n\
             directory_url = \"{}\"\ndirectory_ca = \"{}\"\nrenew_fraction = {renew_fraction}\n",
            self.directory,
            self.ca_file.display()
        )
    }
}

/// The daemon's HTTPS status (the admin API, from loopback on the HTTP port).
pub async fn tls_status(d: &Daemon) -> serde_json::Value {
    let (status, body, _) = d
        .api(
            "GET",
            "/orrery/tls",
            Some(crate::common::ADMIN_SERVICE_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Log in as `user` (first use sets the password) over plain HTTP; the session cookie.
async fn login(d: &Daemon, user: &str) -> String {
    crate::common::login_at(&d.url, user, "pebble-admin-pw")
        .await
        .unwrap_or_else(|(status, page)| panic!("login as {user}: {status}\n{page}"))
}

/// Pebble, with its validator pointed at Orrery's HTTP port: Orrery answers the HTTP-01
/// challenge itself, serves the certificate it gets (verified against Pebble's root for the
/// test domain), redirects HTTP, and renews when the (tiny, for the test) renewal threshold
/// is reached. A second hub whose challenge cannot succeed keeps serving on HTTP and shows
/// the ACME server's reason on its admin page.
#[tokio::test]
async fn a_certificate_from_an_acme_server_is_served_renewed_and_failures_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let pebble = Pebble::start(dir.path(), http_port).await;
    let https_port = free_port();
    // Renew after a ten-millionth of the lifetime has passed (seconds, for Pebble's years).
    let d = Daemon::start_on_port(
        &pebble.config(https_port, "hub.orrery.test", 0.999_999_9),
        http_port,
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let first = loop {
        let st = tls_status(&d).await;
        if !st["certificate"].is_null() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no certificate from Pebble: {st}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        first["certificate"]["names"],
        serde_json::json!(["hub.orrery.test"])
    );
    assert!(first["error"].is_null(), "{first}");

    // Served for the domain, verified against Pebble's root.
    let root = pebble.issuing_root().await;
    let acme_client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .resolve(
            "hub.orrery.test",
            std::net::SocketAddr::from(([127, 0, 0, 1], https_port)),
        )
        .build()
        .unwrap();
    let r = acme_client
        .get(format!("https://hub.orrery.test:{https_port}/hub/health"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("HTTPS with Pebble's certificate: {e}\n{}", d.log()));
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/hub/login", d.url))
        .header("Host", "hub.orrery.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://hub.orrery.test:{https_port}/hub/login").as_str()
    );
    // The account and the certificate are kept in the state directory, private.
    for f in ["account.json", "key.pem", "certificate.pem"] {
        let mode = std::fs::metadata(d.state_dir().join("acme").join(f))
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600, "{f}");
    }

    // Renewed once the threshold passes: a new certificate is served.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let st = tls_status(&d).await;
        if st["certificate"]["not_before"] != first["certificate"]["not_before"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not renewed: {st}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A hub whose challenge fails (Pebble's validator reaches the first hub, which does not
    // know its token) keeps serving on HTTP, and says why on its admin page.
    let failing = Daemon::start(&format!(
        "{}[users]\nadmin = [\"root\"]\n",
        pebble.config(free_port(), "fail.orrery.test", 0.33)
    ))
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let error = loop {
        let st = tls_status(&failing).await;
        if let Some(e) = st["error"].as_str() {
            break e.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no error: {st}\n{}",
            failing.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        error.contains("did not validate fail.orrery.test"),
        "{error}"
    );
    let (_, out, _) = failing.cli(&["doctor"], None);
    assert!(
        out.contains("no certificate from the ACME server yet; last error: the ACME server did not validate fail.orrery.test"),
        "{out}"
    );
    let session = login(&failing, "root").await;
    let page = reqwest::Client::new()
        .get(format!("{}/hub/admin", failing.url))
        .header("Cookie", session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("HTTPS certificate: the ACME server did not validate"),
        "{page}"
    );
    assert!(page.contains("HTTPS is not up yet"), "{page}");
}

/// Wait until something answers HTTPS on `port` with a certificate `ca_pem` signed.
async fn wait_https(ca_pem: &str, port: u16, what: &str, log: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client(ca_pem)
        .get(format!("https://127.0.0.1:{port}/hub/health"))
        .send()
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not answer:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a browser sees over HTTPS on `port` (the daemon's, or a TLS reverse proxy's in front
/// of a hub that trusts it): the login page's `_xsrf` cookie, and the API's pagination link.
async fn through_proxy(ca_pem: &str, port: u16) -> (String, String) {
    let c = client(ca_pem);
    let r = c
        .get(format!("https://127.0.0.1:{port}/hub/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let page: serde_json::Value = c
        .get(format!("https://127.0.0.1:{port}/hub/api/users?limit=1"))
        .header(
            "Authorization",
            format!("token {}", crate::common::ADMIN_SERVICE_TOKEN),
        )
        .header("Accept", "application/jupyterhub-pagination+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next = page["_pagination"]["next"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (cookie, next)
}

/// The README's reverse-proxy setups, run: nginx (its location block as written there) and
/// Caddy terminate TLS in front of a hub listening on loopback with
/// `http.trusted_proxies = ["127.0.0.1"]`; cookies come out `Secure` and links on https.
#[tokio::test]
async fn nginx_and_caddy_in_front_work_as_the_readme_says() {
    require("/usr/sbin/nginx");
    require("/usr/bin/caddy");
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, ca) = test_ca();
    let (cert, key) = leaf(dir.path(), &ca, "proxy");
    let d = Daemon::start("[http]\ntrusted_proxies = [\"127.0.0.1\"]\n").await;
    d.create_users(&["ann", "bob"], false).await;

    let nginx_port = free_port();
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let p = dir.path().display();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "user root;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/nginx.log;\nevents {{}}\n\
             http {{\n access_log off;\n client_body_temp_path {p}/body;\n proxy_temp_path {p}/proxy;\n\
             fastcgi_temp_path {p}/fastcgi;\n uwsgi_temp_path {p}/uwsgi;\n scgi_temp_path {p}/scgi;\n\
             server {{\n  listen 127.0.0.1:{nginx_port} ssl;\n  ssl_certificate {};\n  ssl_certificate_key {};\n\
               location / {{\n\
                proxy_pass http://127.0.0.1:{};\n\
                proxy_http_version 1.1;\n\
                proxy_set_header Host $host;\n\
                proxy_set_header X-Forwarded-Proto $scheme;\n\
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                proxy_set_header Upgrade $http_upgrade;\n\
                proxy_set_header Connection \"upgrade\";\n\
                proxy_read_timeout 1d;\n\
               }}\n }}\n}}\n",
            cert.display(),
            key.display(),
            d.port
        ),
    )
    .unwrap();
    let _nginx = Killed(
        std::process::Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_https(&ca_pem, nginx_port, "nginx", &dir.path().join("nginx.log")).await;
    let (cookie, next) = through_proxy(&ca_pem, nginx_port).await;
    assert!(
        cookie.starts_with("_xsrf=") && cookie.contains("; Secure"),
        "nginx: {cookie}"
    );
    // nginx's `$host` carries no port (on 443 none is needed).
    assert!(next.starts_with("https://127.0.0.1"), "nginx: {next}");

    let caddy_port = free_port();
    let caddyfile = dir.path().join("Caddyfile");
    std::fs::write(
        &caddyfile,
        format!(
            "{{\n admin off\n auto_https disable_redirects\n skip_install_trust\n}}\n\
             https://127.0.0.1:{caddy_port} {{\n tls {} {}\n reverse_proxy 127.0.0.1:{}\n}}\n",
            cert.display(),
            key.display(),
            d.port
        ),
    )
    .unwrap();
    let caddy_log = dir.path().join("caddy.log");
    let _caddy = Killed(
        std::process::Command::new("/usr/bin/caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&caddy_log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_https(&ca_pem, caddy_port, "caddy", &caddy_log).await;
    let (cookie, next) = through_proxy(&ca_pem, caddy_port).await;
    assert!(
        cookie.starts_with("_xsrf=") && cookie.contains("; Secure"),
        "caddy: {cookie}"
    );
    assert!(
        next.starts_with(&format!("https://127.0.0.1:{caddy_port}/hub/api/users?")),
        "caddy: {next}"
    );
}
