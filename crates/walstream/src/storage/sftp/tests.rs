//! Config resolution; the store itself is tested against OpenSSH's sshd in `tests/it/sftp.rs`.
use super::*;

fn url(u: &str) -> SftpOptions {
    SftpOptions {
        url: Some(u.into()),
        ..Default::default()
    }
}

#[test]
fn sftp_settings_from_url_path_is_relative_as_in_litestream() {
    let s =
        Settings::from_config(&url("sftp://bob:p%40ss@example.com:2222/backups/./db/")).unwrap();
    assert_eq!(
        (s.host.as_str(), s.port, s.user.as_str()),
        ("example.com", 2222, "bob")
    );
    assert_eq!(s.password.as_deref(), Some("p@ss"));
    assert_eq!(s.root, "backups/db");
    assert_eq!(s.join("ltx/0"), "backups/db/ltx/0");
    assert!(!format!("{s:?}").contains("p@ss"));
    let s = Settings::from_config(&url("sftp://bob@host")).unwrap();
    assert_eq!((s.port, s.root.as_str()), (22, ""));
    assert_eq!(s.join("ltx/0"), "ltx/0");
}

#[test]
fn sftp_settings_from_keys_keep_absolute_paths() {
    let c = SftpOptions {
        host: Some("[::1]:2200".into()),
        user: Some("alice".into()),
        key_path: Some("/k".into()),
        path: Some("/srv//backup/../db".into()),
        ..Default::default()
    };
    let s = Settings::from_config(&c).unwrap();
    assert_eq!((s.host.as_str(), s.port), ("::1", 2200));
    assert_eq!(s.root, "/srv/db");
    assert_eq!(s.join("ltx/9"), "/srv/db/ltx/9");
    let store = SftpStore::new(&c).unwrap();
    assert_eq!(store.describe(), "sftp://alice@[::1]:2200/srv/db");
    assert_eq!(store.kind(), "sftp");
}

#[test]
fn sftp_settings_url_extensions_and_user_override() {
    let c = SftpOptions {
        url: Some(
            "sftp://bob@h/db?key-path=/tmp/k&host-key=ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIJmikhx9QDbuSHcbrdK%2BshhmjeGh6yaOY0dq5vwKPzVb"
                .into(),
        ),
        user: Some("carol".into()),
        ..Default::default()
    };
    let s = Settings::from_config(&c).unwrap();
    assert_eq!(s.user, "carol");
    assert_eq!(s.key_path.as_deref(), Some("/tmp/k"));
    assert_eq!(
        s.host_key.as_ref().map(|k| k.kind.as_str()),
        Some("ssh-ed25519")
    );
}

#[test]
fn sftp_settings_missing_host_user_or_bad_key_are_clear() {
    let err = Settings::from_config(&SftpOptions {
        user: Some("u".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("host required"), "{err}");
    let err = Settings::from_config(&url("sftp://host/db")).unwrap_err();
    assert!(err.to_string().contains("user required"), "{err}");
    let err = Settings::from_config(&SftpOptions {
        url: Some("sftp://u@h/db".into()),
        host_key: Some("garbage".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("cannot parse host-key"), "{err}");
    assert!(split_host_port("h:notaport").is_err());
}
