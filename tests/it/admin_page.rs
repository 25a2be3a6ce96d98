//! The admin page's parity with JupyterHub's admin panel, through its forms as a browser without
//! JavaScript posts them: servers started and stopped for the selected users and all stopped at
//! once, "Open" links to running servers, a user's password set by an admin, groups created and
//! deleted, and the users table sorted.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{form_xsrf, login_at, page_as, repo, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

fn config() -> String {
    format!(
        "[users]\nadmin = [\"root1\"]\n\n[[groups]]\nname = \"staff\"\nusers = []\n\n\
         [spawner]\nbackend = \"local\"\n[spawner.local]\ncmd = [\"python3\", \"{}\"]\nallow_root = true\n",
        repo().join("tests/python/origin_server.py").display()
    )
}

/// POST a form of the admin page (`fields` plus the page's CSRF token): status and Location.
async fn post(
    d: &Daemon,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let (_, page) = page_as(&d.url, cookie, "/hub/admin").await;
    let xsrf = form_xsrf(&page);
    let mut form: Vec<(&str, &str)> = vec![("_xsrf", xsrf.as_str())];
    form.extend_from_slice(fields);
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}{path}", d.url))
        .header("Cookie", cookie)
        .form(&form)
        .send()
        .await
        .expect("post");
    crate::common::answered(r).await
}

