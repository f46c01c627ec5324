//! The registry's `[rules]` (`keyhost rules`): rules over every identity's
//! keys that hold for every key written, through the CLI and the API, at
//! any registry size, and that no key can lift.

use serde_json::{Value, json};

use crate::support::{Sandbox, Server, http};

fn create_through_api(server: &Server, key: &str, body: Value) -> (u16, Value) {
    let mut response = http()
        .post(server.url("/v1/keys"))
        .header("authorization", &format!("Bearer {key}"))
        .send_json(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The rules refuse in both paths, and the same way whether key writes
/// rewrite the registry or go to its changes file (from 2 keys on here).
#[test]
fn each_rule_holds_in_the_cli_and_the_api_whatever_the_registry_size() {
    for changes_from in ["1000", "2"] {
        let s = Sandbox::bare();
        s.ok(&["init", "--changes-from-keys", changes_from]);
        let s = s.with_people();
        // Made before the rules, these keys never expire: rules hold for
        // keys written from then on.
        let (_, alice) = s.create(&["--as", "user:alice", "--name", "admin"]);
        let (_, bob) = s.create(&["--as", "user:bob", "--name", "bob"]);
        for n in 0..3 {
            s.create(&["--as", "user:alice", "--name", &format!("filler {n}")]);
        }
        s.ok(&["rules", "set", "create_keys", "user:alice"]);
        s.ok(&["rules", "set", "max_key_lifetime", "30d"]);
        s.ok(&["rules", "set", "require_expiry", "true"]);
        let server = s.serve(&[]);

        // Who may create keys.
        let refused = s.refused(&[
            "create",
            "--as",
            "user:bob",
            "--name",
            "x",
            "--expires",
            "1d",
        ]);
        assert!(
            refused.stderr.contains("the rule create_keys"),
            "{}",
            refused.stderr
        );
        let (status, answer) =
            create_through_api(&server, &bob, json!({ "name": "x", "expires": "1d" }));
        assert_eq!(status, 403, "{changes_from}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("create_keys")
        );

        // The longest lifetime, and a required expiry.
        for expires in [None, Some("31d")] {
            let mut args = vec!["create", "--as", "user:alice", "--name", "x"];
            args.extend(expires.iter().flat_map(|e| ["--expires", e]));
            let refused = s.refused(&args);
            assert!(
                refused.stderr.contains("the rule max_key_lifetime"),
                "{}",
                refused.stderr
            );
            let mut body = json!({ "name": "x" });
            if let Some(expires) = expires {
                body["expires"] = json!(expires);
            }
            let (status, answer) = create_through_api(&server, &alice, body);
            assert_eq!(status, 403, "{changes_from} {expires:?}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains("the rule max_key_lifetime"), "{message}");
        }
        let (ok, _) = s.create(&["--as", "user:alice", "--name", "fine", "--expires", "29d"]);
        let refused = s.refused(&["update", &ok, "--as", "user:alice", "--expires", "40d"]);
        assert!(
            refused.stderr.contains("max_key_lifetime"),
            "{}",
            refused.stderr
        );
        s.refused(&["update", &ok, "--as", "user:alice", "--expires", "never"]);
        let (status, _) =
            create_through_api(&server, &alice, json!({ "name": "api", "expires": "7d" }));
        assert_eq!(status, 201, "{changes_from}");
        s.ok(&["rules", "unset", "max_key_lifetime"]);
        let refused = s.refused(&["create", "--as", "user:alice", "--name", "x"]);
        assert!(
            refused.stderr.contains("the rule require_expiry"),
            "{}",
            refused.stderr
        );

        // No key lifts a rule: the API has no way to change them, and a
        // key's own change cannot carry one.
        let mut response = http()
            .patch(server.url(&format!("/v1/keys/{ok}")))
            .header("authorization", &format!("Bearer {alice}"))
            .send_json(json!({ "rules": { "require_expiry": false } }))
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        let _ = response.body_mut().read_to_string();
        assert!(s.registry_text().contains("require_expiry = true"));
    }
}

#[test]
fn an_account_allow_list_narrows_every_key_and_no_key_reaches_past_it() {
    let s = Sandbox::new().with_people();
    let (open, secret) = s.create(&["--as", "user:alice", "--name", "open"]);
    let (wide, _) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "wide",
        "--allow-ip",
        "192.168.0.0/16",
    ]);

    // Refused while a key reaches outside it, naming the key; nothing written.
    let refused = s.refused(&["rules", "set", "allowed_ips", "10.0.0.0/8"]);
    assert!(refused.stderr.contains(&wide), "{}", refused.stderr);
    s.ok(&[
        "update",
        &wide,
        "--as",
        "user:alice",
        "--allow-ip",
        "10.1.0.0/16",
    ]);
    let set = s.ok(&["rules", "set", "allowed_ips", "10.0.0.0/8", "172.16.0.0/12"]);
    assert_eq!(set["keys_given_addresses"], json!([open]));

    // The key that had none now has the rule's, and checks by it.
    assert_eq!(
        s.ok(&["show", &open])["key"]["allowed_ips"],
        json!(["10.0.0.0/8", "172.16.0.0/12"])
    );
    assert_eq!(s.decide(&secret, &["--ip", "10.9.9.9"]), "allow");
    assert_eq!(s.decide(&secret, &["--ip", "192.0.2.1"]), "ip_not_allowed");

    // New keys, and changed ones, only narrow it.
    let refused = s.refused(&[
        "create",
        "--as",
        "user:alice",
        "--name",
        "x",
        "--allow-ip",
        "0.0.0.0/0",
    ]);
    assert!(
        refused.stderr.contains("the rule allowed_ips"),
        "{}",
        refused.stderr
    );
    let (inside, _) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "in",
        "--allow-ip",
        "10.2.0.0/16",
    ]);
    s.refused(&[
        "update",
        &inside,
        "--as",
        "user:alice",
        "--allow-ip",
        "192.0.2.0/24",
    ]);
    s.ok(&["update", &inside, "--as", "user:alice", "--any-ip"]);
    assert_eq!(
        s.ok(&["show", &inside])["key"]["allowed_ips"],
        json!(["10.0.0.0/8", "172.16.0.0/12"]),
        "any address, under the rule, is the rule's"
    );
    let (plain, _) = s.create(&["--as", "user:alice", "--name", "plain"]);
    assert_eq!(
        s.ok(&["show", &plain])["key"]["allowed_ips"],
        json!(["10.0.0.0/8", "172.16.0.0/12"])
    );

    // Lifted, the keys keep the addresses they were given.
    s.ok(&["rules", "unset", "allowed_ips"]);
    let shown = s.ok(&["rules", "show"]);
    assert!(shown["rules"].get("allowed_ips").is_none(), "{shown}");
    assert_eq!(s.decide(&secret, &["--ip", "192.0.2.1"]), "ip_not_allowed");

    // Bad values say what and where.
    let bad = s.run(&["rules", "set", "allowed_ips", "10.0.0.0/33"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let bad = s.run(&["rules", "set", "create_keys", "user:nobody"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let bad = s.run(&["rules", "set", "require_expiry", "maybe"]);
    assert!(
        bad.code == 2 && bad.stderr.contains("require_expiry"),
        "{}",
        bad.stderr
    );
}
