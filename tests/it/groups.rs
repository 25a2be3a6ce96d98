//! Groups as first-class citizens, through the real daemon: `[[groups]]` written into the state
//! and visible through the API as managed by the config; the API, `orrery groups` (through the
//! daemon and on the stopped state) and the admin page refusing to change them with the way to
//! do it; a reload adding a member; a group that leaves the config going back to the API with
//! its members kept; and the admin page listing groups, members and managers.

use serde_json::{json, Value};

use crate::common::{login_at, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

const CLASS_A: &str =
    "[[groups]]\nname = \"class-a\"\nusers = [\"sam\", \"Sue\"]\nproperties = { room = \"b12\" }\n";

async fn group(d: &Daemon, name: &str) -> Value {
    let (s, g, _) = d
        .api("GET", &format!("/groups/{name}"), Some(ADMIN), None)
        .await;
    assert_eq!(s, 200, "GET /groups/{name}: {g}");
    g
}

/// The config file with `from` replaced by `to`, then `orrery config reload`.
fn edit_and_reload(d: &Daemon, from: &str, to: &str) {
    let text = std::fs::read_to_string(&d.config_path).unwrap();
    assert!(text.contains(from), "{from:?} in the config:\n{text}");
    std::fs::write(&d.config_path, text.replace(from, to)).unwrap();
    let (code, out, err) = d.cli(&["config", "reload"], None);
    assert_eq!(code, 0, "reload: {out}{err}");
}

fn assert_refused(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 409, "{what}: {body}");
    let m = body["message"].as_str().unwrap_or("");
    assert!(
        m.contains("managed by the config file") && m.contains("orrery config reload"),
        "{what}: the message says who manages the group and how to change it: {m}"
    );
}

