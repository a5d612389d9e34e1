//! Placeholders, matrix expansion and run keys: pure functions on strings.

use sha2::{Digest, Sha256};

/// A piece of a template: literal text or a `{name}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Var(String),
}

/// The prefix of `{addr:JOB}`: the address of service JOB, known when the
/// run starts.
pub const ADDR: &str = "addr:";

/// Splits a template into literal text and placeholders.
///
/// `{name}` (a name of letters, digits and `_`) and `{addr:JOB}` (JOB a
/// job name) are placeholders; `{{` and
/// `}}` are literal braces; `${...}` is left to the shell; a brace that does
/// not open a placeholder (`awk '{print $1}'`) is literal.
pub fn parse_template(s: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' if b.get(i + 1) == Some(&b'{') => {
                lit.push('{');
                i += 2;
            }
            b'}' if b.get(i + 1) == Some(&b'}') => {
                lit.push('}');
                i += 2;
            }
            b'$' if b.get(i + 1) == Some(&b'{') => {
                // Shell parameter expansion: copy through the closing brace.
                let end = s[i..].find('}').map(|e| i + e + 1).unwrap_or(b.len());
                lit.push_str(&s[i..end]);
                i = end;
            }
            b'{' => {
                let rest = &s[i + 1..];
                // `{addr:JOB}`: a job name may hold `.` and `-` too.
                let (skip, job_name) = match rest.strip_prefix(ADDR) {
                    Some(_) => (ADDR.len(), true),
                    None => (0, false),
                };
                let name_len = skip
                    + rest[skip..]
                        .bytes()
                        .take_while(|c| {
                            c.is_ascii_alphanumeric()
                                || *c == b'_'
                                || (job_name && (*c == b'.' || *c == b'-'))
                        })
                        .count();
                let name_len = if name_len == skip { 0 } else { name_len };
                if name_len > 0 && rest.as_bytes().get(name_len) == Some(&b'}') {
                    if !lit.is_empty() {
                        out.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    out.push(Piece::Var(rest[..name_len].to_string()));
                    i += name_len + 2;
                } else {
                    lit.push('{');
                    i += 1;
                }
            }
            _ => {
                let ch = s[i..].chars().next().expect("in bounds");
                lit.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

/// Placeholder names used in a template.
pub fn names(pieces: &[Piece]) -> impl Iterator<Item = &str> {
    pieces.iter().filter_map(|p| match p {
        Piece::Var(n) => Some(n.as_str()),
        Piece::Lit(_) => None,
    })
}

/// Fills placeholders from `value`; a name it does not know (like `cpus`,
/// filled at run start) is written back as `{name}`.
pub fn fill(pieces: &[Piece], value: impl Fn(&str) -> Option<String>) -> String {
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Lit(l) => s.push_str(l),
            Piece::Var(n) => match value(n) {
                Some(v) => s.push_str(&v),
                None => {
                    s.push('{');
                    s.push_str(n);
                    s.push('}');
                }
            },
        }
    }
    s
}

/// A text of a run whose `{cpus}` is filled only when the run starts (its
/// CPUs are known then): the pieces left after the other placeholders were
/// filled, so a literal `{{cpus}}` and the shell's `${cpus}` stay what they
/// are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

impl Template {
    /// Plain text, no placeholder (a command line given as is).
    pub fn literal(s: &str) -> Template {
        Template(match s.is_empty() {
            true => Vec::new(),
            false => vec![Piece::Lit(s.to_string())],
        })
    }

    /// Fills the placeholders `value` knows; keeps the others (`cpus`).
    pub fn partial(pieces: &[Piece], value: impl Fn(&str) -> Option<String>) -> Template {
        let mut out: Vec<Piece> = Vec::new();
        for p in pieces {
            let lit = match p {
                Piece::Lit(l) => l.clone(),
                Piece::Var(n) => match value(n) {
                    Some(v) => v,
                    None => {
                        out.push(Piece::Var(n.clone()));
                        continue;
                    }
                },
            };
            match out.last_mut() {
                Some(Piece::Lit(prev)) => prev.push_str(&lit),
                _ if lit.is_empty() => {}
                _ => out.push(Piece::Lit(lit)),
            }
        }
        Template(out)
    }

    /// This template with the placeholders `value` knows filled.
    pub fn refill(&self, value: impl Fn(&str) -> Option<String>) -> Template {
        Template::partial(&self.0, value)
    }

    /// The text with `{cpus}` as `cpus` (None: shown as `{cpus}`).
    pub fn render(&self, cpus: Option<&str>) -> String {
        let mut s = String::new();
        for p in &self.0 {
            match (p, cpus) {
                (Piece::Lit(l), _) => s.push_str(l),
                (Piece::Var(n), Some(c)) if n == "cpus" => s.push_str(c),
                (Piece::Var(n), _) => {
                    s.push('{');
                    s.push_str(n);
                    s.push('}');
                }
            }
        }
        s
    }
}

/// Parsed as a template (`{cpus}` a placeholder, `{{` a brace).
impl From<&str> for Template {
    fn from(s: &str) -> Template {
        Template(parse_template(s))
    }
}

/// Compares the text as shown (`{cpus}` unfilled).
impl PartialEq<&str> for Template {
    fn eq(&self, other: &&str) -> bool {
        self.render(None) == *other
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(None))
    }
}

