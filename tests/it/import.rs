//! `keyhost import`: keys made elsewhere keep working as they are, found
//! by their hash alone; a file with a bad row writes nothing unless asked
//! to skip it; no secret is ever written or echoed.

use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{Sandbox, http};

const AWS_FIRST: &str = "AKIAexample-first-secret-0001";
const AWS_SECOND: &str = "AKIAexample-second-secret-0002";
const UNKEY: &str = "unkey_3ZaBcDeFgHiJkLmNoPqRsTu";

fn write(s: &Sandbox, name: &str, text: &str) -> String {
    let path = s.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The key id and owner `secret` is allowed as, with `args`.
fn allowed(s: &Sandbox, secret: &str, args: &[&str]) -> (String, String) {
    let (verdict, code) = s.check(secret, args);
    assert_eq!(
        (code, &verdict["decision"]),
        (0, &json!("allow")),
        "{verdict}"
    );
    (
        verdict["key_id"].as_str().unwrap().to_string(),
        verdict["owner"].as_str().unwrap().to_string(),
    )
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "a secret was written or echoed: {text}"
        );
    }
}

#[test]
fn imported_keys_are_checked_by_their_hash_in_the_cli_and_serve() {
    let s = Sandbox::new().with_people();
    let csv = write(
        &s,
        "aws.csv",
        &format!(
            "Name,Key,description,Enabled,usageplanIds\n\
             laptop,{AWS_FIRST},from AWS,TRUE,c7y23b\n\
             old,{AWS_SECOND},,FALSE,\n"
        ),
    );
    let run = s.run(&["import", "--as", "user:alice", &csv, "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_no_secret(&run.stdout, &[AWS_FIRST, AWS_SECOND]);
    assert_no_secret(&run.stderr, &[AWS_FIRST, AWS_SECOND]);
    assert!(run.stderr.contains("delete it"), "{}", run.stderr);
    let answer = run.json();
    let imported = answer["imported"].as_array().unwrap();
    assert_eq!(imported.len(), 2, "{answer}");
    assert_eq!(imported[0]["at"], "line 2");
    let first = imported[0]["id"].as_str().unwrap().to_string();
    assert_no_secret(&s.registry_text(), &[AWS_FIRST, AWS_SECOND]);
    let shown = s.ok(&["show", &first])["key"].clone();
    assert_eq!(shown["description"], "from AWS");
    assert_eq!(shown["owner"], "user:alice");

    assert_eq!(
        allowed(&s, AWS_FIRST, &[]),
        (first.clone(), "user:alice".into())
    );
    assert_eq!(s.decide(AWS_SECOND, &[]), "disabled");
    // One character off is no key, and says so as before.
    let typo = AWS_FIRST.replace("0001", "0002");
    assert_eq!(s.decide(&typo, &[]), "malformed");
    assert_eq!(s.decide("x", &[]), "malformed");

    let server = s.serve(&[]);
    let response = http()
        .get(server.url("/auth"))
        .header("x-api-key", AWS_FIRST)
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("x-keyhost-key-id")
            .and_then(|v| v.to_str().ok()),
        Some(first.as_str())
    );
    let refused = http()
        .get(server.url("/auth"))
        .header("x-api-key", &typo)
        .call()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    // scan finds keys by their shape: an imported one has none of it.
    let scan = s.run(&["scan", &csv, "--json"]);
    assert!(!scan.stdout.contains(&first), "{}", scan.stdout);
}

#[test]
fn unkeys_shape_imports_hashes_for_a_service_id_with_scopes_and_expiry() {
    let s = Sandbox::new().with_people();
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(UNKEY));
    let expires_ms = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400)
        * 1000;
    let file = write(
        &s,
        "unkey.json",
        &json!([{
            "apiId": "api_123",
            "name": "billing worker",
            "hash": { "value": hash, "variant": "sha256_base64" },
            "permissions": ["read"],
            "expires": expires_ms,
            "meta": { "team": "billing" }
        }])
        .to_string(),
    );
    let answer = s.ok(&[
        "import",
        "--as",
        "user:alice",
        "--for",
        "service-id:billing",
        &file,
    ]);
    let id = answer["imported"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(answer["imported"][0]["owner"], "service-id:billing");
    let shown = s.ok(&["show", &id])["key"].clone();
    assert_eq!(shown["scopes"], json!(["read"]));
    assert_eq!(shown["kind"], "service-id");
    assert!(shown["expires_at"].is_string());
    assert_eq!(
        allowed(&s, UNKEY, &["--scope", "read"]),
        (id.clone(), "service-id:billing".into())
    );
    assert_eq!(s.decide(UNKEY, &["--scope", "write"]), "insufficient_scope");

    // Only the service ID's owner imports keys for it.
    let refused = s.refused(&[
        "import",
        "--as",
        "user:bob",
        "--for",
        "service-id:billing",
        &file,
    ]);
    assert!(refused.stderr.contains("entry 1"), "{}", refused.stderr);
}

