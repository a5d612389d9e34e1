//! Everything that touches the YAML crate: reading the text into a tree that
//! keeps file order and duplicate keys, finding the line and column of any
//! YAML path, and checking subtrees against the raw serde structs so that
//! every type error is found, not only the first.

use super::raw::{RawFile, RawJob, Text};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::fmt;

/// One step of a YAML path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

pub type YPath = Vec<Seg>;

/// `jobs.xz.container.mounts[0].source`
pub fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Builds a path from string keys: `p(&["jobs", "xz"])`.
pub fn p(keys: &[&str]) -> YPath {
    keys.iter().map(|k| Seg::Key(k.to_string())).collect()
}

/// The document as YAML wrote it: order and duplicate keys kept.
#[derive(Debug, Clone)]
pub enum Tree {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value without tags")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Tree, E> {
        Ok(Tree::Int(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree, E> {
        Ok(Tree::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::Str(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut v = Vec::new();
        while let Some(item) = seq.next_element()? {
            v.push(item);
        }
        Ok(Tree::Seq(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut v = Vec::new();
        while let Some(key) = map.next_key::<Text>()? {
            v.push((key.0, map.next_value()?));
        }
        Ok(Tree::Map(v))
    }
}

/// A syntax error: message and 1-based line and column.
pub struct SyntaxError {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

pub fn parse_tree(text: &str) -> Result<Tree, SyntaxError> {
    serde_yaml::from_str::<Tree>(text).map_err(|e| {
        let loc = e.location();
        let mut message = e.to_string();
        if let Some(l) = &loc {
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            if let Some(i) = message.find(&suffix) {
                message.replace_range(i..i + suffix.len(), "");
            }
        }
        SyntaxError {
            message,
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
        }
    })
}

/// A duplicate key: its path and which occurrence (1 = the second one).
pub struct Duplicate {
    pub path: YPath,
    pub occurrence: usize,
}

/// Converts the tree into a YAML value for serde. Of duplicate keys the first
/// one is kept; every later one is returned so that it can be reported.
pub fn to_value(tree: &Tree, path: &mut YPath, dups: &mut Vec<Duplicate>) -> Value {
    match tree {
        Tree::Null => Value::Null,
        Tree::Bool(b) => Value::Bool(*b),
        Tree::Int(i) => {
            if let Ok(i) = i64::try_from(*i) {
                Value::Number(i.into())
            } else if let Ok(u) = u64::try_from(*i) {
                Value::Number(u.into())
            } else {
                Value::String(i.to_string())
            }
        }
        Tree::Float(f) => Value::Number((*f).into()),
        Tree::Str(s) => Value::String(s.clone()),
        Tree::Seq(items) => Value::Sequence(
            items
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    path.push(Seg::Index(i));
                    let v = to_value(t, path, dups);
                    path.pop();
                    v
                })
                .collect(),
        ),
        Tree::Map(entries) => {
            let mut m = Mapping::new();
            for (i, (k, t)) in entries.iter().enumerate() {
                path.push(Seg::Key(k.clone()));
                if m.contains_key(k.as_str()) {
                    let occurrence = entries[..i].iter().filter(|(k2, _)| k2 == k).count();
                    dups.push(Duplicate {
                        path: path.clone(),
                        occurrence,
                    });
                } else {
                    let v = to_value(t, path, dups);
                    m.insert(Value::String(k.clone()), v);
                }
                path.pop();
            }
            Value::Mapping(m)
        }
    }
}

/// The value at `path`, if the document has it.
pub fn get<'a>(root: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    let mut v = root;
    for seg in path {
        v = match seg {
            Seg::Key(k) => v.as_mapping()?.get(k.as_str())?,
            Seg::Index(i) => v.as_sequence()?.get(*i)?,
        };
    }
    Some(v)
}

/// Removes the value at `path` (a map entry) from the document.
pub fn remove(root: &mut Value, path: &[Seg]) {
    let Some((Seg::Key(last), parent)) = path.split_last() else {
        return;
    };
    let mut v = root;
    for seg in parent {
        let next = match seg {
            Seg::Key(k) => v.as_mapping_mut().and_then(|m| m.get_mut(k.as_str())),
            Seg::Index(i) => v.as_sequence_mut().and_then(|s| s.get_mut(*i)),
        };
        match next {
            Some(n) => v = n,
            None => return,
        }
    }
    if let Some(m) = v.as_mapping_mut() {
        m.shift_remove(last.as_str());
    }
}

/// Deep merge of `over` onto `under`: maps merge key by key, anything else is replaced.
pub fn merge(under: &Value, over: &Value) -> Value {
    match (under, over) {
        (Value::Mapping(u), Value::Mapping(o)) => {
            let mut m = u.clone();
            for (k, v) in o {
                let merged = match m.get(k) {
                    Some(old) => merge(old, v),
                    None => v.clone(),
                };
                m.insert(k.clone(), merged);
            }
            Value::Mapping(m)
        }
        (_, Value::Null) => under.clone(),
        _ => over.clone(),
    }
}

/// Wraps `node` into a document that has only `path`, to check it alone.
fn wrap(path: &[Seg], node: Value) -> Value {
    path.iter().rev().fold(node, |inner, seg| match seg {
        Seg::Key(k) => {
            let mut m = Mapping::new();
            m.insert(Value::String(k.clone()), inner);
            Value::Mapping(m)
        }
        Seg::Index(_) => Value::Sequence(vec![inner]),
    })
}

fn check_alone(path: &[Seg], node: Value) -> Option<String> {
    serde_yaml::from_value::<RawFile>(wrap(path, node))
        .err()
        .map(|e| e.to_string())
}

/// Every place where the document does not fit the raw structs (unknown key,
/// wrong type, unknown enum word), each at the smallest subtree that fails.
pub fn type_errors(root: &Value) -> Vec<(YPath, String)> {
    let mut out = Vec::new();
    localize(&mut Vec::new(), root, &mut out);
    out
}

fn localize(path: &mut YPath, node: &Value, out: &mut Vec<(YPath, String)>) {
    let Some(message) = check_alone(path, node.clone()) else {
        return;
    };
    let before = out.len();
    match node {
        // The children are at fault only if an empty map is fine here.
        Value::Mapping(m) if check_alone(path, Value::Mapping(Mapping::new())).is_none() => {
            for (k, v) in m {
                let key = k
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{k:?}"));
                path.push(Seg::Key(key));
                localize(path, v, out);
                path.pop();
            }
        }
        Value::Sequence(s) if check_alone(path, Value::Sequence(Vec::new())).is_none() => {
            for (i, v) in s.iter().enumerate() {
                path.push(Seg::Index(i));
                localize(path, v, out);
                path.pop();
            }
        }
        _ => {}
    }
    if out.len() == before {
        out.push((path.clone(), message));
    }
}

/// Deserializes a document that `type_errors` found clean.
pub fn raw_file(root: &Value) -> Result<RawFile, String> {
    serde_yaml::from_value(root.clone()).map_err(|e| e.to_string())
}

/// Deserializes one (merged) job.
pub fn raw_job(v: &Value) -> Result<RawJob, String> {
    serde_yaml::from_value(v.clone()).map_err(|e| e.to_string())
}

/// What to point at: a value, or the n-th occurrence of the last key of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum At {
    Value,
    Key(usize),
}

const PROBE: &str = "\u{0}packrun-probe";

/// The 1-based line and column of `path` in `text`, found by letting the YAML
/// parser fail on purpose exactly there (its errors carry the position).
pub fn locate(text: &str, path: &[Seg], at: At) -> Option<(usize, usize)> {
    let mut de = serde_yaml::Deserializer::from_str(text);
    let d = de.next()?;
    let err = Walk { rest: path, at }.deserialize(d).err()?;
    if !err.to_string().contains(PROBE) {
        return None;
    }
    err.location().map(|l| (l.line(), l.column()))
}

#[derive(Clone, Copy)]
struct Walk<'a> {
    rest: &'a [Seg],
    at: At,
}

impl Walk<'_> {
    fn here<E: de::Error>(self) -> Result<(), E> {
        if self.rest.is_empty() && self.at == At::Value {
            Err(E::custom(PROBE))
        } else {
            Ok(())
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.here()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let mut i = 0;
        loop {
            let found = match self.rest.split_first() {
                Some((Seg::Index(want), tail)) if *want == i => seq
                    .next_element_seed(Walk {
                        rest: tail,
                        at: self.at,
                    })?
                    .is_some(),
                _ => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !found {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        let (want, tail) = match self.rest.split_first() {
            Some((Seg::Key(k), tail)) => (Some(k.as_str()), tail),
            _ => (None, &[][..]),
        };
        let mut seen = 0;
        let key_target = match self.at {
            At::Key(n) if tail.is_empty() => Some(n),
            _ => None,
        };
        while let Some(matched) = map.next_key_seed(KeyProbe {
            want,
            fail_at: key_target,
            seen: &mut seen,
        })? {
            if matched && key_target.is_none() && seen == 1 {
                map.next_value_seed(Walk {
                    rest: tail,
                    at: self.at,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Reads one map key; says whether it is the wanted one, and fails on the
/// wanted occurrence when the key itself is the target.
struct KeyProbe<'a, 's> {
    want: Option<&'a str>,
    fail_at: Option<usize>,
    seen: &'s mut usize,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_, '_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl KeyProbe<'_, '_> {
    /// Runs inside the parser's call for the key, so an error gets the key's position.
    fn check<E: de::Error>(self, key: &str) -> Result<bool, E> {
        if Some(key) != self.want {
            return Ok(false);
        }
        *self.seen += 1;
        if self.fail_at == Some(*self.seen - 1) {
            return Err(E::custom(PROBE));
        }
        Ok(true)
    }
}

impl Visitor<'_> for KeyProbe<'_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar key")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.check(v)
    }
}