/// The values of `{range: [FROM, TO], step: N}` (default step 1) or
/// `{range: [FROM, TO], factor: N}`: from FROM on, while not past TO. Whole
/// numbers when every number given is whole; else decimals with as many
/// places as the most precise number given (no 0.30000000000000004). At
/// most `max` values: more is an error before any is made.
pub fn range_values(r: &super::raw::RawRange, max: u64) -> Result<Vec<String>, String> {
    let num = |t: &super::raw::Text, what: &str| -> Result<(f64, usize), String> {
        let s = t.0.trim();
        let v: f64 = s
            .parse()
            .map_err(|_| format!("{what} `{s}` is not a number"))?;
        if !v.is_finite() {
            return Err(format!("{what} `{s}` is not a finite number"));
        }
        let places = s.split_once('.').map_or(0, |(_, f)| f.len());
        Ok((v, places))
    };
    let [from, to] = r.range.as_slice() else {
        return Err(format!(
            "range has {} numbers: expected [FROM, TO]",
            r.range.len()
        ));
    };
    let (from, p1) = num(from, "range start")?;
    let (to, p2) = num(to, "range end")?;
    if from > to {
        return Err(format!(
            "range [{from}, {to}] runs backwards: expected FROM <= TO"
        ));
    }
    let mut places = p1.max(p2);
    let next: Box<dyn Fn(f64, u64) -> f64> = match (&r.step, &r.factor) {
        (Some(_), Some(_)) => return Err("give step or factor, not both".into()),
        (None, Some(f)) => {
            let (f, p) = num(f, "factor")?;
            if f <= 1.0 {
                return Err(format!("factor `{f}` must be more than 1"));
            }
            if from <= 0.0 {
                return Err(format!(
                    "a geometric range needs a start above 0, not {from}"
                ));
            }
            places = places.max(p);
            Box::new(move |_, i| from * f.powi(i as i32))
        }
        (step, None) => {
            let (st, p) = match step {
                Some(s) => num(s, "step")?,
                None => (1.0, 0),
            };
            if st <= 0.0 {
                return Err(format!("step `{st}` must be more than 0"));
            }
            places = places.max(p);
            Box::new(move |_, i| from + st * i as f64)
        }
    };
    let eps = 1e-9 * to.abs().max(1.0);
    let mut out = Vec::new();
    let mut i = 0u64;
    loop {
        let v = next(from, i);
        if v > to + eps {
            break;
        }
        if out.len() as u64 >= max {
            return Err(format!("range has more than {max} values"));
        }
        out.push(format!("{v:.places$}"));
        i += 1;
    }
    Ok(out)
}

/// One matrix point: parameter name -> value, in parameter order.
pub type Combo = Vec<(String, String)>;

/// A job's matrix in a compact form: each combination is a row of value
/// ids (one per parameter, `Matrix::UNSET` where an `include` left the
/// parameter out), each distinct value stored once. A 1000 × 1000 matrix
/// is 8 MB of ids, not a million vectors of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matrix {
    /// Parameter names: the axes in file order, then keys only includes name.
    pub names: Vec<String>,
    values: Vec<String>,
    /// `len() * names.len()` ids.
    rows: Vec<u32>,
    len: usize,
}

impl Matrix {
    const UNSET: u32 = u32::MAX;

    /// The one empty combination of a job without a matrix.
    pub fn single() -> Matrix {
        Matrix {
            len: 1,
            ..Matrix::default()
        }
    }

