//! Key paths (`dbs[0].replica.retention`) and where they are in the YAML text.
//!
//! serde_norway records the line and column of the node being read whenever a visitor fails. To
//! find a key, [`locate`] walks the document with a visitor that fails on purpose when it reaches
//! that key, and reads the position from the error. One walk per lookup; lookups are only made
//! for warnings and errors, so the cost does not matter.
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path to a key in the config, displayed as `dbs[0].replica.retention`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// A path of keys only.
    pub fn keys(keys: &[&str]) -> KeyPath {
        KeyPath(keys.iter().map(|k| Seg::Key((*k).to_string())).collect())
    }

    /// This path with one more key.
    pub fn key(&self, k: &str) -> KeyPath {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        KeyPath(v)
    }

    /// This path with one more index.
    pub fn index(&self, i: usize) -> KeyPath {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }

    /// The first key, if the path starts with one.
    pub fn first_key(&self) -> Option<&str> {
        match self.0.first() {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl From<&serde_ignored::Path<'_>> for KeyPath {
    fn from(p: &serde_ignored::Path<'_>) -> KeyPath {
        fn walk(p: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
            use serde_ignored::Path;
            match p {
                Path::Root => {}
                Path::Seq { parent, index } => {
                    walk(parent, out);
                    out.push(Seg::Index(*index));
                }
                Path::Map { parent, key } => {
                    walk(parent, out);
                    out.push(Seg::Key(key.clone()));
                }
                Path::Some { parent }
                | Path::NewtypeStruct { parent }
                | Path::NewtypeVariant { parent } => walk(parent, out),
            }
        }
        let mut v = Vec::new();
        walk(p, &mut v);
        KeyPath(v)
    }
}

/// A line and column, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// The message the search fails with when it finds its key; never shown.
const FOUND: &str = "\u{0}walstream-config-key-found\u{0}";

/// Where `path` is in `text`: the position of its key (or, for an index, of the element).
pub fn locate(text: &str, path: &KeyPath) -> Option<Pos> {
    if path.0.is_empty() {
        return None;
    }
    let de = serde_norway::Deserializer::from_str(text);
    match (Find { path: &path.0 }).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| Pos {
            line: l.line(),
            column: l.column(),
        }),
        _ => None,
    }
}

/// The position carried by a serde_norway error, if any.
pub fn error_pos(e: &serde_norway::Error) -> Option<Pos> {
    e.location().map(|l| Pos {
        line: l.line(),
        column: l.column(),
    })
}

/// Walks down `path`; fails with [`FOUND`] at its end. `Ok` means not found.
struct Find<'a> {
    path: &'a [Seg],
}

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (want, rest) = match self.path.split_first() {
            Some((Seg::Key(k), rest)) => (k.as_str(), rest),
            _ => return Ok(()),
        };
        while let Some(hit) = map.next_key_seed(Key {
            want,
            last: rest.is_empty(),
        })? {
            if hit {
                map.next_value_seed(Find { path: rest })?;
                return Ok(());
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (want, rest) = match self.path.split_first() {
            Some((Seg::Index(i), rest)) => (*i, rest),
            _ => return Ok(()),
        };
        let mut i = 0;
        loop {
            if i == want {
                if rest.is_empty() {
                    seq.next_element_seed(Here)?;
                } else {
                    seq.next_element_seed(Find { path: rest })?;
                }
                return Ok(());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Ok(())
    }
}

/// Reads a mapping key: `true` if it is the wanted one. On the last step, fails with
/// [`FOUND`] instead, so that the error carries the key's position.
struct Key<'a> {
    want: &'a str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<bool, E> {
        if k != self.want {
            Ok(false)
        } else if self.last {
            Err(E::custom(FOUND))
        } else {
            Ok(true)
        }
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<bool, A::Error> {
        while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<bool, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// Fails with [`FOUND`] on whatever node it is given.
struct Here;

impl<'de> DeserializeSeed<'de> for Here {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Here {
    type Value = ();

    // Every visit method's default is an "invalid type" error that embeds this text.
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(FOUND)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DOC: &str = "\
# comment
addr: \":9090\"
dbs:
  - path: /a.db
    replica:
      url: s3://b/p
  - path: /c.db
    replicas:
      - type: s3
        retention: 24h   # old key
flow: {a: 1, b: [x, y]}
";

    fn at(path: KeyPath) -> Option<(usize, usize)> {
        locate(DOC, &path).map(|p| (p.line, p.column))
    }

    #[test]
    fn locate_keys_and_indexes() {
        assert_eq!(at(KeyPath::keys(&["addr"])), Some((2, 1)));
        assert_eq!(
            at(KeyPath::keys(&["dbs"]).index(0).key("path")),
            Some((4, 5))
        );
        assert_eq!(
            at(KeyPath::keys(&["dbs"]).index(0).key("replica").key("url")),
            Some((6, 7))
        );
        assert_eq!(
            at(KeyPath::keys(&["dbs"])
                .index(1)
                .key("replicas")
                .index(0)
                .key("retention")),
            Some((10, 9))
        );
        assert_eq!(at(KeyPath::keys(&["dbs"]).index(1)), Some((7, 5)));
        assert_eq!(at(KeyPath::keys(&["flow", "b"])), Some((11, 14)));
    }

    #[test]
    fn locate_missing_is_none() {
        assert_eq!(at(KeyPath::keys(&["nope"])), None);
        assert_eq!(at(KeyPath::keys(&["dbs"]).index(5).key("path")), None);
        assert_eq!(at(KeyPath::keys(&["addr", "x"])), None);
        assert_eq!(at(KeyPath::default()), None);
    }

    #[test]
    fn key_path_display() {
        let p = KeyPath::keys(&["dbs"])
            .index(0)
            .key("replica")
            .key("retention");
        assert_eq!(p.to_string(), "dbs[0].replica.retention");
        assert_eq!(p.first_key(), Some("dbs"));
    }
}
