//! Architecture rules, checked on the source tree (docs/LAYERS.md describes the layers):
//! - the walstream crate's top-level modules form no import cycle (`use crate::x`, `crate::x::`,
//!   `super::x` from a top-level module), test code and comments aside;
//! - no non-test source file holds more than [`MAX_CODE_LINES`] lines of code (not blank, not
//!   comment, outside `#[cfg(test)]` items; files that are test-only modules are skipped).
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Lines of code allowed in one source file.
const MAX_CODE_LINES: usize = 800;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file under `src/` (`src/storage/s3/mod.rs` is `["storage", "s3"]`;
/// `lib.rs` is `[]`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The source with comments blanked (line structure kept) and string literals emptied, so that
/// neither a doc link nor a message counts as a reference.
fn strip_comments_and_strings(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if b[i] == b'"' {
            // A raw string's hashes are rare here; a plain string ends at an unescaped quote.
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                } else if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('"', '\n', '{'): skipped so that its quote or brace does not count.
            let start = if b[i + 1] == b'\\' { i + 3 } else { i + 2 };
            let end = b[start.min(b.len())..]
                .iter()
                .position(|c| *c == b'\'')
                .map_or(b.len(), |p| start + p + 1);
            out.push_str("' '");
            i = end;
        } else if b[i] == b'r'
            && !out.chars().last().is_some_and(is_ident)
            && b[i + 1..].starts_with(b"#")
        {
            // A raw string r#"..."# (with any number of #): emptied.
            let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let body = i + 2 + hashes;
            let end = b[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| body + p + close.len());
            for c in &b[i..end] {
                if *c == b'\n' {
                    out.push('\n');
                }
            }
            out.push_str("\"\"");
            i = end;
        } else {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The code with every `#[cfg(test)]` item removed (a `mod x { ... }` block or a `mod x;` line),
/// and the names of test-only file modules declared with `#[cfg(test)] mod x;`.
fn without_test_items(code: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut test_mods = Vec::new();
    let mut lines = code.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.starts_with("#[cfg(test)]") {
            // Skip further attributes, then the item.
            let mut item = t.trim_start_matches("#[cfg(test)]").trim().to_string();
            while item.is_empty() || item.starts_with("#[") {
                match lines.next() {
                    Some(l) => item = l.trim().to_string(),
                    None => break,
                }
                out.push('\n');
            }
            if let Some(rest) = item.strip_prefix("mod ").or(item.strip_prefix("pub mod ")) {
                if let Some(name) = rest.strip_suffix(';') {
                    test_mods.push(name.trim().to_string());
                    out.push('\n');
                    continue;
                }
            }
            // A block: skip until its braces balance.
            let mut depth: i64 = 0;
            let mut opened = false;
            let mut cur = item;
            loop {
                for c in cur.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                out.push('\n');
                if (opened && depth <= 0) || (!opened && cur.ends_with(';')) {
                    break;
                }
                match lines.next() {
                    Some(l) => cur = l.to_string(),
                    None => break,
                }
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, test_mods)
}

struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    /// Code without comments, strings and test items.
    code: String,
    test_only: bool,
}

fn load() -> Vec<SourceFile> {
    let src = src_dir();
    let mut files: Vec<SourceFile> = rust_files(&src)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "main.rs"))
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            let (code, _) = without_test_items(&strip_comments_and_strings(&text));
            SourceFile {
                module: module_path(&src, &path),
                path,
                code,
                test_only: false,
            }
        })
        .collect();
    // Files that are test-only modules, and everything under them.
    let mut test_modules: Vec<Vec<String>> = Vec::new();
    for f in &files {
        let text = fs::read_to_string(&f.path).unwrap();
        let (_, mods) = without_test_items(&strip_comments_and_strings(&text));
        for m in mods {
            let mut p = f.module.clone();
            p.push(m);
            test_modules.push(p);
        }
    }
    for f in &mut files {
        f.test_only = test_modules.iter().any(|t| f.module.starts_with(t));
    }
    files
}

