//! The HTTP API's OpenAPI document against what `keyhost serve` answers:
//! every route the router has is described and every description is a
//! route, each operation's real answer fits its schema, and the copy in the
//! book is the one serve serves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use crate::support::{Sandbox, Server, http};

const METHODS: [&str; 8] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];

fn document(server: &Server) -> Value {
    let mut answer = http().get(&server.url("/openapi.json")).call().unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let text = answer.body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).expect("/openapi.json is JSON")
}

/// The routes serve's router is built with, read from its source: each
/// `.route("PATH", …)`, with axum's `{*rest}` and the `/auth/` variant in
/// OpenAPI's form (a path parameter `{path}`).
fn routes_in_source() -> BTreeSet<String> {
    let serve = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/serve");
    let route = regex::Regex::new(r#"\.route\(\s*"([^"]*)""#).unwrap();
    let wildcard = regex::Regex::new(r"\{\*[a-z_]+\}").unwrap();
    let mut routes = BTreeSet::new();
    let mut files = vec![serve];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // The test router of serve's own unit tests is not serve's.
        let text = text.split("#[cfg(test)]").next().unwrap();
        for found in route.captures_iter(text) {
            let path = wildcard.replace(&found[1], "{path}").to_string();
            let path = if path == "/auth/" {
                "/auth/{path}".to_string()
            } else {
                path
            };
            routes.insert(path);
        }
    }
    routes
}

#[test]
fn the_openapi_document_describes_every_route_and_no_other() {
    let server = Sandbox::new().serve(&[]);
    let doc = document(&server);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1: {}",
        doc["openapi"]
    );
    let described: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routed = routes_in_source();
    assert!(
        routed.len() >= 15,
        "the scan found serve's routes: {routed:?}"
    );
    let undescribed: Vec<_> = routed.difference(&described).collect();
    let unrouted: Vec<_> = described.difference(&routed).collect();
    assert!(
        undescribed.is_empty(),
        "routes the document does not describe: {undescribed:?}"
    );
    assert!(
        unrouted.is_empty(),
        "described paths with no route: {unrouted:?}"
    );

    // A method the document does not give a path is not answered there.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", "kid_none")
            .replace("{action}", "lock")
            .replace("{path}", "x");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                continue;
            }
            let request = ureq::http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(server.url(&concrete))
                .body(String::new())
                .unwrap();
            let status = http().run(request).unwrap().status().as_u16();
            assert_eq!(
                status, 405,
                "{method} {path} is not described, so not answered"
            );
        }
    }
}

#[test]
fn the_book_keeps_the_openapi_document_serve_answers() {
    let server = Sandbox::new().serve(&[]);
    let served = serde_json::to_string_pretty(&document(&server)).unwrap() + "\n";
    crate::support::docs::keep_in_step(
        "docs/src/reference/openapi.json",
        &served,
        "serve's /openapi.json",
    );
}

/// One request: its method, path (as sent), body and headers, and the
/// document's path it is an operation of.
struct Call<'a> {
    method: &'a str,
    template: &'a str,
    path: String,
    headers: Vec<(&'a str, String)>,
    body: Option<(&'a str, String)>,
}

impl<'a> Call<'a> {
    fn new(method: &'a str, template: &'a str) -> Call<'a> {
        Call {
            method,
            template,
            path: template.to_string(),
            headers: Vec::new(),
            body: None,
        }
    }
    fn path(mut self, path: String) -> Self {
        self.path = path;
        self
    }
    fn key(mut self, key: &str) -> Self {
        self.headers
            .push(("authorization", format!("Bearer {key}")));
        self
    }
    fn json(mut self, body: Value) -> Self {
        self.body = Some(("application/json", body.to_string()));
        self
    }
    fn form(mut self, body: &str) -> Self {
        self.body = Some(("application/x-www-form-urlencoded", body.to_string()));
        self
    }
}

/// Sends `call` and checks its answer against the document: the status is
/// one the operation lists, the content type one it gives for that status,
/// and a JSON body fits the schema. The answer's JSON, or `Null`.
fn answered(server: &Server, doc: &Value, call: &Call) -> (u16, Value) {
    let mut request = ureq::http::Request::builder()
        .method(call.method.to_uppercase().as_str())
        .uri(server.url(&call.path));
    for (name, value) in &call.headers {
        request = request.header(*name, value);
    }
    let text = match &call.body {
        Some((content_type, text)) => {
            request = request.header("content-type", *content_type);
            text.clone()
        }
        None => String::new(),
    };
    let mut response = http().run(request.body(text).unwrap()).expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    let what = format!("{} {} ({status})", call.method, call.path);
    let operation = &doc["paths"][call.template][call.method];
    assert!(
        operation.is_object(),
        "{what}: the document has no {} {}",
        call.method,
        call.template
    );
    let described = &operation["responses"][status.to_string()];
    assert!(
        described.is_object(),
        "{what}: the document lists no {status}: {body}"
    );
    let Some(content) = described["content"].as_object() else {
        assert!(
            body.is_empty() || call.method == "head",
            "{what}: described without a body, answered {body:?}"
        );
        return (status, Value::Null);
    };
    let media = content
        .keys()
        .find(|media| content_type.starts_with(media.as_str()))
        .unwrap_or_else(|| {
            panic!(
                "{what}: answered {content_type:?}, described {:?}",
                content.keys()
            )
        });
    let Some(schema) = content[media].get("schema") else {
        return (status, Value::Null);
    };
    let instance: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {body}"));
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
    let problems: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(problems.is_empty(), "{what}: {problems:?}\n{instance:#}");
    (status, instance)
}

