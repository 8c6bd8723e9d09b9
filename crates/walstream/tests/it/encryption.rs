//! Issue 12, "Encryption with age": walstream's own (LTX) replicas encrypted to age recipients,
//! through the real binary, on moto and on a file replica. Objects hold no plaintext, restore
//! needs the right identity and writes nothing without it, `age -d` opens an object by hand, key
//! rotation and `walstream reencrypt` work end to end, damaged ciphertext and bad keys are named,
//! and a cut download of an encrypted object resumes.
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;

use super::fault_proxy::{FaultConfig, FaultProxy};
use super::faults::{app_db, moto, new_bucket, s3_url};
use super::util::{file_url, logical_digest, tempdir, walstream};

/// Row content no object may show in the clear.
const MARKER: &str = "walstream-age-marker-row-7c1e";

struct Key {
    secret_file: PathBuf,
    public: String,
}

fn key(dir: &Path, name: &str) -> Key {
    let id = age::x25519::Identity::generate();
    let secret_file = dir.join(format!("{name}.txt"));
    std::fs::write(
        &secret_file,
        format!(
            "# public key: {}\n{}\n",
            id.to_public(),
            id.to_string().expose_secret()
        ),
    )
    .unwrap();
    Key {
        secret_file,
        public: id.to_public().to_string(),
    }
}

/// A config for `db` replicating to `url` with the given identity files and recipients.
fn config(dir: &Path, name: &str, db: &Path, url: &str, ids: &[&Key], to: &[&Key]) -> PathBuf {
    let mut age = String::new();
    if !ids.is_empty() || !to.is_empty() {
        age.push_str("      age:\n        identities:\n");
        for k in ids {
            age.push_str(&format!("          - {}\n", k.secret_file.display()));
        }
        age.push_str("        recipients:\n");
        for k in to {
            age.push_str(&format!("          - {}\n", k.public));
        }
    }
    let p = dir.join(format!("{name}.yml"));
    std::fs::write(
        &p,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: \"{url}\"\n{age}",
            db.display()
        ),
    )
    .unwrap();
    p
}

/// Commits `rows` rows holding the marker and incompressible bytes.
fn write_rows(c: &rusqlite::Connection, rows: usize) {
    c.execute_batch("BEGIN").unwrap();
    for i in 0..rows {
        c.execute(
            "INSERT INTO t(body) VALUES (CAST(?1 AS BLOB) || randomblob(1000))",
            [format!("{MARKER}-{i}")],
        )
        .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
}

fn replicate_once(cfg: &Path) {
    walstream(&["replicate", "-once", "-config", cfg.to_str().unwrap()]).success();
}

fn restore(cfg: &Path, db: &Path, out: &Path) -> super::util::Run {
    walstream(&[
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        db.to_str().unwrap(),
    ])
}

/// Every LTX object of a file replica, with its bytes.
fn file_objects(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for level in 0..=9 {
        let Ok(rd) = std::fs::read_dir(root.join("ltx").join(level.to_string())) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "ltx") {
                let b = std::fs::read(&p).unwrap();
                out.push((p, b));
            }
        }
    }
    out.sort();
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Which of the plaintext signs `b` shows.
fn plaintext_signs(b: &[u8]) -> Vec<&'static str> {
    let mut found = Vec::new();
    if contains(b, MARKER.as_bytes()) {
        found.push("row content");
    }
    if contains(b, b"SQLite format 3") {
        found.push("SQLite header");
    }
    if contains(b, b"LTX1") {
        found.push("LTX magic");
    }
    found
}

/// One unsigned GET to moto.
fn moto_get(path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let endpoint = moto();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let i = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "GET {path}: {}",
        String::from_utf8_lossy(&resp[..i])
    );
    resp[i + 4..].to_vec()
}

fn moto_keys(bucket: &str) -> Vec<String> {
    let body = String::from_utf8(moto_get(&format!("/{bucket}?list-type=2"))).unwrap();
    assert!(!body.contains("<IsTruncated>true"), "more than one page");
    body.split("<Key>")
        .skip(1)
        .map(|r| r.split("</Key>").next().unwrap().to_string())
        .collect()
}

