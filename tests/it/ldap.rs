//! `auth.type = "ldap"` against a real OpenLDAP `slapd` (Debian's), run by the test on
//! loopback with its own configuration and data: logins by bind (direct, and search then bind
//! as a service account), wrong and empty passwords and filter injection refused, who may log
//! in and who is admin from the directory's groups, group sync, an account mapped onto a name
//! that belongs to another refused, StartTLS against a test CA (and refused with another CA),
//! the break-glass admin password while the directory is down, and the secrets kept out of the
//! daemon's trace log and of `orrery config show`.
//!
//! Needs `slapd` and `ldap-utils` (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{free_port, login_at, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

const SUFFIX: &str = "dc=orrery,dc=test";
const ROOT_DN: &str = "cn=admin,dc=orrery,dc=test";
const ROOT_PW: &str = "slapd-root-secret-4711";

/// A private slapd: its directory, port and (with TLS) the CA that signed its certificate.
struct Slapd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    ca: Option<PathBuf>,
}

fn require(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{tool} is missing: install slapd and ldap-utils (.ci/run does)");
    }
    found
}

fn seed() -> String {
    let person = |uid: &str, pw: &str| {
        format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n\
             sn: {uid}\nmail: {uid}@orrery.test\nuserPassword: {pw}\n\n"
        )
    };
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Orrery test\ndc: orrery\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    for (uid, pw) in [
        ("alice", "alice-ldap-pw"),
        ("bob", "bob-ldap-pw"),
        ("carol", "carol-ldap-pw"),
        ("dave", "dave-ldap-pw"),
    ] {
        ldif.push_str(&person(uid, pw));
    }
    ldif.push_str(&format!(
        "dn: cn=students,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: students\n\
         member: uid=alice,ou=people,{SUFFIX}\nmember: uid=bob,ou=people,{SUFFIX}\n\
         member: uid=dave,ou=people,{SUFFIX}\n\n\
         dn: cn=Physics TAs,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: Physics TAs\n\
         member: uid=bob,ou=people,{SUFFIX}\n\n"
    ));
    ldif
}

impl Slapd {
    /// Configure, seed and start slapd; with `tls`, a test CA's certificate for StartTLS.
    fn start(tls: bool) -> Option<Slapd> {
        if !require("slapd") || !require("slapadd") || !require("ldapmodify") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        let mut tls_conf = String::new();
        let mut ca = None;
        if tls {
            let (ca_pem, issuer) = crate::https::test_ca();
            std::fs::write(d.join("ca.pem"), &ca_pem).unwrap();
            let (cert, key) = crate::https::leaf(d, &issuer, "slapd");
            tls_conf = format!(
                "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
                d.join("ca.pem").display(),
                cert.display(),
                key.display()
            );
            ca = Some(d.join("ca.pem"));
        }
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {dir}/slapd.pid\n{tls_conf}\
             database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw {ROOT_PW}\n\
             directory {dir}/db\n\
             access to attrs=userPassword by self read by anonymous auth by * none\n\
             access to * by * read\n",
            dir = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        std::fs::write(d.join("seed.ldif"), seed()).unwrap();
        let out = Command::new("slapadd")
            .args(["-f", "slapd.conf", "-l", "seed.ldif"])
            .current_dir(d)
            .output()
            .expect("slapadd");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = Slapd {
            child: None,
            dir,
            port: free_port(),
            ca,
        };
        s.run();
        Some(s)
    }

