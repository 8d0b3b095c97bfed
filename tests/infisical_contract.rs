//! Contract tests that pin the Infisical emulator to the real API's documented shapes
//! (`infisical-api.md`): paths, fields, status codes and error bodies, authentication and
//! token lifetimes, secrets and folders, permissions, the fault switches and seeding.
//! The client's behaviour against the emulator is tested in `infisical_client.rs`.

mod common;

use std::time::Duration;

use common::infisical::{
    acme, assert_error, body, seed, start, start_with, status_json, CLIENT_ID, CLIENT_SECRET,
    MASTER, OTHER_SECRET, OUTSIDER_ID, PROJECT, SHORT_ID, STRIPE, VIEWER_ID,
};
use serde_json::{json, Value};
use tenant_vault::infisical::{EmulatorConfig, Faults, InfisicalClient, InfisicalConfig, Seed};

#[tokio::test]
async fn login_answers_the_documented_fields() {
    let env = start().await;
    let r = env
        .http
        .post(env.url("/api/v1/auth/universal-auth/login"))
        .json(&json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tokenType"], "Bearer");
    assert_eq!(v["expiresIn"], 7200);
    assert_eq!(v["accessTokenMaxTTL"], 2_592_000);
    let token = v["accessToken"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    assert_eq!(env.emu().stats().logins, 1);
}

#[tokio::test]
async fn login_failures_are_401_and_validation_is_422() {
    let env = start().await;
    let login = |b: Value| {
        let env = &env;
        async move {
            let r = env
                .http
                .post(env.url("/api/v1/auth/universal-auth/login"))
                .json(&b)
                .send()
                .await
                .unwrap();
            status_json(r).await
        }
    };
    let (s, v) = login(json!({"clientId": CLIENT_ID, "clientSecret": "wrong"})).await;
    assert_eq!(s, 401);
    assert_error(&v, 401, "Invalid credentials", "UnauthorizedError");
    let (s, v) = login(json!({"clientId": "nobody", "clientSecret": "x"})).await;
    assert_eq!(s, 401);
    assert_error(&v, 401, "Invalid credentials", "UnauthorizedError");
    let (s, v) = login(json!({"clientId": CLIENT_ID})).await;
    assert_eq!(s, 422);
    assert_eq!(v["error"], "ValidationFailure");
    assert_eq!(v["message"][0]["path"], json!(["clientSecret"]));
    assert_eq!(v["message"][0]["message"], "Required");
    assert_eq!(env.emu().stats().logins, 0);
}

#[tokio::test]
async fn bad_tokens_split_into_401_and_403_token_error() {
    let env = start().await;
    let get = |auth: Option<String>| {
        let env = &env;
        async move {
            let mut rb = env
                .http
                .get(env.url("/api/v3/secrets/raw/STRIPE_KEY"))
                .query(&[("workspaceId", PROJECT), ("environment", "dev")])
                .query(&acme());
            if let Some(a) = auth {
                rb = rb.header("authorization", a);
            }
            status_json(rb.send().await.unwrap()).await
        }
    };
    let (s, v) = get(None).await;
    assert_eq!(s, 401);
    assert_error(&v, 401, "Token missing", "UnauthorizedError");

    let malformed = "The provided access token is malformed. Please use a valid token or generate a new one and try again.";
    let (s, v) = get(Some("Bearer not-a-jwt".into())).await;
    assert_eq!(s, 403);
    assert_error(&v, 403, malformed, "TokenError");
    let (s, v) = get(Some("Basic Zm9vOmJhcg==".into())).await;
    assert_eq!(s, 403);
    assert_error(&v, 403, malformed, "TokenError");

    // A real token with its signature replaced.
    let token = env.token().await;
    let (head, _) = token.rsplit_once('.').unwrap();
    let (s, v) = get(Some(format!(
        "Bearer {head}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    )))
    .await;
    assert_eq!(s, 403);
    assert_error(&v, 403, "invalid signature", "TokenError");

    // Revoked: 401.
    let r = env
        .http
        .post(env.url("/api/v1/auth/token/revoke"))
        .json(&json!({"accessToken": token}))
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 200);
    assert_eq!(v["message"], "Successfully revoked access token");
    let (s, v) = get(Some(format!("Bearer {token}"))).await;
    assert_eq!(s, 401);
    assert_error(
        &v,
        401,
        "No identity access token found",
        "UnauthorizedError",
    );
}

#[tokio::test]
async fn expired_token_is_401_then_deleted() {
    let env = start().await;
    env.put_faults(json!({"token_ttl_secs": 1})).await;
    let token = env.token().await;
    let (s, _) = env.get_secret(&token, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, v) = env.get_secret(&token, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 401);
    assert_error(
        &v,
        401,
        "Failed to renew MI access token due to TTL expiration",
        "UnauthorizedError",
    );
    let (s, v) = env.get_secret(&token, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 401);
    assert_eq!(v["message"], "No identity access token found");
}

#[tokio::test]
async fn renew_extends_below_max_ttl_and_deletes_past_it() {
    let env = start().await;
    // TTL 120 s below max TTL 3600 s: renew works and returns a token that works.
    env.put_faults(json!({"token_ttl_secs": 120})).await;
    let token = env.login_as(SHORT_ID, OTHER_SECRET).await;
    let r = env
        .http
        .post(env.url("/api/v1/auth/token/renew"))
        .json(&json!({"accessToken": token}))
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expiresIn"], 120);
    assert_eq!(v["accessTokenMaxTTL"], 3600);
    assert_eq!(v["tokenType"], "Bearer");
    let renewed = v["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(env.get_secret(&renewed, "STRIPE_KEY", &acme()).await.0, 200);

    // Default identity with TTL == max TTL: the renew fails and deletes the token.
    env.put_faults(json!({"token_ttl_secs": 2_592_000})).await;
    let token = env.token().await;
    let r = env
        .http
        .post(env.url("/api/v1/auth/token/renew"))
        .json(&json!({"accessToken": token}))
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 401);
    assert_error(
        &v,
        401,
        "Failed to renew MI access token past its Max TTL expiration",
        "UnauthorizedError",
    );
    let (s, v) = env.get_secret(&token, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 401);
    assert_eq!(v["message"], "No identity access token found");
}

#[tokio::test]
async fn secret_lifecycle_shapes_and_versions() {
    let env = start().await;
    let t = env.token().await;
    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "API_KEY",
            body(
                "/tenants/initech",
                json!({"secretValue": "v1", "secretComment": "c"}),
            ),
        )
        .await;
    assert_eq!(s, 200, "create answers 200, never 201");
    let sec = &v["secret"];
    for field in [
        "id",
        "_id",
        "workspace",
        "environment",
        "version",
        "type",
        "secretKey",
        "secretValue",
        "secretComment",
        "createdAt",
        "updatedAt",
    ] {
        assert!(sec.get(field).is_some(), "missing {field} in {sec}");
    }
    assert_eq!(sec["id"], sec["_id"]);
    assert_eq!(sec["workspace"], PROJECT);
    assert_eq!(sec["environment"], "dev");
    assert_eq!(sec["version"], 1);
    assert_eq!(sec["type"], "shared");
    assert_eq!(sec["secretKey"], "API_KEY");
    assert_eq!(sec["secretValue"], "v1");
    assert_eq!(sec["secretComment"], "c");
    assert!(sec["createdAt"].as_str().unwrap().ends_with('Z'));

    let (s, v) = env
        .write(
            reqwest::Method::PATCH,
            &t,
            "API_KEY",
            body("/tenants/initech", json!({"secretValue": "v2"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["secret"]["version"], 2);

    let init = [("secretPath", "/tenants/initech")];
    let (s, v) = env.get_secret(&t, "API_KEY", &init).await;
    assert_eq!(s, 200);
    assert_eq!(v["secret"]["secretValue"], "v2");
    assert_eq!(v["secret"]["version"], 2);
    assert_eq!(v["secret"]["tags"], json!([]));

    let (s, v) = env
        .get_secret(
            &t,
            "API_KEY",
            &[("secretPath", "/tenants/initech"), ("version", "1")],
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["secret"]["secretValue"], "v1");
    assert_eq!(v["secret"]["version"], 1);
    let (s, v) = env
        .get_secret(
            &t,
            "API_KEY",
            &[("secretPath", "/tenants/initech"), ("version", "9")],
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&v, 404, "Secret with name 'API_KEY' not found", "NotFound");

    let (s, v) = env
        .write(
            reqwest::Method::DELETE,
            &t,
            "API_KEY",
            body("/tenants/initech", json!({})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["secret"]["secretValue"], "v2",
        "delete returns the deleted secret"
    );
    let (s, _) = env.get_secret(&t, "API_KEY", &init).await;
    assert_eq!(s, 404);
    let (s, v) = env
        .write(
            reqwest::Method::DELETE,
            &t,
            "API_KEY",
            body("/tenants/initech", json!({})),
        )
        .await;
    assert_eq!(s, 404);
    assert_error(
        &v,
        404,
        "Secret with name 'API_KEY' not found",
        "DeleteSecret",
    );
    let (s, v) = env
        .write(
            reqwest::Method::PATCH,
            &t,
            "NOPE",
            body("/tenants/acme", json!({"secretValue": "x"})),
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&v, 404, "Secret with name NOPE not found", "NotFound");
}

#[tokio::test]
async fn missing_secret_and_missing_folder_are_different_404s_but_list_is_200() {
    let env = start().await;
    let t = env.token().await;
    let (s, v) = env.get_secret(&t, "NEVER_CREATED", &acme()).await;
    assert_eq!(s, 404);
    assert_error(
        &v,
        404,
        "Secret with name 'NEVER_CREATED' not found",
        "NotFound",
    );

    let (s, v) = env
        .get_secret(&t, "STRIPE_KEY", &[("secretPath", "/tenants/nobody")])
        .await;
    assert_eq!(s, 404);
    assert_error(
        &v,
        404,
        "Folder with path '/tenants/nobody' in environment with slug 'dev' not found",
        "GetSecretByName",
    );

    // An existing environment without the folder, and an unknown environment.
    for env_slug in ["staging", "nope"] {
        let r = env
            .http
            .get(env.url("/api/v3/secrets/raw/STRIPE_KEY"))
            .query(&[
                ("workspaceId", PROJECT),
                ("environment", env_slug),
                ("secretPath", "/tenants/acme"),
            ])
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        let (s, v) = status_json(r).await;
        assert_eq!(s, 404);
        assert_eq!(
            v["message"],
            format!(
                "Folder with path '/tenants/acme' in environment with slug '{env_slug}' not found"
            )
        );
    }

    // Without secretPath the root is searched.
    let (s, v) = env.get_secret(&t, "STRIPE_KEY", &[]).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"], "NotFound");

    let empty = json!({"secrets": [], "imports": []});
    let (s, v) = env
        .list(
            &t,
            &[
                ("workspaceId", PROJECT),
                ("environment", "dev"),
                ("secretPath", "/tenants/nobody"),
            ],
        )
        .await;
    assert_eq!((s, &v), (200, &empty));
    let (s, v) = env
        .list(
            &t,
            &[
                ("workspaceId", PROJECT),
                ("environment", "nope"),
                ("secretPath", "/tenants/acme"),
            ],
        )
        .await;
    assert_eq!((s, &v), (200, &empty));

    let (s, v) = env
        .list(
            &t,
            &[("environment", "dev"), ("secretPath", "/tenants/acme")],
        )
        .await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Missing workspace id or environment", "BadRequest");
    let r = env
        .http
        .get(env.url("/api/v3/secrets/raw/STRIPE_KEY"))
        .query(&[("workspaceId", PROJECT), ("secretPath", "/tenants/acme")])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Missing environment", "BadRequest");

    let r = env
        .http
        .get(env.url("/api/v3/secrets/raw/STRIPE_KEY"))
        .query(&[
            ("workspaceId", "00000000-0000-0000-0000-000000000000"),
            ("environment", "dev"),
            ("secretPath", "/tenants/acme"),
        ])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"], "NotFound");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("Project with ID"));
}

#[tokio::test]
async fn list_shapes_and_recursion() {
    let env = start().await;
    let t = env.token().await;
    let (s, v) = env
        .list(
            &t,
            &[
                ("workspaceId", PROJECT),
                ("environment", "dev"),
                ("secretPath", "/tenants/acme"),
            ],
        )
        .await;
    assert_eq!(s, 200);
    let secrets = v["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2);
    assert!(secrets
        .iter()
        .all(|s| s["secretPath"] == "/tenants/acme" && s["tags"] == json!([])));
    assert!(
        v.get("imports").is_none(),
        "imports only with include_imports=true"
    );

    let (_, v) = env
        .list(
            &t,
            &[
                ("workspaceId", PROJECT),
                ("environment", "dev"),
                ("secretPath", "/tenants"),
            ],
        )
        .await;
    assert_eq!(
        v["secrets"],
        json!([]),
        "not recursive: /tenants itself holds nothing"
    );

    let (s, v) = env
        .list(
            &t,
            &[
                ("workspaceSlug", "tenant-vault"),
                ("environment", "dev"),
                ("secretPath", "/tenants"),
                ("recursive", "true"),
                ("include_imports", "true"),
            ],
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["imports"], json!([]));
    let mut got: Vec<(String, String)> = v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["secretPath"].as_str().unwrap().to_owned(),
                s["secretKey"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("/tenants/acme".to_owned(), "SENDGRID_TOKEN".to_owned()),
            ("/tenants/acme".to_owned(), "STRIPE_KEY".to_owned()),
            ("/tenants/globex".to_owned(), "STRIPE_KEY".to_owned()),
        ]
    );
}

#[tokio::test]
async fn values_are_trimmed_like_the_server() {
    let env = start().await;
    let t = env.token().await;
    let init = "/tenants/initech";
    let (_, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "PADDED",
            body(init, json!({"secretValue": "  padded value  "})),
        )
        .await;
    assert_eq!(v["secret"]["secretValue"], "padded value");
    let (_, v) = env
        .write(
            reqwest::Method::PATCH,
            &t,
            "PADDED",
            body(init, json!({"secretValue": "  line1\nline2\n"})),
        )
        .await;
    assert_eq!(v["secret"]["secretValue"], "line1\nline2\n");
    let (_, v) = env.get_secret(&t, "PADDED", &[("secretPath", init)]).await;
    assert_eq!(v["secret"]["secretValue"], "line1\nline2\n");
    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "EMPTY",
            body(init, json!({"secretValue": ""})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["secret"]["secretValue"], "");
}

#[tokio::test]
async fn writes_into_a_missing_folder_are_refused_and_create_nothing() {
    let env = start().await;
    let t = env.token().await;
    let nobody = "/tenants/nobody";
    let msg = "Folder with path '/tenants/nobody' in environment with slug 'dev' not found";
    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "K",
            body(nobody, json!({"secretValue": "v"})),
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&v, 404, msg, "CreateSecret");
    let (s, v) = env
        .write(
            reqwest::Method::PATCH,
            &t,
            "K",
            body(nobody, json!({"secretValue": "v"})),
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&v, 404, msg, "UpdateSecret");
    let (s, v) = env
        .write(reqwest::Method::DELETE, &t, "K", body(nobody, json!({})))
        .await;
    assert_eq!(s, 404);
    assert_error(&v, 404, msg, "DeleteSecret");
    let (s, v) = env.get_secret(&t, "K", &[("secretPath", nobody)]).await;
    assert_eq!(s, 404);
    assert_eq!(
        v["error"], "GetSecretByName",
        "the folder still does not exist"
    );
}

#[tokio::test]
async fn duplicate_create_is_400() {
    let env = start().await;
    let t = env.token().await;
    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "STRIPE_KEY",
            body("/tenants/acme", json!({"secretValue": "dup"})),
        )
        .await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Secret already exist", "BadRequest");
    let (_, v) = env.get_secret(&t, "STRIPE_KEY", &acme()).await;
    assert_eq!(v["secret"]["secretValue"], STRIPE, "unchanged");
}

#[tokio::test]
async fn secret_path_normalisation() {
    let env = start().await;
    let t = env.token().await;
    let (s, _) = env
        .get_secret(&t, "STRIPE_KEY", &[("secretPath", "/tenants/acme/")])
        .await;
    assert_eq!(s, 200, "trailing slash stripped");
    for (path, status) in [
        ("tenants/acme", 404),
        ("//tenants//acme", 404),
        ("/tenants/acme/../globex", 500),
    ] {
        let (s, v) = env
            .get_secret(&t, "STRIPE_KEY", &[("secretPath", path)])
            .await;
        assert_eq!(s, status, "{path}: {v}");
    }
    let (_, v) = env
        .get_secret(
            &t,
            "STRIPE_KEY",
            &[("secretPath", "/tenants/acme/../globex")],
        )
        .await;
    assert_error(&v, 500, "Something went wrong", "Find by secret path");
    // The router ignores a trailing slash on the URL.
    let r = env
        .http
        .get(env.url("/api/v3/secrets/raw/STRIPE_KEY/"))
        .query(&[
            ("workspaceId", PROJECT),
            ("environment", "dev"),
            ("secretPath", "/tenants/acme"),
        ])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_500_and_schema_errors_422() {
    let env = start().await;
    let t = env.token().await;
    let post_raw = |name: &str, raw: Vec<u8>| {
        let env = &env;
        let t = t.clone();
        let url = env.url(&format!("/api/v3/secrets/raw/{name}"));
        async move {
            let r = env
                .http
                .post(url)
                .bearer_auth(t)
                .header("content-type", "application/json")
                .body(raw)
                .send()
                .await
                .unwrap();
            status_json(r).await
        }
    };
    let (s, v) = post_raw("MAL", b"{not json".to_vec()).await;
    assert_eq!(s, 500);
    assert_error(&v, 500, "Something went wrong", "InternalServerError");

    let big = |n: usize| {
        serde_json::to_vec(&body(
            "/tenants/initech",
            json!({"secretValue": "A".repeat(n)}),
        ))
        .unwrap()
    };
    let (s, _) = post_raw("BIG900K", big(900 * 1024)).await;
    assert_eq!(s, 200, "900 KiB fits under the 1 MiB body limit");
    let (s, v) = post_raw("BIG1100K", big(1100 * 1024)).await;
    assert_eq!(s, 500, "over 1 MiB is a 500, not a 413");
    assert_eq!(v["error"], "InternalServerError");

    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "NOVAL",
            body("/tenants/initech", json!({})),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(v["error"], "ValidationFailure");
    assert_eq!(
        v["message"][0],
        json!({"code": "invalid_type", "expected": "string", "received": "undefined",
               "path": ["secretValue"], "message": "Required"})
    );
}

#[tokio::test]
async fn folders_create_list_and_idempotence() {
    let env = start().await;
    let t = env.token().await;
    let create = |name: &str, path: &str| {
        let env = &env;
        let b = json!({"workspaceId": PROJECT, "environment": "dev", "name": name, "path": path});
        let t = t.clone();
        async move {
            let r = env
                .http
                .post(env.url("/api/v1/folders"))
                .bearer_auth(t)
                .json(&b)
                .send()
                .await
                .unwrap();
            status_json(r).await
        }
    };
    let (s, v) = create("hooli", "/tenants").await;
    assert_eq!(s, 200);
    let f = &v["folder"];
    for field in [
        "id",
        "name",
        "version",
        "createdAt",
        "updatedAt",
        "envId",
        "parentId",
        "isReserved",
    ] {
        assert!(f.get(field).is_some(), "missing {field} in {f}");
    }
    assert_eq!(f["name"], "hooli");
    assert_eq!(f["isReserved"], false);
    let (s, again) = create("hooli", "/tenants").await;
    assert_eq!(s, 200, "an existing folder answers 200");
    assert_eq!(again["folder"]["id"], f["id"]);

    let (s, _) = create("x", "/nope/deeper").await;
    assert_eq!(s, 200, "missing parents are created on the way");
    let (s, v) = create("a.b", "/tenants").await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "BadRequest");

    let list = |path: &str| {
        let env = &env;
        let t = t.clone();
        let q = [
            ("workspaceId", PROJECT),
            ("environment", "dev"),
            ("path", path),
        ];
        let rb = env
            .http
            .get(env.url("/api/v1/folders"))
            .query(&q)
            .bearer_auth(t);
        async move { status_json(rb.send().await.unwrap()).await }
    };
    let (s, v) = list("/tenants").await;
    assert_eq!(s, 200);
    let mut names: Vec<&str> = v["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["acme", "globex", "hooli", "initech"]);
    let (_, v) = list("/nope").await;
    assert_eq!(
        v["folders"].as_array().unwrap().len(),
        1,
        "direct children only"
    );
    let (s, v) = list("/does-not-exist").await;
    assert_eq!((s, v), (200, json!({"folders": []})));
}

#[tokio::test]
async fn permissions_viewer_and_non_member() {
    let env = start().await;
    let viewer = env.login_as(VIEWER_ID, OTHER_SECRET).await;
    assert_eq!(env.get_secret(&viewer, "STRIPE_KEY", &acme()).await.0, 200);
    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &viewer,
            "NEWONE",
            body("/tenants/acme", json!({"secretValue": "x"})),
        )
        .await;
    assert_eq!(s, 403);
    assert_error(
        &v,
        403,
        "You are not allowed to create on secrets",
        "PermissionDenied",
    );

    let outsider = env.login_as(OUTSIDER_ID, OTHER_SECRET).await;
    let (s, v) = env.get_secret(&outsider, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 403);
    assert_eq!(v["message"], "You are not allowed to access this resource");
    assert_eq!(
        v["error"],
        format!("Identity is not a member of the specified project with ID '{PROJECT}'")
    );
}

#[tokio::test]
async fn rate_limit_switch_answers_429_with_retry_after_on_every_api_route() {
    let env = start().await;
    let t = env.token().await;
    let (s, v) = env
        .put_faults(json!({"rate_limit": true, "retry_after_secs": 7}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["rate_limit"], true);
    let r = env
        .get_secret_raw(&t, "STRIPE_KEY", &[("secretPath", "/tenants/acme")])
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert!(r.headers().contains_key("x-ratelimit-limit"));
    assert!(r.headers().contains_key("x-ratelimit-reset"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["statusCode"], 429);
    assert_eq!(v["error"], "RateLimitExceeded");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("Rate limit exceeded"));

    let r = env
        .http
        .post(env.url("/api/v1/auth/universal-auth/login"))
        .json(&json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let (s, _) = env
        .list(&t, &[("workspaceId", PROJECT), ("environment", "dev")])
        .await;
    assert_eq!(s, 429);

    let r = env
        .http
        .get(env.url("/_emulator/faults"))
        .send()
        .await
        .unwrap();
    let f: Faults = r.json().await.unwrap();
    assert!(f.rate_limit);
    assert_eq!(f.retry_after_secs, 7);
    env.put_faults(json!({"rate_limit": false})).await;
    assert_eq!(env.get_secret(&t, "STRIPE_KEY", &acme()).await.0, 200);
}

#[tokio::test]
async fn per_route_limiter_counts_per_pattern() {
    let env = start_with(EmulatorConfig {
        seed: seed(),
        rate_limit_per_minute: Some(3),
        ..Default::default()
    })
    .await;
    let t = env.token().await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = env
            .get_secret_raw(&t, "STRIPE_KEY", &[("secretPath", "/tenants/acme")])
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "3");
        remaining.push(
            r.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    // Same route pattern, another name: same bucket.
    let r = env
        .http
        .get(env.url("/api/v3/secrets/raw/SENDGRID_TOKEN"))
        .query(&[
            ("workspaceId", PROJECT),
            ("environment", "dev"),
            ("secretPath", "/tenants/acme"),
        ])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // The list route is its own bucket; a rejected login carries no x-ratelimit headers.
    let (s, _) = env
        .list(&t, &[("workspaceId", PROJECT), ("environment", "dev")])
        .await;
    assert_eq!(s, 200);
    let r = env
        .http
        .get(env.url("/api/v1/folders"))
        .query(&[("workspaceId", PROJECT), ("environment", "dev")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.headers().contains_key("x-ratelimit-limit"));
}

#[tokio::test]
async fn down_switch_answers_503_everywhere_but_the_control_plane() {
    let env = start().await;
    let t = env.token().await;
    env.put_faults(json!({"down": true})).await;
    let (s, v) = env.get_secret(&t, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 503);
    assert_eq!(v["statusCode"], 503);
    let r = env
        .http
        .post(env.url("/api/v1/auth/universal-auth/login"))
        .json(&json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let r = env
        .http
        .get(env.url("/api/v1/folders"))
        .query(&[("workspaceId", PROJECT), ("environment", "dev")])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let r = env
        .http
        .get(env.url("/_emulator/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["down"], true);
    assert_eq!(
        f,
        json!({"latency_ms": 0, "error_rate": 0.0, "rate_limit": false, "token_ttl_secs": 7200,
               "down": true, "retry_after_secs": 1, "fail_next": 0, "rate_limit_next": 0,
               "malformed_json": false})
    );
}

#[tokio::test]
async fn error_switches_and_fault_validation() {
    let env = start().await;
    let t = env.token().await;
    env.put_faults(json!({"error_rate": 1.0})).await;
    let (s, v) = env.get_secret(&t, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 500);
    assert_error(&v, 500, "Something went wrong", "InternalServerError");
    env.put_faults(json!({"error_rate": 0.0, "fail_next": 2}))
        .await;
    assert_eq!(env.get_secret(&t, "STRIPE_KEY", &acme()).await.0, 500);
    assert_eq!(env.get_secret(&t, "STRIPE_KEY", &acme()).await.0, 500);
    assert_eq!(env.get_secret(&t, "STRIPE_KEY", &acme()).await.0, 200);

    let (s, _) = env.put_faults(json!({"error_rate": 2.0})).await;
    assert_eq!(s, 400);
    let (s, _) = env.put_faults(json!({"explode": true})).await;
    assert_eq!(s, 400);
    assert_eq!(
        env.emu().faults().error_rate,
        0.0,
        "a refused change changes nothing"
    );
}

#[tokio::test]
async fn etag_and_unknown_routes() {
    let env = start().await;
    let t = env.token().await;
    let req = || {
        env.http
            .get(env.url("/api/v3/secrets/raw"))
            .query(&[
                ("workspaceId", PROJECT),
                ("environment", "dev"),
                ("secretPath", "/tenants/acme"),
            ])
            .bearer_auth(&t)
    };
    let r = req().send().await.unwrap();
    let etag = r.headers()["etag"].clone();
    let r = req().header("if-none-match", etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());

    let r = env
        .http
        .get(env.url("/api/v4/secrets?projectId=x"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 404);
    assert_eq!(
        v,
        json!({"message": "Route GET:/api/v4/secrets?projectId=x not found", "error": "Not Found", "statusCode": 404})
    );
}

#[tokio::test]
async fn seeding_from_a_file_and_through_the_control_api() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seed.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({
            "identities": [{"clientId": "dev-client", "clientSecret": "dev-secret"}],
            "projects": [{
                "id": "p1",
                "folders": {"dev": ["/tenants/empty"]},
                "secrets": {"dev": {"/tenants/acme": {"K": "  v  "}}}
            }]
        }))
        .unwrap(),
    )
    .unwrap();
    let seed = Seed::from_file(&file).unwrap();
    let env = start_with(EmulatorConfig {
        seed,
        ..Default::default()
    })
    .await;
    let t = env.login_as("dev-client", "dev-secret").await;
    let get = |name: &str, path: &str| {
        let rb = env
            .http
            .get(env.url(&format!("/api/v3/secrets/raw/{name}")))
            .query(&[
                ("workspaceId", "p1"),
                ("environment", "dev"),
                ("secretPath", path),
            ])
            .bearer_auth(&t);
        async move { status_json(rb.send().await.unwrap()).await }
    };
    let (s, v) = get("K", "/tenants/acme").await;
    assert_eq!(s, 200);
    assert_eq!(
        v["secret"]["secretValue"], "v",
        "seed values are trimmed too"
    );
    let (s, v) = get("K", "/tenants/empty").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (404, Some("NotFound")),
        "folder exists, secret not"
    );

    let r = env
        .http
        .post(env.url("/_emulator/seed"))
        .json(
            &json!({"projects": [{"id": "p1", "secrets": {"dev": {"/tenants/new": {"N": "n"}}}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get("N", "/tenants/new").await.0, 200);
    let r = env
        .http
        .post(env.url("/_emulator/seed"))
        .json(&json!({"projects": [{"id": "p1", "secrets": {"nope": {"/x": {"N": "n"}}}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown environment refused");
    assert!(Seed::from_file(dir.path().join("missing.json")).is_err());

    // The builder used by dev mode: one identity, one project, a master key.
    let built = Seed::single("p2", "id2", "secret2").with_secret(
        "p2",
        "dev",
        "/tenant-vault",
        "MASTER_ENCRYPTION_KEY_V1",
        MASTER,
    );
    env.emu().seed(&built).unwrap();
    let mut cfg = InfisicalConfig::new(&env.base, "id2", "secret2", "p2", "dev");
    cfg.request_timeout = Duration::from_secs(3);
    let c = InfisicalClient::new(cfg).unwrap();
    let key = c
        .get_secret("/tenant-vault", "MASTER_ENCRYPTION_KEY_V1", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.value.expose(), MASTER);
}