    /// No combination, parameters `names` (a matrix found too large).
    pub fn empty(names: Vec<String>) -> Matrix {
        Matrix {
            names,
            ..Matrix::default()
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Combination `i`: (name, value) of each parameter it sets, in
    /// parameter order.
    pub fn combo(&self, i: usize) -> impl Iterator<Item = (&str, &str)> + Clone {
        let width = self.names.len();
        self.rows[i * width..(i + 1) * width]
            .iter()
            .zip(&self.names)
            .filter(|(id, _)| **id != Matrix::UNSET)
            .map(|(id, n)| (n.as_str(), self.values[*id as usize].as_str()))
    }

    /// The value of parameter `name` in combination `i` (None: not set).
    pub fn get(&self, i: usize, name: &str) -> Option<&str> {
        let p = self.names.iter().position(|n| n == name)?;
        let id = self.rows[i * self.names.len() + p];
        (id != Matrix::UNSET).then(|| self.values[id as usize].as_str())
    }

    /// Whether combinations `a` and `b` set the same values.
    pub fn same(&self, a: usize, b: usize) -> bool {
        let w = self.names.len();
        self.rows[a * w..(a + 1) * w] == self.rows[b * w..(b + 1) * w]
    }
}

/// Expands a matrix the way GitHub Actions does: the cross product of the axes
/// (first axis varies slowest), minus every combination that matches all keys
/// of an `exclude` entry; then each `include` entry is added to every
/// combination whose original values it does not contradict (its extra keys
/// appended), or becomes a combination of its own if it fits none.
///
/// No axes and no includes give one empty combination (a job without matrix).
pub fn expand_matrix(
    axes: &[(String, Vec<String>)],
    exclude: &[Combo],
    include: &[Combo],
) -> Matrix {
    let mut names: Vec<String> = axes.iter().map(|(n, _)| n.clone()).collect();
    for (k, _) in include.iter().flatten() {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    let naxes = axes.len();
    let width = names.len();
    let mut values: Vec<String> = Vec::new();
    let mut ids: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut intern = |v: &str| -> u32 {
        if let Some(&id) = ids.get(v) {
            return id;
        }
        values.push(v.to_string());
        ids.insert(v.to_string(), values.len() as u32 - 1);
        values.len() as u32 - 1
    };
    let axis_ids: Vec<Vec<u32>> = axes
        .iter()
        .map(|(_, vs)| vs.iter().map(|v| intern(v)).collect())
        .collect();
    // An entry as (parameter index, value id) pairs.
    let mut entry = |e: &Combo| -> Vec<(usize, u32)> {
        e.iter()
            .filter_map(|(k, v)| Some((names.iter().position(|n| n == k)?, intern(v))))
            .collect()
    };
    // An exclude naming a key that is no parameter matches nothing.
    let exclude: Vec<Vec<(usize, u32)>> = exclude
        .iter()
        .filter(|e| e.iter().all(|(k, _)| names.contains(k)))
        .map(&mut entry)
        .collect();
    let include: Vec<Vec<(usize, u32)>> = include.iter().map(&mut entry).collect();

    let product: usize = if axes.is_empty() {
        0
    } else {
        axis_ids.iter().map(Vec::len).product()
    };
    let mut rows: Vec<u32> = Vec::with_capacity(product * width);
    let mut digits = vec![0usize; naxes];
    for _ in 0..product {
        let start = rows.len();
        rows.extend(digits.iter().zip(&axis_ids).map(|(&d, a)| a[d]));
        rows.resize(start + width, Matrix::UNSET);
        if exclude
            .iter()
            .any(|e| e.iter().all(|&(p, id)| rows[start + p] == id))
        {
            rows.truncate(start);
        }
        // Next combination: the last axis varies fastest.
        for a in (0..naxes).rev() {
            digits[a] += 1;
            if digits[a] < axis_ids[a].len() {
                break;
            }
            digits[a] = 0;
        }
    }
    let original = rows.len() / width.max(1);
    // Counted, not divided out of the rows: an empty include entry is a
    // combination with no parameters (zero ids wide).
    let mut len = original;
    for inc in &include {
        let mut added = false;
        for c in 0..original {
            let row = &mut rows[c * width..(c + 1) * width];
            if inc
                .iter()
                .filter(|(p, _)| *p < naxes)
                .all(|&(p, id)| row[p] == id)
            {
                for &(p, id) in inc.iter().filter(|(p, _)| *p >= naxes) {
                    row[p] = id;
                }
                added = true;
            }
        }
        if !added {
            let start = rows.len();
            rows.resize(start + width, Matrix::UNSET);
            for &(p, id) in inc {
                rows[start + p] = id;
            }
            len += 1;
        }
    }
    if axes.is_empty() && include.is_empty() {
        len = 1;
    }
    Matrix {
        names,
        values,
        rows,
        len,
    }
}

/// A stable key of one run: SHA-256 over a length-prefixed encoding of job
/// name, parameters (sorted by name), rep and warmup; the first 16 hex digits.
/// Independent of map order, platform and Rust version.
pub fn run_key<'a>(
    job: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    rep: u32,
    warmup: bool,
) -> String {
    let mut sorted: Vec<(&str, &str)> = params.into_iter().collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field("packrun-run-v1");
    field(job);
    for (k, v) in sorted {
        field(k);
        field(v);
    }
    field(&rep.to_string());
    field(if warmup { "warmup" } else { "measured" });
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combo(pairs: &[(&str, &str)]) -> Combo {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `run_key` of parameters as the tests write them.
    fn run_key(job: &str, p: &Combo, rep: u32, warmup: bool) -> String {
        super::run_key(
            job,
            p.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            rep,
            warmup,
        )
    }

    fn combos(m: Matrix) -> Vec<Combo> {
        (0..m.len())
            .map(|i| {
                m.combo(i)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    fn axes(a: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        a.iter()
            .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect()
    }

    fn range(r: &[&str], step: Option<&str>, factor: Option<&str>) -> Result<Vec<String>, String> {
        use super::super::raw::{RawRange, Text};
        let t = |s: &str| Text(s.to_string());
        range_values(
            &RawRange {
                range: r.iter().map(|s| t(s)).collect(),
                step: step.map(t),
                factor: factor.map(t),
            },
            1000,
        )
    }

    #[test]
    fn ranges_step_or_multiply_from_start_to_end_as_documented() {
        assert_eq!(
            range(&["1", "4"], None, None).unwrap(),
            ["1", "2", "3", "4"]
        );
        assert_eq!(
            range(&["1", "16"], Some("5"), None).unwrap(),
            ["1", "6", "11", "16"]
        );
        assert_eq!(
            range(&["0", "0.3"], Some("0.1"), None).unwrap(),
            ["0.0", "0.1", "0.2", "0.3"]
        );
        assert_eq!(
            range(&["1", "64"], None, Some("2")).unwrap(),
            ["1", "2", "4", "8", "16", "32", "64"]
        );
        assert_eq!(
            range(&["1", "100"], None, Some("10")).unwrap(),
            ["1", "10", "100"]
        );
        assert!(range(&["4", "1"], None, None)
            .unwrap_err()
            .contains("backwards"));
        assert!(range(&["1", "4"], Some("0"), None)
            .unwrap_err()
            .contains("more than 0"));
        assert!(range(&["1", "4"], None, Some("1"))
            .unwrap_err()
            .contains("more than 1"));
        assert!(range(&["1", "4"], Some("1"), Some("2"))
            .unwrap_err()
            .contains("not both"));
        assert!(range(&["1", "x"], None, None)
            .unwrap_err()
            .contains("`x` is not a number"));
        assert!(range(&["1", "1e9"], None, None)
            .unwrap_err()
            .contains("more than 1000 values"));
    }

    #[test]
    fn cross_product_varies_the_first_axis_slowest() {
        let got = combos(expand_matrix(
            &axes(&[("t", &["1", "2"]), ("l", &["a", "b"])]),
            &[],
            &[],
        ));
        assert_eq!(
            got,
            vec![
                combo(&[("t", "1"), ("l", "a")]),
                combo(&[("t", "1"), ("l", "b")]),
                combo(&[("t", "2"), ("l", "a")]),
                combo(&[("t", "2"), ("l", "b")]),
            ]
        );
    }

    #[test]
    fn exclude_removes_combinations_matching_all_its_keys() {
        let a = axes(&[("t", &["1", "2", "4"]), ("l", &["1", "9"])]);
        let got = combos(expand_matrix(
            &a,
            &[combo(&[("t", "4"), ("l", "9")]), combo(&[("t", "1")])],
            &[],
        ));
        assert_eq!(
            got,
            vec![
                combo(&[("t", "2"), ("l", "1")]),
                combo(&[("t", "2"), ("l", "9")]),
                combo(&[("t", "4"), ("l", "1")]),
            ]
        );
    }

    #[test]
    fn include_extends_matching_combinations_or_adds_a_new_one() {
        let a = axes(&[("t", &["1", "2"])]);
        let got = combos(expand_matrix(
            &a,
            &[],
            &[
                combo(&[("t", "2"), ("big", "yes")]),
                combo(&[("t", "8"), ("big", "huge")]),
            ],
        ));
        assert_eq!(
            got,
            vec![
                combo(&[("t", "1")]),
                combo(&[("t", "2"), ("big", "yes")]),
                combo(&[("t", "8"), ("big", "huge")]),
            ]
        );
    }

    #[test]
    fn include_without_axis_keys_extends_every_combination() {
        let got = combos(expand_matrix(
            &axes(&[("t", &["1", "2"])]),
            &[],
            &[combo(&[("mode", "fast")])],
        ));
        assert_eq!(
            got,
            vec![
                combo(&[("t", "1"), ("mode", "fast")]),
                combo(&[("t", "2"), ("mode", "fast")])
            ]
        );
    }

    #[test]
    fn a_matrix_of_only_includes_runs_each_include() {
        let inc = [combo(&[("t", "1")]), combo(&[("t", "3")])];
        assert_eq!(combos(expand_matrix(&[], &[], &inc)), inc.to_vec());
    }

    #[test]
    fn an_empty_include_entry_is_a_combination_without_parameters() {
        let got = combos(expand_matrix(&[], &[], &[Vec::new(), combo(&[("t", "1")])]));
        assert_eq!(got, vec![Vec::new(), combo(&[("t", "1")])]);
        assert_eq!(
            combos(expand_matrix(&[], &[], &[Vec::new()])),
            vec![Vec::new()]
        );
    }

    #[test]
    fn no_matrix_gives_one_empty_combination() {
        assert_eq!(combos(expand_matrix(&[], &[], &[])), vec![Vec::new()]);
    }

    #[test]
    fn excluding_everything_leaves_no_combinations() {
        assert!(expand_matrix(&axes(&[("t", &["1"])]), &[combo(&[("t", "1")])], &[]).is_empty());
    }

    #[test]
    fn placeholders_expand_and_double_braces_escape() {
        let pieces = parse_template("xz -T{threads} {{literal}} {job}-{rep}");
        let got = fill(&pieces, |n| match n {
            "threads" => Some("4".into()),
            "job" => Some("xz".into()),
            "rep" => Some("2".into()),
            _ => None,
        });
        assert_eq!(got, "xz -T4 {literal} xz-2");
    }

    #[test]
    fn unknown_to_the_filler_stays_as_a_placeholder() {
        let t = Template::partial(&parse_template("echo ${cpus} {{cpus}} {cpus} {x}"), |n| {
            (n == "x").then(|| "1".to_string())
        });
        assert_eq!(t.render(Some("0-3")), "echo ${cpus} {cpus} 0-3 1");
        assert_eq!(t.render(None), "echo ${cpus} {cpus} {cpus} 1");
        let pieces = parse_template("taskset -c {cpus} run");
        assert_eq!(fill(&pieces, |_| None), "taskset -c {cpus} run");
        assert_eq!(names(&pieces).collect::<Vec<_>>(), vec!["cpus"]);
    }

    #[test]
    fn shell_braces_are_not_placeholders() {
        let pieces = parse_template("awk '{print $1}' ${HOME}/x {a b}");
        assert_eq!(names(&pieces).count(), 0);
        assert_eq!(fill(&pieces, |_| None), "awk '{print $1}' ${HOME}/x {a b}");
    }

    #[test]
    fn run_key_is_stable_and_ignores_parameter_order() {
        let a = run_key("xz", &combo(&[("threads", "4"), ("level", "9")]), 2, false);
        let b = run_key("xz", &combo(&[("level", "9"), ("threads", "4")]), 2, false);
        assert_eq!(a, b);
        // Pinned: a change here breaks `--resume` of existing results.
        assert_eq!(a, run_key_reference());
        assert_eq!(
            a, "df2e04bf4e80013e",
            "computed independently with Python's hashlib"
        );
        assert_eq!(a.len(), 16);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    /// The same encoding, spelled out byte by byte.
    fn run_key_reference() -> String {
        let mut bytes = Vec::new();
        for f in [
            "packrun-run-v1",
            "xz",
            "level",
            "9",
            "threads",
            "4",
            "2",
            "measured",
        ] {
            bytes.extend((f.len() as u64).to_le_bytes());
            bytes.extend(f.as_bytes());
        }
        let d = Sha256::digest(&bytes);
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn run_key_differs_by_rep_warmup_job_and_value() {
        let p = combo(&[("t", "1")]);
        let base = run_key("a", &p, 1, false);
        assert_ne!(base, run_key("a", &p, 2, false));
        assert_ne!(base, run_key("a", &p, 1, true));
        assert_ne!(base, run_key("b", &p, 1, false));
        assert_ne!(base, run_key("a", &combo(&[("t", "2")]), 1, false));
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(
            run_key("j", &combo(&[("ab", "c")]), 1, false),
            run_key("j", &combo(&[("a", "bc")]), 1, false)
        );
    }
}