/// The top-level modules declared in lib.rs.
fn top_level_modules() -> BTreeSet<String> {
    let lib = fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("pub mod ").or(l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules `code` (in module `module`) refers to, with the file's first line for
/// each.
fn references(module: &[String], code: &str, tops: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let mut refs = BTreeMap::new();
    for (n, line) in code.lines().enumerate() {
        let mut add = |name: &str| {
            if tops.contains(name) {
                refs.entry(name.to_string()).or_insert(n + 1);
            }
        };
        // `crate::x` and `crate::{x, y::z}`.
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            let after = &rest[i + "crate::".len()..];
            rest = after;
            if before.is_some_and(is_ident) {
                continue;
            }
            if let Some(group) = after.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or("");
                for item in group.split(',') {
                    let name: String = item.trim().chars().take_while(|c| is_ident(*c)).collect();
                    add(&name);
                }
            } else {
                let name: String = after.chars().take_while(|c| is_ident(*c)).collect();
                add(&name);
            }
        }
        // `super::...::x` that climbs to the crate root.
        let mut rest = line;
        while let Some(i) = rest.find("super::") {
            let before = rest[..i].chars().last();
            let mut after = &rest[i..];
            rest = &rest[i + "super::".len()..];
            if before.is_some_and(|c| is_ident(c) || c == ':') {
                continue;
            }
            let mut depth = 0;
            while let Some(a) = after.strip_prefix("super::") {
                depth += 1;
                after = a;
            }
            if depth == module.len() {
                let name: String = after.chars().take_while(|c| is_ident(*c)).collect();
                add(&name);
            }
        }
    }
    refs
}

/// Module -> modules it uses (self excluded), with one place of use for each.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn import_graph(files: &[SourceFile]) -> Graph {
    let tops = top_level_modules();
    let mut g: Graph = tops.iter().map(|t| (t.clone(), BTreeMap::new())).collect();
    for f in files.iter().filter(|f| !f.test_only) {
        let Some(top) = f.module.first() else {
            continue;
        };
        for (to, line) in references(&f.module, &f.code, &tops) {
            if &to != top {
                let at = format!(
                    "{}:{line}",
                    f.path.strip_prefix(src_dir()).unwrap().display()
                );
                g.entry(top.clone()).or_default().entry(to).or_insert(at);
            }
        }
    }
    g
}

/// The cycles of a graph: one per strongly connected component of more than one module, as a
/// path that starts and ends at the same module.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    // Reachability by DFS from each node (the graph is small).
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(n) = stack.pop() {
            for m in g.get(&n).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for start in g.keys() {
        if done.contains(start) || !reach(start).contains(start) {
            continue;
        }
        // A shortest path back to `start` (BFS), for the message.
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        let mut found = None;
        while let Some(n) = queue.pop_front() {
            for m in g.get(&n).into_iter().flat_map(|e| e.keys()) {
                if m == start {
                    found = Some(n.clone());
                    break;
                }
                if !prev.contains_key(m) {
                    prev.insert(m.clone(), n.clone());
                    queue.push_back(m.clone());
                }
            }
            if found.is_some() {
                break;
            }
        }
        let mut path = vec![start.clone()];
        let mut n = found.unwrap();
        while &n != start {
            path.push(n.clone());
            n = prev[&n].clone();
        }
        path.push(start.clone());
        path.reverse();
        for m in &path {
            if reach(m).contains(start) && reach(start).contains(m) {
                done.insert(m.clone());
            }
        }
        out.push(path);
    }
    out
}

/// Lines that are code: not blank, not only a comment (comments were blanked already).
fn code_lines(code: &str) -> usize {
    code.lines().filter(|l| !l.trim().is_empty()).count()
}