#[tokio::test]
async fn config_groups_are_managed_by_the_config_and_released_with_their_members() {
    let mut d = Daemon::start(CLASS_A).await;
    d.create_users(&["sam", "sue", "sid"], false).await;

    // Visible through the API, members normalised, managed by the config.
    let g = group(&d, "class-a").await;
    assert_eq!(g["users"], json!(["sam", "sue"]), "{g}");
    assert_eq!(g["managed_by"], "config");
    assert_eq!(g["properties"]["room"], "b12");
    let (_, sam, _) = d.api("GET", "/users/sam", Some(ADMIN), None).await;
    assert_eq!(sam["groups"], json!(["class-a"]), "{sam}");
    let (_, list, _) = d.api("GET", "/groups", Some(ADMIN), None).await;
    assert_eq!(list[0]["name"], "class-a", "{list}");

    // The API refuses to change it, saying how to.
    let add = json!({"users": ["sid"]});
    let (s, b, _) = d
        .api(
            "POST",
            "/groups/class-a/users",
            Some(ADMIN),
            Some(add.clone()),
        )
        .await;
    assert_refused(s, &b, "adding a member");
    let (s, b, _) = d
        .api(
            "DELETE",
            "/groups/class-a/users",
            Some(ADMIN),
            Some(json!({"users": ["sam"]})),
        )
        .await;
    assert_refused(s, &b, "removing a member");
    let (s, b, _) = d.api("DELETE", "/groups/class-a", Some(ADMIN), None).await;
    assert_refused(s, &b, "deleting the group");
    assert_eq!(group(&d, "class-a").await["users"], json!(["sam", "sue"]));

    // Groups made through the API work as before.
    let (s, b, _) = d
        .api(
            "POST",
            "/groups/club",
            Some(ADMIN),
            Some(json!({"users": ["sid"]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["managed_by"], "api");
    let (s, b, _) = d
        .api(
            "POST",
            "/groups/club/users",
            Some(ADMIN),
            Some(json!({"users": ["sam"]})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["users"], json!(["sam", "sid"]));

    // A reload adds a member.
    edit_and_reload(
        &d,
        "users = [\"sam\", \"Sue\"]",
        "users = [\"sam\", \"Sue\", \"sid\"]",
    );
    assert_eq!(
        group(&d, "class-a").await["users"],
        json!(["sam", "sid", "sue"])
    );
    let (_, sid, _) = d.api("GET", "/users/sid", Some(ADMIN), None).await;
    assert_eq!(sid["groups"], json!(["class-a", "club"]), "{sid}");

    // Deleting a user keeps their name in the config group (the config says so), not in club.
    let (s, _, _) = d.api("DELETE", "/users/sid", Some(ADMIN), None).await;
    assert_eq!(s, 204);
    assert_eq!(
        group(&d, "class-a").await["users"],
        json!(["sam", "sid", "sue"])
    );
    assert_eq!(group(&d, "club").await["users"], json!(["sam"]));
    d.create_users(&["sid"], false).await;

    // Out of the config: the API manages it, members kept, and now it can be changed.
    let now = CLASS_A.replace("\"Sue\"]", "\"Sue\", \"sid\"]");
    edit_and_reload(&d, &now, "");
    let g = group(&d, "class-a").await;
    assert_eq!(g["managed_by"], "api", "{g}");
    assert_eq!(g["users"], json!(["sam", "sid", "sue"]));
    assert_eq!(g["properties"]["room"], "b12");
    let (s, b, _) = d
        .api(
            "DELETE",
            "/groups/class-a/users",
            Some(ADMIN),
            Some(json!({"users": ["sid"]})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["users"], json!(["sam", "sue"]));

    // Survives a restart as it is.
    d.stop();
    d.spawn().await;
    let g = group(&d, "class-a").await;
    assert_eq!(
        (g["managed_by"].clone(), g["users"].clone()),
        (json!("api"), json!(["sam", "sue"]))
    );
}

#[tokio::test]
async fn orrery_groups_manages_api_groups_and_refuses_config_groups() {
    let mut d = Daemon::start(CLASS_A).await;
    d.create_users(&["sam", "sue", "sid"], false).await;

    // Through the running daemon.
    let (code, out, err) = d.cli(&["groups", "list"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("class-a ") && l.contains("config") && l.contains("sam, sue")),
        "{out}"
    );
    let (code, out, err) = d.cli(&["groups", "show", "class-a"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("managed by: the config file") && out.contains("  sue"),
        "{out}"
    );
    let (code, _, err) = d.cli(&["groups", "add-user", "class-a", "sid"], None);
    assert_eq!(code, 2);
    assert!(
        err.contains("managed by the config file") && err.contains("orrery config reload"),
        "{err}"
    );
    let (code, _, err) = d.cli(&["groups", "remove", "class-a"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("managed by the config file"), "{err}");

    let (code, out, err) = d.cli(&["groups", "add", "club"], None);
    assert_eq!((code, out.trim()), (0, "created group club"), "{err}");
    let (code, _, err) = d.cli(&["groups", "add-user", "club", "Sid"], None);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = d.cli(&["groups", "add-user", "club", "nobody"], None);
    assert_eq!(code, 2);
    assert!(err.contains("nobody"), "{err}");
    let (code, out, _) = d.cli(&["groups", "show", "club"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("managed by: the API") && out.contains("  sid"),
        "{out}"
    );
    let (code, _, err) = d.cli(&["groups", "remove-user", "club", "sid"], None);
    assert_eq!(code, 0, "{err}");
    let (_, club, _) = d.api("GET", "/groups/club", Some(ADMIN), None).await;
    assert_eq!(club["users"], json!([]), "{club}");

    // On the stopped daemon's state: the same answers.
    d.stop();
    let (code, _, err) = d.cli(&["groups", "add-user", "class-a", "sid"], None);
    assert_eq!(code, 2);
    assert!(err.contains("managed by the config file"), "{err}");
    let (code, _, err) = d.cli(&["groups", "add-user", "club", "sue"], None);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = d.cli(&["groups", "list"], None);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("club ") && l.contains("api") && l.contains("sue")),
        "{out}"
    );
    let (code, _, _) = d.cli(&["groups", "remove", "club"], None);
    assert_eq!(code, 0);
    let (code, out, _) = d.cli(&["groups", "list"], None);
    assert_eq!(code, 0);
    assert!(!out.contains("club"), "{out}");
    d.spawn().await;
    let (s, _, _) = d.api("GET", "/groups/club", Some(ADMIN), None).await;
    assert_eq!(s, 404);
}

/// The `value` of the first `<input name="_xsrf">` of a page.
fn xsrf(page: &str) -> String {
    let at = page
        .find("name=\"_xsrf\" value=\"")
        .expect("an _xsrf field")
        + 20;
    page[at..].split('"').next().unwrap_or("").to_string()
}

#[tokio::test]
async fn the_admin_page_lists_groups_their_members_and_managers() {
    let d = Daemon::start(&format!("[users]\nadmin = [\"boss\"]\n\n{CLASS_A}")).await;
    d.create_users(&["sam", "sue", "sid"], false).await;
    let (s, _, _) = d
        .api(
            "POST",
            "/groups/club",
            Some(ADMIN),
            Some(json!({"users": ["sid"]})),
        )
        .await;
    assert_eq!(s, 201);
    let cookie = login_at(&d.url, "boss", "boss password")
        .await
        .expect("admin login");
    let get = || async {
        let r = d
            .http
            .get(format!("{}/hub/admin/groups", d.url))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let page = get().await;
    // The users page links to the groups page and lists no groups itself.
    let (_, users_page) = crate::common::page_as(&d.url, &cookie, "/hub/admin").await;
    assert!(
        users_page.contains("href=\"/hub/admin/groups\"") && !users_page.contains("id=\"groups\""),
        "the users page links to the groups"
    );
    let groups = &page[page.find("id=\"groups\"").expect("a groups table")..];
    let row = |name: &str| {
        let at = groups
            .find(&format!("data-group=\"{name}\""))
            .unwrap_or_else(|| panic!("a row for {name}: {groups}"));
        let rest = &groups[at..];
        rest[..rest.find("</tr>").unwrap_or(rest.len())].to_string()
    };
    let class_a = row("class-a");
    assert!(
        class_a.contains("config file") && class_a.contains("orrery config reload"),
        "{class_a}"
    );
    assert!(
        class_a.contains("<li>sam") && class_a.contains("<li>sue"),
        "{class_a}"
    );
    assert!(
        !class_a.contains("add-user") && !class_a.contains("remove-user"),
        "no forms: {class_a}"
    );
    let club = row("club");
    assert!(club.contains("API") && club.contains("<li>sid"), "{club}");
    assert!(club.contains("/hub/admin/groups/club/add-user"), "{club}");

    // The forms change API groups and refuse config groups.
    let token = xsrf(&page);
    let post = |path: &str, user: &str| {
        d.http
            .post(format!("{}/hub/admin/groups/{path}", d.url))
            .header("Cookie", &cookie)
            .form(&[("_xsrf", token.as_str()), ("user", user)])
            .send()
    };
    let r = post("club/add-user", "sam").await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let (_, club, _) = d.api("GET", "/groups/club", Some(ADMIN), None).await;
    assert_eq!(club["users"], json!(["sam", "sid"]));
    let r = post("club/remove-user", "sid").await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let (_, club, _) = d.api("GET", "/groups/club", Some(ADMIN), None).await;
    assert_eq!(club["users"], json!(["sam"]));
    let r = post("class-a/add-user", "sid").await.unwrap();
    assert_eq!(r.status(), 409);
    let body = r.text().await.unwrap();
    assert!(body.contains("managed by the config file"), "{body}");
    let r = post("club/add-user", "nobody").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(group(&d, "class-a").await["users"], json!(["sam", "sue"]));
}