#[test]
fn encryption_s3_holds_no_plaintext_restores_and_age_cli_opens_objects() {
    let dir = tempdir();
    let (a, c_wrong) = (key(dir.path(), "a"), key(dir.path(), "c"));
    let (db, app) = app_db(dir.path());
    let bucket = new_bucket("age");
    let url = s3_url(&bucket, &moto());
    let cfg = config(dir.path(), "enc", &db, &url, &[&a], &[&a]);
    for _ in 0..3 {
        write_rows(&app, 100);
        replicate_once(&cfg);
    }
    // Control: the same content on a plain file replica shows every sign, so the grep can fail.
    let plain_root = dir.path().join("plain-replica");
    std::fs::create_dir_all(&plain_root).unwrap();
    let plain_cfg = config(dir.path(), "plain", &db, &file_url(&plain_root), &[], &[]);
    replicate_once(&plain_cfg);
    let plain = file_objects(&plain_root);
    let all_plain: Vec<u8> = plain.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(
        plaintext_signs(&all_plain),
        ["row content", "SQLite header", "LTX magic"]
    );

    // Every object on the store (read raw, at any depth under the replica): none of them.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let raw = walstream::storage::open_url(&url).unwrap();
    let objects: Vec<(String, Vec<u8>)> = rt.block_on(async {
        use futures::StreamExt;
        let mut out = Vec::new();
        for o in raw.list_objects("").await.unwrap() {
            let mut s = raw.open_object(&o.key, 0).await.unwrap();
            let mut b = Vec::new();
            while let Some(c) = s.next().await {
                b.extend_from_slice(&c.unwrap());
            }
            out.push((o.key, b));
        }
        out
    });
    let ltx_objects: Vec<&(String, Vec<u8>)> = objects
        .iter()
        .filter(|(k, _)| k.ends_with(".ltx"))
        .collect();
    assert!(
        ltx_objects.len() >= 3,
        "{:?}",
        objects.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    for (k, b) in &objects {
        assert!(
            plaintext_signs(b).is_empty(),
            "{k}: {:?}",
            plaintext_signs(b)
        );
        if k.ends_with(".ltx") {
            assert!(b.starts_with(b"age-encryption.org/v1\n"), "{k}");
        }
    }
    // The listing agrees with moto's own, unsigned one.
    let moto_ltx = moto_keys(&bucket)
        .into_iter()
        .filter(|k| k.ends_with(".ltx"))
        .count();
    assert_eq!(moto_ltx, ltx_objects.len());

    // The right identity restores the source.
    let out = dir.path().join("restored.db");
    restore(&cfg, &db, &out).success();
    assert_eq!(logical_digest(&out), logical_digest(&db));

    // `age -d` opens an object by hand: an LTX file comes out.
    let obj = dir.path().join("object.age");
    std::fs::write(&obj, &ltx_objects[0].1).unwrap();
    let age_bin = std::env::var("AGE_BIN").unwrap_or_else(|_| "age".to_string());
    let dec = std::process::Command::new(&age_bin)
        .args(["-d", "-i"])
        .arg(&a.secret_file)
        .arg(&obj)
        .output()
        .unwrap_or_else(|e| panic!("{age_bin} (the age CLI, Debian package `age`): {e}"));
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    assert!(
        dec.stdout.starts_with(b"LTX1"),
        "{:?}",
        &dec.stdout[..8.min(dec.stdout.len())]
    );

    // No identity, or a wrong one: a clear error, nothing at the output path.
    for (name, ids, want) in [
        (
            "none",
            Vec::new(),
            "age-encrypted and no age identity is configured",
        ),
        (
            "wrong",
            vec![&c_wrong],
            "none of the 1 configured age identities can decrypt",
        ),
    ] {
        let cfg = config(dir.path(), name, &db, &url, &ids, &[]);
        let out = dir.path().join(format!("{name}.db"));
        let err = restore(&cfg, &db, &out).failure();
        assert!(err.contains(want) && err.contains(".ltx"), "{name}: {err}");
        assert!(!out.exists(), "{name}: output written");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{name}.db")))
            .collect();
        assert!(leftovers.is_empty(), "{name}: {leftovers:?}");
    }

    // A download cut halfway (five times per object) resumes by range on encrypted objects.
    let proxy = FaultProxy::start(&moto());
    proxy.set_config(FaultConfig {
        enabled: true,
        path_suffix: Some(".ltx".into()),
        cut_first_gets: 5,
        cut_fraction: 0.5,
        ..FaultConfig::default()
    });
    let cut_cfg = config(
        dir.path(),
        "cut",
        &db,
        &s3_url(&bucket, &proxy.endpoint()),
        &[&a],
        &[],
    );
    let out = dir.path().join("cut.db");
    let run = restore(&cut_cfg, &db, &out);
    run.success();
    assert_eq!(logical_digest(&out), logical_digest(&db));
    assert!(run.stderr.contains("resuming"), "{}", run.stderr);
    let ranged = proxy
        .records()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.range
                    .as_deref()
                    .is_some_and(|h| !h.starts_with("bytes=0-"))
        })
        .count();
    assert!(ranged > 0, "no ranged GET: {}", proxy.counts());
}