    fn run(&mut self) {
        let child = Command::new("slapd")
            .args([
                "-d",
                "0",
                "-f",
                "slapd.conf",
                "-h",
                &format!("ldap://127.0.0.1:{}/", self.port),
            ])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd");
        self.child = Some(child);
        let began = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "slapd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Apply an LDIF change as the directory's admin.
    fn modify(&self, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        let out = Command::new("ldapmodify")
            .args([
                "-x",
                "-H",
                &format!("ldap://127.0.0.1:{}/", self.port),
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PW,
                "-f",
            ])
            .arg(&path)
            .output()
            .expect("ldapmodify");
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn user(d: &Daemon, name: &str) -> Value {
    let (s, u, _) = d
        .api("GET", &format!("/users/{name}"), Some(ADMIN), None)
        .await;
    assert_eq!(s, 200, "{name}: {u}");
    u
}

fn groups(u: &Value) -> Vec<String> {
    let mut g: Vec<String> = u["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    g.sort();
    g
}

/// The login page's answer to a refused login: (status, page).
async fn refused(d: &Daemon, name: &str, password: &str) -> (u16, String) {
    login_at(&d.url, name, password)
        .await
        .expect_err("the login must be refused")
}

#[tokio::test]
async fn directory_logins_bind_and_its_groups_decide_who_enters_and_who_is_admin() {
    let Some(mut slapd) = Slapd::start(false) else {
        return;
    };
    let config = format!(
        "[auth]\ntype = \"ldap\"\nlocal_admins = true\n\n[auth.username_map]\ndave = \"alice\"\n\n\
         [auth.ldap]\nurl = \"ldap://127.0.0.1:{}\"\n\
         bind_dn_template = \"uid={{username}},ou=people,{SUFFIX}\"\n\
         group_search_base = \"ou=groups,{SUFFIX}\"\n\
         allowed_groups = [\"students\"]\nadmin_groups = [\"Physics TAs\"]\nmanage_groups = true\n\n\
         [users]\nadmin = [\"root\"]\n",
        slapd.port
    );
    let d = Daemon::start_with_env(&config, &[("RUST_LOG", "trace")]).await;

    // alice (students): logs in with the directory's password; her groups come with her.
    login_at(&d.url, "alice", "alice-ldap-pw")
        .await
        .unwrap_or_else(|(s, p)| panic!("alice: {s}\n{p}\n{}", d.log()));
    let alice = user(&d, "alice").await;
    assert_eq!(alice["admin"], false);
    assert_eq!(groups(&alice), ["students"]);
    // The same account typed differently is the same user.
    login_at(&d.url, "Alice", "alice-ldap-pw")
        .await
        .expect("Alice is alice");

    // A wrong password, an empty one (an anonymous bind would succeed) and filter or DN
    // injection are refused.
    for (name, pw) in [
        ("alice", "wrong-password"),
        ("alice", ""),
        ("*", "alice-ldap-pw"),
        ("alice)(uid=*", "alice-ldap-pw"),
        ("alice,ou=people", "alice-ldap-pw"),
    ] {
        let (s, page) = refused(&d, name, pw).await;
        assert!(s == 403 || s == 400, "{name:?}/{pw:?}: {s}\n{page}");
    }

    // bob (Physics TAs): an admin, in a group whose name is not a user-like name.
    login_at(&d.url, "bob", "bob-ldap-pw").await.expect("bob");
    let bob = user(&d, "bob").await;
    assert_eq!(bob["admin"], true, "{bob}");
    assert_eq!(groups(&bob), ["Physics TAs", "students"]);
    let (s, g, _) = d
        .api("GET", "/groups/Physics%20TAs", Some(ADMIN), None)
        .await;
    assert_eq!(
        (s, g["users"].clone()),
        (200, serde_json::json!(["bob"])),
        "{g}"
    );

    // carol is in no allowed group: a clear refusal, and no account.
    let (s, page) = refused(&d, "carol", "carol-ldap-pw").await;
    assert_eq!(s, 403);
    assert!(page.contains("This hub is not open to carol."), "{page}");
    let (s, _, _) = d.api("GET", "/users/carol", Some(ADMIN), None).await;
    assert_eq!(s, 404);

    // dave maps onto the name alice, which belongs to alice's account: refused, not merged.
    let (s, page) = refused(&d, "dave", "dave-ldap-pw").await;
    assert_eq!(s, 403);
    assert!(
        page.contains("The name alice already belongs to another account"),
        "{page}"
    );
    assert!(d
        .log()
        .contains("belongs to another account of the provider"));

    // The directory changes: bob leaves the TAs, carol joins the students. At their next
    // login, bob is no longer an admin and carol gets in.
    slapd.modify(&format!(
        "dn: cn=Physics TAs,ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\n\
         member: uid=alice,ou=people,{SUFFIX}\n-\ndelete: member\nmember: uid=bob,ou=people,{SUFFIX}\n\n\
         dn: cn=students,ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\n\
         member: uid=carol,ou=people,{SUFFIX}\n"
    ));
    login_at(&d.url, "bob", "bob-ldap-pw")
        .await
        .expect("bob again");
    let bob = user(&d, "bob").await;
    assert_eq!(
        (bob["admin"].clone(), groups(&bob)),
        (Value::Bool(false), vec!["students".to_string()])
    );
    login_at(&d.url, "carol", "carol-ldap-pw")
        .await
        .expect("carol now");
    assert_eq!(groups(&user(&d, "carol").await), ["students"]);

    // Break-glass: root (users.admin) has a password the hub keeps; with the directory down,
    // root logs in with it and alice cannot log in at all.
    let (code, _, err) = d.cli(
        &["users", "add", "root", "--password-stdin"],
        Some("root-local-pw-1\n"),
    );
    assert_eq!(code, 0, "{err}");
    slapd.stop();
    login_at(&d.url, "root", "root-local-pw-1")
        .await
        .unwrap_or_else(|(s, p)| panic!("root's break-glass login: {s}\n{p}"));
    let (s, page) = refused(&d, "alice", "alice-ldap-pw").await;
    assert_eq!(s, 503, "{page}");
    assert!(
        page.contains("Signing in is not possible right now"),
        "{page}"
    );
    // Not a way around the directory for anyone else: alice has no hub password.
    slapd.run();

    // No password reached the trace log.
    let log = d.log();
    for secret in [
        "alice-ldap-pw",
        "bob-ldap-pw",
        "carol-ldap-pw",
        "root-local-pw-1",
    ] {
        assert!(!log.contains(secret), "{secret} is in the daemon's log");
    }
}

#[tokio::test]
async fn starttls_with_the_directorys_ca_and_search_then_bind_as_a_service_account() {
    let Some(slapd) = Slapd::start(true) else {
        return;
    };
    let secrets = tempfile::tempdir().unwrap();
    let pw_file = secrets.path().join("bind-password");
    std::fs::write(&pw_file, format!("{ROOT_PW}\n")).unwrap();
    let section = |ca: &Path| {
        format!(
            "[auth]\ntype = \"ldap\"\n\n[auth.ldap]\nurl = \"ldap://localhost:{}\"\nstarttls = true\n\
             ca_file = \"{}\"\nuser_search_base = \"ou=people,{SUFFIX}\"\n\
             user_search_filter = \"(mail={{username}})\"\nbind_dn = \"{ROOT_DN}\"\n\
             bind_password_file = \"{}\"\ngroup_search_base = \"ou=groups,{SUFFIX}\"\n\
             allowed_groups = [\"students\"]\nmanage_groups = true\n\n\
             [users]\nallowed = [\"carol\"]\nblocked = [\"bob\"]\n",
            slapd.port,
            ca.display(),
            pw_file.display()
        )
    };
    let ca = slapd.ca.clone().unwrap();
    let d = Daemon::start_with_env(&section(&ca), &[("RUST_LOG", "trace")]).await;

    // People log in with their e-mail address; the Orrery name is its local part.
    login_at(&d.url, "alice@orrery.test", "alice-ldap-pw")
        .await
        .unwrap_or_else(|(s, p)| panic!("alice over StartTLS: {s}\n{p}\n{}", d.log()));
    assert_eq!(groups(&user(&d, "alice").await), ["students"]);
    let (s, _) = refused(&d, "alice@orrery.test", "not-her-password").await;
    assert_eq!(s, 403);
    // users.allowed and allowed_groups are a union: carol (in no group) is listed; bob (a
    // student) is blocked, and users.blocked always wins.
    login_at(&d.url, "carol@orrery.test", "carol-ldap-pw")
        .await
        .unwrap_or_else(|(s, p)| panic!("carol (users.allowed): {s}\n{p}"));
    let (s, page) = refused(&d, "bob@orrery.test", "bob-ldap-pw").await;
    assert_eq!(s, 403);
    assert!(page.contains("This hub is not open to bob"), "{page}");

    // `orrery doctor` checks the directory the same way.
    let (code, out, err) = d.cli(&["doctor"], None);
    assert!(
        out.contains("ldap") && out.contains(&format!("{ROOT_DN} binds")),
        "{code}\n{out}\n{err}"
    );

    // The service account's password is in no log, and `config show` hides it.
    assert!(
        !d.log().contains(ROOT_PW),
        "the bind password is in the log"
    );
    assert!(!d.log().contains("alice-ldap-pw"));
    for args in [
        &["config", "show", "--effective"][..],
        &["config", "get", "auth.ldap"],
    ] {
        let (code, out, _) = d.cli(args, None);
        assert_eq!(code, 0);
        assert!(
            !out.contains(ROOT_PW),
            "{args:?} shows the password:\n{out}"
        );
        assert!(out.contains("<redacted>"), "{args:?}:\n{out}");
    }
    let (_, out, _) = d.cli(&["config", "get", "auth.ldap.bind_password"], None);
    assert_eq!(out.trim(), "\"<redacted>\"");
    // The services' api_token too, in the file as written.
    let (_, out, _) = d.cli(&["config", "show"], None);
    assert!(
        !out.contains(ADMIN) && out.contains("api_token = \"<redacted>\""),
        "{out}"
    );

    // Another CA: the directory's certificate is not trusted, and nobody logs in.
    let (other_ca, _) = crate::https::test_ca();
    let other = secrets.path().join("other-ca.pem");
    std::fs::write(&other, other_ca).unwrap();
    drop(d);
    let d = Daemon::start(&section(&other)).await;
    let (s, page) = refused(&d, "alice@orrery.test", "alice-ldap-pw").await;
    assert_eq!(s, 503, "{page}");
    assert!(
        d.log().contains("the LDAP directory"),
        "the cause is logged"
    );
    let (code, out, _) = d.cli(&["doctor"], None);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("cannot connect"), "{out}");
}