/// Whether each of `users` has a ready default server, once none is pending.
async fn ready(d: &Daemon, users: &[&str]) -> Vec<bool> {
    let mut out = Vec::new();
    for u in users {
        let mut state = false;
        for _ in 0..200 {
            let (_, m, _) = d
                .api("GET", &format!("/users/{u}"), Some(ADMIN), None)
                .await;
            let srv: &Value = &m["servers"][""];
            if srv.is_null() {
                break;
            }
            if srv["ready"] == json!(true) && srv["pending"].is_null() {
                state = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        out.push(state);
    }
    out
}

#[tokio::test]
async fn admins_act_on_selected_and_all_servers_set_passwords_and_manage_groups() {
    let d = Daemon::start(&config()).await;
    d.create_users(&["root1", "ann", "ben", "cat"], false).await;
    let cookie = login_at(&d.url, "root1", "root-password-1")
        .await
        .expect("admin logs in");
    let (s, page) = page_as(&d.url, &cookie, "/hub/admin").await;
    assert_eq!(s, 200);
    for name in ["ann", "ben", "cat"] {
        assert!(
            page.contains(&format!("form=\"bulk\" name=\"user\" value=\"{name}\"")),
            "a checkbox for {name}"
        );
    }

    // Start the selected users' servers.
    let (s, to, _) = post(
        &d,
        &cookie,
        "/hub/admin/servers",
        &[("action", "start"), ("user", "ann"), ("user", "ben")],
    )
    .await;
    assert_eq!(s, 302);
    assert!(
        to.contains("done=bulk") && to.contains("n=2") && to.contains("failed=0"),
        "{to}"
    );
    assert_eq!(
        ready(&d, &["ann", "ben", "cat"]).await,
        vec![true, true, false]
    );
    let (_, page) = page_as(
        &d.url,
        &cookie,
        &format!(
            "/hub/admin?{}",
            to.split_once('?').map(|x| x.1).unwrap_or("")
        ),
    )
    .await;
    assert!(page.contains("Started 2 server(s)."), "{page}");
    assert!(
        page.contains("href=\"/user/ann/\""),
        "an Open link to ann's running server"
    );
    assert!(
        !page.contains("href=\"/user/cat/\""),
        "none for cat's stopped one"
    );

    // Nothing selected: said so.
    let (s, _, body) = post(&d, &cookie, "/hub/admin/servers", &[("action", "start")]).await;
    assert_eq!(s, 400);
    assert!(body.contains("Select at least one user"), "{body}");

    // Stop every running server.
    let (s, to, _) = post(&d, &cookie, "/hub/admin/servers", &[("action", "stop-all")]).await;
    assert_eq!(s, 302);
    assert!(to.contains("n=2"), "{to}");
    assert_eq!(ready(&d, &["ann", "ben"]).await, vec![false, false]);

    // An admin sets cat's password; cat logs in with it, not with another.
    let (s, to, _) = post(
        &d,
        &cookie,
        "/hub/admin/users/cat/password",
        &[("password", "cat-new-password-9")],
    )
    .await;
    assert_eq!((s, to.contains("done=password")), (302, true), "{to}");
    assert!(login_at(&d.url, "cat", "other-password-99").await.is_err());
    assert!(login_at(&d.url, "cat", "cat-new-password-9").await.is_ok());
    let (s, _, body) = post(
        &d,
        &cookie,
        "/hub/admin/users/cat/password",
        &[("password", "x")],
    )
    .await;
    assert_eq!(s, 400, "too short: {body}");

    // Groups: create one, delete it; a config group cannot be deleted here.
    let (s, to, _) = post(&d, &cookie, "/hub/admin/groups", &[("name", "lab-1")]).await;
    assert_eq!(
        (s, to.starts_with("/hub/admin/groups?done=group-created")),
        (302, true),
        "{to}"
    );
    let (s, page) = page_as(&d.url, &cookie, &to).await;
    assert_eq!(s, 200);
    assert!(
        page.contains("Group lab-1 has been created.") && page.contains("data-group=\"lab-1\""),
        "{page}"
    );
    let (s, _, _) = d.api("GET", "/groups/lab-1", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    let (s, _, body) = post(&d, &cookie, "/hub/admin/groups", &[("name", "lab-1")]).await;
    assert_eq!(s, 409, "{body}");
    let (s, _, _) = post(&d, &cookie, "/hub/admin/groups/lab-1/delete", &[]).await;
    assert_eq!(s, 302);
    let (s, _, _) = d.api("GET", "/groups/lab-1", Some(ADMIN), None).await;
    assert_eq!(s, 404);
    // A group named as identity providers name them (a space, a slash): its forms' URLs
    // carry the name encoded, and work.
    let (s, to, _) = post(
        &d,
        &cookie,
        "/hub/admin/groups",
        &[("name", "Physics TAs/2026")],
    )
    .await;
    assert_eq!(s, 302, "{to}");
    let (_, page) = page_as(&d.url, &cookie, "/hub/admin/groups").await;
    assert!(
        page.contains("/hub/admin/groups/Physics%20TAs%2F2026/add-user"),
        "{page}"
    );
    let (s, _, body) = post(
        &d,
        &cookie,
        "/hub/admin/groups/Physics%20TAs%2F2026/add-user",
        &[("user", "ben")],
    )
    .await;
    assert_eq!(s, 302, "{body}");
    let (s, g, _) = d
        .api("GET", "/groups/Physics%20TAs%2F2026", Some(ADMIN), None)
        .await;
    assert_eq!(
        (s, g["users"].clone()),
        (200, serde_json::json!(["ben"])),
        "{g}"
    );
    let (s, _, _) = post(
        &d,
        &cookie,
        "/hub/admin/groups/Physics%20TAs%2F2026/delete",
        &[],
    )
    .await;
    assert_eq!(s, 302);
    let (s, _, body) = post(&d, &cookie, "/hub/admin/groups/staff/delete", &[]).await;
    assert_eq!(s, 409, "config group: {body}");
    assert!(body.contains("config"), "{body}");

    // Not an admin: every form is refused.
    let ann = login_at(&d.url, "ann", "ann-password-1")
        .await
        .expect("ann logs in");
    for page in ["/hub/admin", "/hub/admin/groups"] {
        let (s, _) = page_as(&d.url, &ann, page).await;
        assert_eq!(s, 403, "{page}");
    }
}