#[test]
fn every_operation_answers_as_its_schema_says() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "admin"]);
    let credential = s.ok(&["replica", "add", "edge-1"])["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let server = s.serve(&[]);
    let doc = document(&server);
    let mut covered: BTreeMap<(String, String), u16> = BTreeMap::new();
    let mut call = |call: Call| {
        let answer = answered(&server, &doc, &call);
        covered.insert(
            (call.template.to_string(), call.method.to_string()),
            answer.0,
        );
        answer
    };

    for method in METHODS {
        assert_eq!(
            call(Call::new(method, "/auth").key(&alice)).0,
            200,
            "{method} /auth"
        );
        let deep = Call::new(method, "/auth/{path}").path("/auth/a/b".into());
        assert_eq!(call(deep.key(&alice)).0, 200, "{method} /auth/a/b");
    }
    assert_eq!(call(Call::new("get", "/auth")).0, 401);
    assert_eq!(
        call(
            Call::new("get", "/auth/{path}")
                .path("/auth/".into())
                .key("kh_nope")
        )
        .0,
        401
    );
    let (status, verdict) =
        call(Call::new("post", "/v1/keys/verify").json(json!({ "key": alice })));
    assert_eq!((status, verdict["valid"].as_bool()), (200, Some(true)));
    let (status, token) = call(Call::new("post", "/identity/token").form(&format!(
        "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey={alice}"
    )));
    assert_eq!(status, 200, "{token}");
    assert_eq!(
        call(Call::new("post", "/identity/token").form("grant_type=x")).0,
        400
    );
    let (_, jwks) = call(Call::new("get", "/identity/keys"));
    assert!(!jwks["keys"].as_array().unwrap().is_empty());

    let (status, created) = call(
        Call::new("post", "/v1/keys")
            .key(&alice)
            .json(json!({ "name": "ci" })),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let key_path = format!("/v1/keys/{id}");
    assert_eq!(call(Call::new("get", "/v1/keys").key(&alice)).0, 200);
    assert_eq!(call(Call::new("get", "/v1/keys")).0, 401);
    assert_eq!(
        call(
            Call::new("get", "/v1/keys/{id}")
                .path(key_path.clone())
                .key(&alice)
        )
        .0,
        200
    );
    let missing = Call::new("get", "/v1/keys/{id}").path("/v1/keys/kid_missing".into());
    assert_eq!(call(missing.key(&alice)).0, 404);
    let patch = Call::new("patch", "/v1/keys/{id}").path(key_path.clone());
    assert_eq!(
        call(patch.key(&alice).json(json!({ "description": "builds" }))).0,
        200
    );
    for action in ["lock", "unlock", "rotate"] {
        let act = Call::new("post", "/v1/keys/{id}/{action}").path(format!("{key_path}/{action}"));
        let (status, answer) = call(act.key(&alice));
        assert_eq!(status, 200, "{action}: {answer}");
    }
    let usage = Call::new("get", "/v1/keys/{id}/usage").path(format!("{key_path}/usage"));
    assert_eq!(call(usage.key(&alice)).0, 200);
    let report =
        Call::new("get", "/v1/reports/inactive").path("/v1/reports/inactive?for=1s".into());
    assert_eq!(call(report.key(&alice)).0, 200);
    let bad = Call::new("get", "/v1/reports/inactive").path("/v1/reports/inactive?for=soon".into());
    assert_eq!(call(bad.key(&alice)).0, 400);
    // This serve takes no GitHub alerts (no --github-keys).
    let leaks = Call::new("post", "/v1/leaks/github").json(json!([]));
    assert_eq!(call(leaks).0, 404);
    let (_, me) = call(Call::new("get", "/v1/me").key(&alice));
    assert_eq!(me["iam_id"], "user:alice");
    let delete = Call::new("delete", "/v1/keys/{id}").path(key_path.clone());
    assert_eq!(call(delete.key(&alice)).0, 200);

    assert_eq!(
        call(Call::new("get", "/v1/snapshot").key(&credential)).0,
        200
    );
    assert_eq!(call(Call::new("get", "/v1/snapshot")).0, 401);
    let (_, health) = call(Call::new("get", "/healthz"));
    assert_eq!(health["status"], "ok");
    assert_eq!(call(Call::new("get", "/metrics")).0, 200);
    assert_eq!(call(Call::new("get", "/openapi.json")).0, 200);
    assert_eq!(call(Call::new("get", "/")).0, 404);
    assert_eq!(call(Call::new("get", "/console")).0, 308);
    for page in ["/console/", "/console/app.js", "/console/app.css"] {
        assert_eq!(call(Call::new("get", page)).0, 200);
    }

    // Every operation the document describes was tried.
    let mut untried = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() && !covered.contains_key(&(path.clone(), method.into())) {
                untried.push(format!("{method} {path}"));
            }
        }
    }
    assert!(
        untried.is_empty(),
        "operations no request tried: {untried:?}"
    );
}

#[test]
fn the_schema_check_refuses_an_answer_that_does_not_fit() {
    let server = Sandbox::new().serve(&[]);
    let doc = document(&server);
    let mut root = json!({ "$ref": "#/components/schemas/KeyList" });
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root).unwrap();
    assert!(validator.is_valid(&json!({ "keys": [], "revision": 3 })));
    // A key without its fields, through the `$ref` to KeyView.
    assert!(!validator.is_valid(&json!({ "keys": [{ "id": 5 }], "revision": 3 })));
    assert!(!validator.is_valid(&json!({ "keys": [] })));
}