#[test]
fn architecture_top_level_modules_form_no_import_cycle() {
    let files = load();
    let g = import_graph(&files);
    // The checker itself must see the crate's real imports.
    assert!(
        g.get("cli").is_some_and(|e| e.contains_key("config")),
        "the checker found no import of config by cli: {g:?}"
    );
    let found = cycles(&g);
    if !found.is_empty() {
        let mut msg = String::from("import cycles between top-level modules:\n");
        for c in &found {
            msg.push_str(&format!("  {}\n", c.join(" -> ")));
            for w in c.windows(2) {
                msg.push_str(&format!(
                    "    {:<12} uses {:<12} at {}\n",
                    w[0], w[1], g[&w[0]][&w[1]]
                ));
            }
        }
        msg.push_str("\nmodule       uses\n");
        for (m, uses) in &g {
            let names: Vec<&str> = uses.keys().map(String::as_str).collect();
            msg.push_str(&format!("{m:<12} {}\n", names.join(", ")));
        }
        panic!("{msg}");
    }
    println!("{:<12} uses", "module");
    for (m, uses) in &g {
        let names: Vec<&str> = uses.keys().map(String::as_str).collect();
        println!("{m:<12} {}", names.join(", "));
    }
}

#[test]
fn architecture_no_source_file_over_the_line_limit() {
    let files = load();
    let src = src_dir();
    let mut sizes: Vec<(usize, String)> = files
        .iter()
        .filter(|f| !f.test_only)
        .map(|f| {
            (
                code_lines(&f.code),
                f.path.strip_prefix(&src).unwrap().display().to_string(),
            )
        })
        .collect();
    sizes.sort_by(|a, b| b.cmp(a));
    assert!(
        sizes.len() > 20 && sizes[0].0 > 100,
        "the checker found too little code: {sizes:?}"
    );
    let over: Vec<&(usize, String)> = sizes.iter().filter(|(n, _)| *n > MAX_CODE_LINES).collect();
    if !over.is_empty() {
        let mut msg = format!(
            "source files over {MAX_CODE_LINES} lines of code (non-blank, non-comment, \
             #[cfg(test)] items excluded):\n{:>6}  file\n",
            "lines"
        );
        for (n, f) in &over {
            msg.push_str(&format!("{n:>6}  {f}\n"));
        }
        msg.push_str("\nlargest files:\n");
        for (n, f) in sizes.iter().take(10) {
            msg.push_str(&format!("{n:>6}  {f}\n"));
        }
        panic!("{msg}");
    }
}

/// The checker's own parts, on small inputs: so that a broken parser cannot pass silently.
#[test]
fn architecture_checker_sees_references_tests_and_cycles() {
    let tops: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let code = strip_comments_and_strings(
        "use crate::{a, b::X};\n// crate::c\nlet s = \"crate::c\";\nuse super::c;\n",
    );
    let (code, mods) = without_test_items(&code);
    assert!(mods.is_empty());
    let refs = references(&["x".to_string()], &code, &tops);
    assert_eq!(refs.keys().collect::<Vec<_>>(), ["a", "b", "c"], "{code}");
    let refs = references(&["x".to_string(), "y".to_string()], &code, &tops);
    assert_eq!(refs.keys().collect::<Vec<_>>(), ["a", "b"]);
    let (code, mods) = without_test_items(&strip_comments_and_strings(
        "fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::c;\n    fn g() { let x = '{'; let y = r#\"}\"#; }\n}\n#[cfg(test)]\nmod more;\nfn h<'a>(x: &'a str) {}\n",
    ));
    assert_eq!(mods, ["more"]);
    assert!(
        !code.contains("crate::c") && code.contains("fn h"),
        "{code}"
    );
    assert_eq!(code_lines(&code), 2, "{code}");
    let mut g: Graph = BTreeMap::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(from.into())
            .or_default()
            .insert(to.into(), "x".into());
    }
    g.entry("d".into()).or_default();
    assert_eq!(cycles(&g), [["a", "b", "c", "a"]]);
    g.get_mut("c").unwrap().remove("a");
    assert!(cycles(&g).is_empty());
}
