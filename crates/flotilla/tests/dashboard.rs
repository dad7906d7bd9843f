//! The dashboard over plain HTTP (no browser): sign-in and its cookie's flags on the HTTP and
//! HTTPS listeners, CSRF refusals, the REST API's role refusals, sign-out, and the static files.
//! `dashboard_browser.rs` drives the screens in Chromium.

mod common;

use common::*;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};

/// A browser-like client that does not follow redirects (the tests read them).
fn client() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

/// Signs in with `token` at `base`; the response (a redirect and its cookie, or a refusal).
async fn sign_in(http: &Client, base: &str, token: &str) -> reqwest::Response {
    http.post(format!("{base}/sign-in"))
        .form(&[("token", token), ("next", "/jobs")])
        .send()
        .await
        .unwrap()
}

/// The `name=value` part of the session cookie a sign-in set.
fn session_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get(SET_COOKIE)
        .expect("a session cookie")
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().to_string()
}

/// The CSRF token a signed-in page carries in its forms.
async fn csrf_of_page(http: &Client, base: &str, cookie: &str, path: &str) -> String {
    let page = http
        .get(format!("{base}{path}"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK, "{path}");
    let html = page.text().await.unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form with the CSRF token") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_secure_over_https() {
    let server = Server::start().await;
    let http = client();

    let signed_in = sign_in(&http, &server.base, &server.admin_token).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()[LOCATION], "/jobs");
    let flags = signed_in.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(flags.contains(flag), "{flags}");
    }
    assert!(!flags.contains("Secure"), "plain HTTP: {flags}");
    let cookie = session_cookie(&signed_in);
    // The cookie holds no readable token: base64url of it, never the text itself.
    assert!(!cookie.contains("SharedAccessSignature"), "{cookie}");

    let jobs = http
        .get(format!("{}/jobs", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.status(), StatusCode::OK);
    assert_eq!(jobs.headers()[CACHE_CONTROL], "no-store");
    assert!(
        jobs.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(jobs.text().await.unwrap().contains("<h1>Jobs</h1>"));

    // Over HTTPS the cookie is Secure too.
    let addr = std::fs::read_to_string(server.data_dir().join("https.addr")).unwrap();
    let ca = std::fs::read(server.data_dir().join("ca.pem")).unwrap();
    let https = Client::builder()
        .redirect(Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let over_tls = sign_in(
        &https,
        &format!("https://{}", addr.trim()),
        &server.admin_token,
    )
    .await;
    assert_eq!(over_tls.status(), StatusCode::SEE_OTHER);
    let flags = over_tls.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        flags.contains("; Secure") && flags.contains("SameSite=Strict"),
        "{flags}"
    );

    // Signing out clears the cookie.
    let csrf = csrf_of_page(&http, &server.base, &cookie, "/jobs").await;
    let out = http
        .post(format!("{}/sign-out", server.base))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let cleared = out.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("flotilla_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn pages_without_a_valid_session_send_the_browser_to_sign_in() {
    let server = Server::start().await;
    let http = client();

    let anonymous = http
        .get(format!("{}/jobs?before=x", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        anonymous.headers()[LOCATION],
        "/sign-in?next=%2Fjobs%3Fbefore%3Dx"
    );

    let wrong = sign_in(
        &http,
        &server.base,
        "SharedAccessSignature sr=x&sig=y&skn=z&se=1",
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("That is not an API token this server issued.")
    );

    // A cookie whose token was deleted since: back to sign-in, with the reason.
    let api = server.admin();
    let value = api.create_token("short-lived", OPERATOR).await;
    let cookie = session_cookie(&sign_in(&http, &server.base, &value).await);
    api.delete("/apiTokens/short-lived").await;
    let after = http
        .get(format!("{}/groups", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    let location = after.headers()[LOCATION].to_str().unwrap();
    assert!(
        location.starts_with("/sign-in?next=%2Fgroups&message="),
        "{location}"
    );

    // The REST API is unchanged beside it.
    let missing = http
        .get(format!("{}/nothing-here", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()["x-ms-error-code"], "NotFound");
}

#[tokio::test]
async fn posts_without_the_session_csrf_token_or_from_another_origin_are_refused() {
    let server = Server::start().await;
    let http = client();
    let api = server.admin();
    one_controller_in_group_all(&api).await;
    let cookie = session_cookie(&sign_in(&http, &server.base, &server.admin_token).await);
    let csrf = csrf_of_page(&http, &server.base, &cookie, "/groups/new").await;
    let group = |id: &str| {
        vec![
            ("id", id.to_string()),
            ("display_name", "Everything".to_string()),
            ("filter", "SELECT * FROM devices".to_string()),
        ]
    };

    // No token: refused, and nothing was created.
    let bare = http
        .post(format!("{}/groups", server.base))
        .header(COOKIE, &cookie)
        .form(&group("no-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    assert!(bare.text().await.unwrap().contains("CSRF token"));
    // Another session's token (a made-up one) is no better.
    let mut forged = group("forged");
    forged.push(("csrf", "A".repeat(43)));
    let forged = http
        .post(format!("{}/groups", server.base))
        .header(COOKIE, &cookie)
        .form(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // The right token from another origin: refused on the Origin header.
    let mut cross = group("cross-site");
    cross.push(("csrf", csrf.clone()));
    let cross = http
        .post(format!("{}/groups", server.base))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "https://evil.example")
        .form(&cross)
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert!(cross.text().await.unwrap().contains("another site"));
    for id in ["no-token", "forged", "cross-site"] {
        api.get(&format!("/deviceGroups/{id}"))
            .await
            .error(404, "NotFound");
    }

    // The same form with the token, from this origin: created through the REST API.
    let mut good = group("with-token");
    good.push(("csrf", csrf.clone()));
    let created = http
        .post(format!("{}/groups", server.base))
        .header(COOKIE, &cookie)
        .header(ORIGIN, &server.base)
        .form(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let stored = api.get("/deviceGroups/with-token").await;
    assert_eq!(stored.ok(200)["filter"], "SELECT * FROM devices");

    // htmx sends the token in a header instead.
    let by_header = http
        .post(format!("{}/groups", server.base))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .form(&group("by-header"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), StatusCode::SEE_OTHER);
    api.get("/deviceGroups/by-header").await.ok(200);
}

#[tokio::test]
async fn an_operator_is_refused_what_the_rest_api_refuses_it() {
    let server = Server::start().await;
    let http = client();
    let api = server.admin();
    one_controller_in_group_all(&api).await;
    let operator = api.create_token("operator", OPERATOR).await;
    let cookie = session_cookie(&sign_in(&http, &server.base, &operator).await);

    // Jobs, groups and devices are an operator's; API tokens are not (not even listed).
    let jobs = http
        .get(format!("{}/jobs", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.status(), StatusCode::OK);
    assert!(!jobs.text().await.unwrap().contains("href=\"/tokens\""));
    let tokens = http
        .get(format!("{}/tokens", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(tokens.status(), StatusCode::FORBIDDEN);
    assert!(tokens.text().await.unwrap().contains(
        "The API token &#39;operator&#39; does not have a role that may read API tokens."
    ));

    // Creating a token with the operator's session and its CSRF token: refused by the API.
    let csrf = csrf_of_page(&http, &server.base, &cookie, "/groups/new").await;
    let create = http
        .post(format!("{}/tokens", server.base))
        .header(COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("id", "sneaky"),
            ("role", ADMINISTRATOR),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), StatusCode::FORBIDDEN);
    assert!(
        create
            .text()
            .await
            .unwrap()
            .contains("may change API tokens")
    );
    api.get("/apiTokens/sneaky").await.error(404, "NotFound");

    // Templates: an operator reads them (the page opens) as on the API.
    let templates = http
        .get(format!("{}/templates", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(templates.status(), StatusCode::OK);
    assert!(templates.text().await.unwrap().contains(CONTROLLER));
}

#[tokio::test]
async fn static_files_are_served_with_long_cache_headers() {
    let server = Server::start().await;
    let http = client();
    for (file, kind) in [
        ("htmx-2.0.11.min.js", "text/javascript"),
        ("htmx-ext-sse-2.2.4.min.js", "text/javascript"),
        ("flotilla-1.css", "text/css"),
    ] {
        let response = http
            .get(format!("{}/static/{file}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert_eq!(response.headers()[CONTENT_TYPE], kind);
        assert_eq!(
            response.headers()[CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    let missing = http
        .get(format!("{}/static/htmx-1.0.0.min.js", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_finished_job_s_stream_sends_its_last_state_then_end() {
    let server = Server::start().await;
    let http = client();
    let api = server.admin();
    one_controller_in_group_all(&api).await;
    api.put(
        "/deviceGroups/nobody",
        serde_json::json!({"displayName": "Nobody", "filter": "SELECT * FROM devices WHERE $id = \"nobody\""}),
    )
    .await
    .ok(200);
    api.put(
        "/jobs/empty",
        serde_json::json!({
            "group": "nobody",
            "data": [{"type": "property", "target": CONTROLLER, "path": "thermostat1.targetTemperature", "value": 20}]
        }),
    )
    .await
    .ok(200);
    wait_job(&api, "empty", &["complete"]).await;
    let cookie = session_cookie(&sign_in(&http, &server.base, &server.admin_token).await);

    // The page of a finished job does not open the stream; the stream itself ends on its own.
    let page = http
        .get(format!("{}/jobs/empty", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"job-status\">complete<"), "{page}");
    assert!(!page.contains("sse-connect"));
    let stream = http
        .get(format!("{}/jobs/empty/stream", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()[CONTENT_TYPE], "text/event-stream");
    let body = stream.text().await.unwrap();
    let live = body.find("event: live").expect("a live event");
    let end = body
        .find("event: end\ndata: complete")
        .expect("an end event");
    assert!(live < end, "{body}");
    assert!(body.contains("id=\"job-status\">complete<"), "{body}");

    let unknown = http
        .get(format!("{}/jobs/no-such-job/stream", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

/// HTML text as the browser reads it (the escapes askama writes).
fn unescape(html: &str) -> String {
    html.replace("&#38;", "&")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Posts a dashboard form with the session's cookie and CSRF token.
async fn post_form(
    http: &Client,
    base: &str,
    cookie: &str,
    csrf: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = vec![("csrf", csrf)];
    form.extend_from_slice(fields);
    http.post(format!("{base}{path}"))
        .header(COOKIE, cookie)
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn scheduled_jobs_are_created_edited_and_enabled_through_the_api() {
    let server = Server::start().await;
    let http = client();
    let api = server.admin();
    one_controller_in_group_all(&api).await;
    let cookie = session_cookie(&sign_in(&http, &server.base, &server.admin_token).await);
    let csrf = csrf_of_page(&http, &server.base, &cookie, "/scheduled-jobs/new").await;
    let capability = format!("property|{CONTROLLER}|thermostat1.targetTemperature");
    let job = [
        ("display_name", "Nightly"),
        ("group", "all"),
        ("capability", capability.as_str()),
        ("value", "19"),
        ("start", "2099-01-01T02:00:00Z"),
        ("recurrence", "daily"),
        ("end_type", "occurrences"),
        ("end_value", "3"),
    ];
    let mut create = job.to_vec();
    create.push(("job_id", "nightly"));
    let created = post_form(
        &http,
        &server.base,
        &cookie,
        &csrf,
        "/scheduled-jobs",
        &create,
    )
    .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let stored = api.get("/scheduledJobs/nightly").await;
    let stored = stored.ok(200);
    assert_eq!(stored["schedule"]["recurrence"], "daily");
    assert_eq!(stored["schedule"]["end"]["occurrences"], 3);
    assert_eq!(stored["enabled"], false);
    assert_eq!(stored["data"][0]["path"], "thermostat1.targetTemperature");

    // The list shows its three runs to come.
    let list = http
        .get(format!("{}/scheduled-jobs", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for day in [
        "2099-01-01 02:00 UTC",
        "2099-01-02 02:00 UTC",
        "2099-01-03 02:00 UTC",
    ] {
        assert!(list.contains(day), "{day} in {list}");
    }
    assert!(!list.contains("2099-01-04"));

    // Enabling is a PATCH through the API.
    let toggled = post_form(
        &http,
        &server.base,
        &cookie,
        &csrf,
        "/scheduled-jobs/nightly/enable",
        &[],
    )
    .await;
    assert_eq!(toggled.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        api.get("/scheduledJobs/nightly").await.ok(200)["enabled"],
        true
    );

    // An edit posted with the etag the form was read at, after a change elsewhere: refused
    // (412) and shown, not written over.
    let stale = stored["etag"].as_str().unwrap().to_string();
    let mut edit = job.to_vec();
    edit.retain(|(k, _)| *k != "value");
    edit.push(("etag", stale.as_str()));
    edit.push(("value", "25"));
    let refused = post_form(
        &http,
        &server.base,
        &cookie,
        &csrf,
        "/scheduled-jobs/nightly",
        &edit,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::PRECONDITION_FAILED);
    assert!(refused.text().await.unwrap().contains("id=\"refusal\""));
    assert_eq!(
        api.get("/scheduledJobs/nightly").await.ok(200)["data"][0]["value"],
        19
    );
    // With the current etag (as the edit page carries it) it is written.
    let current = api.get("/scheduledJobs/nightly").await.ok(200)["etag"]
        .as_str()
        .unwrap()
        .to_string();
    let edit_page = http
        .get(format!("{}/scheduled-jobs/nightly", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(unescape(&edit_page).contains(&format!("name=\"etag\" value=\"{current}\"")));
    let mut edit = job.to_vec();
    edit.retain(|(k, _)| *k != "value");
    edit.extend([
        ("etag", current.as_str()),
        ("value", "25"),
        ("enabled", "on"),
    ]);
    let saved = post_form(
        &http,
        &server.base,
        &cookie,
        &csrf,
        "/scheduled-jobs/nightly",
        &edit,
    )
    .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let after = api.get("/scheduledJobs/nightly").await;
    assert_eq!(after.ok(200)["data"][0]["value"], 25);
}

#[tokio::test]
async fn an_administrator_creates_a_token_whose_value_is_shown_once_and_works() {
    let server = Server::start().await;
    let http = client();
    let cookie = session_cookie(&sign_in(&http, &server.base, &server.admin_token).await);
    let csrf = csrf_of_page(&http, &server.base, &cookie, "/tokens").await;
    let created = post_form(
        &http,
        &server.base,
        &cookie,
        &csrf,
        "/tokens",
        &[("id", "ci-bot"), ("role", OPERATOR)],
    )
    .await;
    assert_eq!(created.status(), StatusCode::OK);
    let html = created.text().await.unwrap();
    let marker = "<pre id=\"token-value\">";
    let start = html.find(marker).expect("the new value") + marker.len();
    let value = unescape(&html[start..start + html[start..].find("</pre>").unwrap()]);
    server.client(&value).get("/jobs").await.ok(200);
    server
        .client(&value)
        .get("/apiTokens")
        .await
        .error(403, "Forbidden");
    // Listed afterwards without its value.
    let list = http
        .get(format!("{}/tokens", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains("ci-bot") && !list.contains("token-value"));
    let deleted = post_form(
        &http,
        &server.base,
        &cookie,
        &csrf,
        "/tokens/ci-bot/delete",
        &[],
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    server
        .client(&value)
        .get("/jobs")
        .await
        .error(401, "Unauthorized");
}

#[tokio::test]
async fn a_job_s_devices_filter_by_status_reason_and_id_prefix_on_the_page_and_in_the_csv() {
    // Devices that never connect: each fails `offline` after a second.
    let server = Server::start_with_env(&[("FLOTILLA_JOB_DEVICE_TIMEOUT_SECS", "1")]).await;
    let http = client();
    let api = server.admin();
    one_controller_in_group_all(&api).await;
    for id in ["a-1", "a-2", "b-1", "b-2", "b-3"] {
        api.put(
            &format!("/devices/{id}"),
            serde_json::json!({"template": CONTROLLER}),
        )
        .await
        .ok(200);
    }
    api.put(
        "/jobs/offline",
        serde_json::json!({
            "group": "all",
            "data": [{"type": "command", "target": CONTROLLER, "path": "reboot", "value": 1}]
        }),
    )
    .await
    .ok(200);
    let job = wait_job(&api, "offline", &["complete"]).await;
    assert_eq!(job["progress"]["failed"], 6, "{job}");
    let cookie = session_cookie(&sign_in(&http, &server.base, &server.admin_token).await);
    let get = |path: String| {
        let http = http.clone();
        let cookie = cookie.clone();
        let base = server.base.clone();
        async move {
            let response = http
                .get(format!("{base}{path}"))
                .header(COOKIE, cookie)
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    // The device table's rows, by id.
    let rows = |html: &str| -> Vec<String> {
        html.split("<tr><td><a href=\"/devices/")
            .skip(1)
            .map(|row| row[..row.find('"').unwrap()].to_string())
            .collect()
    };

    let (status, page) = get("/jobs/offline?status=failed&reason=offline&prefix=b-".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows(&page), ["b-1", "b-2", "b-3"]);
    // Grouped by reason: all six offline.
    assert!(
        page.contains("reason=offline\">offline</a></td><td class=\"num\">6<"),
        "{page}"
    );
    let (_, page) = get("/jobs/offline?status=failed&prefix=a".into()).await;
    assert_eq!(rows(&page), ["a-1", "a-2"]);
    let (_, page) = get("/jobs/offline?reason=rejected".into()).await;
    assert!(rows(&page).is_empty() && page.contains("No device matches."));
    let (_, page) = get("/jobs/offline?status=completed".into()).await;
    assert!(rows(&page).is_empty());
    let (status, _) = get("/jobs/offline?status=exploded".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, csv) =
        get("/jobs/offline/export.csv?status=failed&reason=offline&prefix=a-".into()).await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "deviceId,status,batch,reasonCode,reason,responseCode,response"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with("a-1,failed,1,offline,"), "{csv}");
    assert!(lines[2].starts_with("a-2,failed,1,offline,"), "{csv}");
    let (_, all) = get("/jobs/offline/export.csv".into()).await;
    assert_eq!(all.lines().count(), 7, "{all}");
}

#[tokio::test]
async fn a_running_job_s_stream_ends_when_its_token_is_deleted() {
    let server = Server::start().await;
    let http = client();
    let api = server.admin();
    // dev-1 never connects: the command job waits for it (minutes), so it stays running.
    one_controller_in_group_all(&api).await;
    api.put(
        "/jobs/waiting",
        serde_json::json!({
            "group": "all",
            "data": [{"type": "command", "target": CONTROLLER, "path": "reboot", "value": 1}]
        }),
    )
    .await
    .ok(200);
    wait_job(&api, "waiting", &["running"]).await;
    let value = api.create_token("watcher", OPERATOR).await;
    let cookie = session_cookie(&sign_in(&http, &server.base, &value).await);
    let page = http
        .get(format!("{}/jobs/waiting", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("sse-connect=\"/jobs/waiting/stream\""),
        "{page}"
    );

    let mut stream = http
        .get(format!("{}/jobs/waiting/stream", server.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("id=\"job-status\">running<") {
        let chunk = stream.chunk().await.unwrap().expect("the stream is open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    api.delete("/apiTokens/watcher").await;
    // The stream ends by itself (it looks at the token every second; the minute is only there
    // so that a stream that never ends fails the test instead of hanging it).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its token: {seen}");
    assert!(!seen.contains("event: end"), "{seen}");
    assert_eq!(api.get("/jobs/waiting").await.ok(200)["status"], "running");
}