#[test]
fn encryption_file_replica_key_rotation_reencrypt_and_bad_input() {
    let dir = tempdir();
    let (a, b) = (key(dir.path(), "a"), key(dir.path(), "b"));
    let (db, app) = app_db(dir.path());
    let root = dir.path().join("replica");
    std::fs::create_dir_all(&root).unwrap();
    let url = file_url(&root);

    // Key A, then recipients B (identities A and B), more writes.
    let cfg_a = config(dir.path(), "a", &db, &url, &[&a], &[&a]);
    write_rows(&app, 150);
    replicate_once(&cfg_a);
    let cfg_ab = config(dir.path(), "ab", &db, &url, &[&a, &b], &[&b]);
    write_rows(&app, 150);
    replicate_once(&cfg_ab);
    for (p, bytes) in file_objects(&root) {
        assert!(plaintext_signs(&bytes).is_empty(), "{}", p.display());
    }
    let out = dir.path().join("ab.db");
    restore(&cfg_ab, &db, &out).success();
    assert_eq!(logical_digest(&out), logical_digest(&db));

    // B alone cannot read the files written to A yet.
    let cfg_b = config(dir.path(), "b", &db, &url, &[&b], &[&b]);
    let out = dir.path().join("b-before.db");
    let err = restore(&cfg_b, &db, &out).failure();
    assert!(
        err.contains("none of the 1 configured age identities"),
        "{err}"
    );
    assert!(!out.exists());

    // Re-encrypt everything to B; then B alone restores the source.
    let before = file_objects(&root);
    let run = walstream(&[
        "reencrypt",
        "-config",
        cfg_ab.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    run.success();
    assert!(
        run.stdout
            .contains(&format!("{} files re-encrypted", before.len())),
        "{}",
        run.stdout
    );
    let after = file_objects(&root);
    assert_eq!(
        before.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        after.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for ((p, old), (_, new)) in before.iter().zip(&after) {
        assert_ne!(old, new, "{} not rewritten", p.display());
        assert!(plaintext_signs(new).is_empty(), "{}", p.display());
    }
    let out = dir.path().join("b.db");
    restore(&cfg_b, &db, &out).success();
    assert_eq!(logical_digest(&out), logical_digest(&db));
    // The help names the command.
    let help = walstream(&["--help"]);
    assert!(help.stdout.contains("reencrypt"), "{}", help.stdout);

    // A flipped byte of ciphertext: the error names the object, nothing is written.
    let (victim, mut bytes) = after.last().unwrap().clone();
    let i = bytes.len() - 20;
    bytes[i] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();
    let out = dir.path().join("corrupt.db");
    let err = restore(&cfg_b, &db, &out).failure();
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains("age decryption failed") && err.contains(name),
        "{err}"
    );
    assert!(!out.exists());

    // A recipient that is not an age key, inline or in a file: a config error naming it.
    let junk = dir.path().join("recipients.txt");
    std::fs::write(&junk, "not a key\n").unwrap();
    for (entry, want) in [
        ("age1notakey".to_string(), "age.recipients[0]".to_string()),
        (junk.display().to_string(), "recipients.txt".to_string()),
    ] {
        let p = dir.path().join("bad.yml");
        std::fs::write(
            &p,
            format!(
                "dbs:\n  - path: {}\n    replica:\n      url: \"{url}\"\n      age:\n        identities: [{}]\n        recipients: [\"{entry}\"]\n",
                db.display(),
                b.secret_file.display()
            ),
        )
        .unwrap();
        let err = walstream(&["replicate", "-once", "-config", p.to_str().unwrap()]).failure();
        assert!(err.contains(&want) && err.contains("age"), "{entry}: {err}");
    }
}