#[test]
fn a_file_with_a_bad_row_imports_nothing_unless_told_to_skip_it() {
    let s = Sandbox::new().with_people();
    let (_, existing) = s.create(&["--as", "user:alice", "--name", "made here"]);
    let hex: String = Sha256::digest(AWS_FIRST)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    // Rows wrong in the file itself: every one is named, nothing written.
    let before = std::fs::read(s.registry()).unwrap();
    let csv = write(
        &s,
        "bad.csv",
        &format!(
            "name,key,hash\n\
             good,{AWS_SECOND},\n\
             twice,{AWS_FIRST},\n\
             again,,{hex}\n\
             short,tooshort,\n"
        ),
    );
    let run = s.run(&["import", "--as", "user:alice", &csv]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    for said in [
        "3 of its rows cannot be imported",
        "line 3: its secret is the same as line 4's",
        "line 4: its secret is the same as line 3's",
        "line 5: a secret is 16 to 256 characters long",
    ] {
        assert!(run.stderr.contains(said), "{said:?} in {}", run.stderr);
    }
    assert_no_secret(&run.stderr, &[AWS_FIRST, AWS_SECOND, "tooshort"]);
    assert!(std::fs::read(s.registry()).unwrap() == before);

    // Rows the registry's rules refuse: a secret it already holds, a name
    // with a control character. The first one met stops the import.
    let ruled = write(
        &s,
        "ruled.csv",
        &format!(
            "name,key\n\
             fine,{AWS_SECOND}\n\
             copy,{existing}\n\
             \"bell\u{7}\",{AWS_FIRST}\n"
        ),
    );
    let run = s.run(&["import", "--as", "user:alice", &ruled]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("line 3") && run.stderr.contains("already"),
        "{}",
        run.stderr
    );
    assert_no_secret(&run.stderr, &[AWS_SECOND, &existing, AWS_FIRST]);
    assert!(std::fs::read(s.registry()).unwrap() == before);

    // --skip-bad imports the good rows and says what it skipped.
    let run = s.run(&[
        "import",
        "--as",
        "user:alice",
        &ruled,
        "--skip-bad",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let answer = run.json();
    assert_eq!(answer["imported"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["imported"][0]["at"], "line 2");
    let skipped: Vec<&str> = answer["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bad| bad["at"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["line 3", "line 4"], "{answer}");
    assert_no_secret(&run.stdout, &[AWS_SECOND, &existing, AWS_FIRST]);
    assert_no_secret(&s.registry_text(), &[AWS_SECOND, AWS_FIRST]);
    assert_eq!(s.decide(AWS_SECOND, &[]), "allow");

    // A file whose form is not known is refused before anything is read.
    let unknown = write(&s, "keys.txt", "name,key\n");
    let run = s.run(&["import", "--as", "user:alice", &unknown]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--format"), "{}", run.stderr);
}
