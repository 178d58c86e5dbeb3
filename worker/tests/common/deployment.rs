//! A container of a Deployment as `kubectl kustomize` renders it, resolved the way the kubelet
//! starts it: command, args, the environment (`envFrom` ConfigMaps in order, then `env`, which
//! wins; `configMapKeyRef` read from the rendered ConfigMaps; `$(VAR)` references expanded) and
//! its limits. A test can then start the binary exactly as Kubernetes would.
//!
//! YAML is read with `saphyr`: serde_yaml is archived, and its maintained forks
//! (serde_norway, serde_yaml_ng) still parse through a C-to-Rust translation of libyaml in
//! `unsafe` code; saphyr is safe Rust, YAML 1.2, maintained, and a tree is all a test walking
//! manifests needs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use saphyr::{LoadableYamlNode, YamlOwned};

/// One container of a rendered Deployment, resolved.
#[derive(Debug, Clone)]
pub struct Container {
    /// `command` (the image's entrypoint is not consulted: the contract says it is stated).
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// What the container's process gets, besides what the runtime adds (PATH, HOSTNAME).
    pub env: BTreeMap<String, String>,
    /// `resources.limits.memory` in bytes.
    pub memory_limit: u64,
    /// `resources.limits.cpu` in millicores.
    pub cpu_limit_millis: u64,
    /// The limits as written, for reports.
    pub memory_limit_text: String,
    pub cpu_limit_text: String,
}

/// `kubectl kustomize DIR`: the rendered multi-document YAML.
pub fn render(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running `kubectl kustomize {}`: {e}", dir.display()));
    assert!(
        out.status.success(),
        "`kubectl kustomize {}` failed ({}):\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kustomize prints UTF-8")
}

fn field<'a>(node: &'a YamlOwned, key: &str) -> Option<&'a YamlOwned> {
    node.as_mapping_get(key)
}

fn text(node: &YamlOwned, what: &str) -> String {
    node.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {node:?}"))
        .to_string()
}

fn list(node: Option<&YamlOwned>) -> &[YamlOwned] {
    node.and_then(|n| n.as_vec())
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn strings(node: Option<&YamlOwned>, what: &str) -> Vec<String> {
    list(node).iter().map(|n| text(n, what)).collect()
}

fn is_kind(doc: &YamlOwned, kind: &str, name: Option<&str>) -> bool {
    let named = |n: &str| {
        field(doc, "metadata")
            .and_then(|m| field(m, "name"))
            .and_then(|v| v.as_str())
            == Some(n)
    };
    field(doc, "kind").and_then(|k| k.as_str()) == Some(kind) && name.is_none_or(named)
}

/// Finds `deployment`'s container `container` in the rendered set and resolves it.
pub fn container(rendered: &str, deployment: &str, container: &str) -> Container {
    let docs = YamlOwned::load_from_str(rendered).expect("kustomize renders valid YAML");
    let config_maps: BTreeMap<String, BTreeMap<String, String>> = docs
        .iter()
        .filter(|d| is_kind(d, "ConfigMap", None))
        .map(|d| {
            let name = text(&d["metadata"]["name"], "ConfigMap name");
            let data = field(d, "data")
                .and_then(|m| m.as_mapping())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (text(k, "ConfigMap key"), text(v, "ConfigMap value")))
                        .collect()
                })
                .unwrap_or_default();
            (name, data)
        })
        .collect();
    let dep = docs
        .iter()
        .find(|d| is_kind(d, "Deployment", Some(deployment)))
        .unwrap_or_else(|| panic!("no Deployment {deployment} in the rendered set"));
    let spec = &dep["spec"]["template"]["spec"];
    let c = list(field(spec, "containers"))
        .iter()
        .find(|c| field(c, "name").and_then(|n| n.as_str()) == Some(container))
        .unwrap_or_else(|| panic!("Deployment {deployment} has no container {container}"));

    let config_map = |name: &str, optional: bool| -> Option<&BTreeMap<String, String>> {
        let found = config_maps.get(name);
        assert!(
            found.is_some() || optional,
            "container {container} refers to ConfigMap {name}, not in the rendered set"
        );
        found
    };
    let optional = |n: &YamlOwned| field(n, "optional").and_then(|o| o.as_bool()) == Some(true);

    // The kubelet's order: every envFrom source in turn, then env entries, which override.
    let mut env = BTreeMap::new();
    for source in list(field(c, "envFrom")) {
        let prefix = field(source, "prefix").map_or(String::new(), |p| text(p, "prefix"));
        let Some(cm) = field(source, "configMapRef") else {
            panic!("envFrom {source:?}: only configMapRef can be reproduced by a test");
        };
        if let Some(data) = config_map(&text(&cm["name"], "configMapRef name"), optional(cm)) {
            for (k, v) in data {
                env.insert(format!("{prefix}{k}"), v.clone());
            }
        }
    }
    for var in list(field(c, "env")) {
        let name = text(&var["name"], "env name");
        if let Some(value) = field(var, "value") {
            let value = expand(&text(value, "env value"), &env);
            env.insert(name, value);
        } else if let Some(from) = field(var, "valueFrom") {
            let Some(r) = field(from, "configMapKeyRef") else {
                panic!("env {name}: only configMapKeyRef can be reproduced by a test: {from:?}");
            };
            let key = text(&r["key"], "configMapKeyRef key");
            let value = config_map(&text(&r["name"], "configMapKeyRef name"), optional(r))
                .and_then(|data| data.get(&key));
            match value {
                Some(v) => {
                    env.insert(name, v.clone());
                }
                None => assert!(optional(r), "env {name}: key {key} missing"),
            }
        } else {
            env.insert(name, String::new());
        }
    }
    // command and args see the whole environment.
    let command: Vec<String> = strings(field(c, "command"), "command")
        .iter()
        .map(|s| expand(s, &env))
        .collect();
    let args = strings(field(c, "args"), "args")
        .iter()
        .map(|s| expand(s, &env))
        .collect();
    assert!(
        !command.is_empty(),
        "container {container} states no command"
    );

    let limits = field(c, "resources").and_then(|r| field(r, "limits"));
    let limit = |what: &str| {
        limits
            .and_then(|l| field(l, what))
            .map(|q| text(q, "quantity"))
            .unwrap_or_else(|| panic!("container {container} has no limits.{what}"))
    };
    let memory_limit_text = limit("memory");
    let cpu_limit_text = limit("cpu");
    let memory_limit = parse_quantity(&memory_limit_text)
        .unwrap_or_else(|| panic!("limits.memory `{memory_limit_text}` is not a quantity"))
        .ceil() as u64;
    let cpu_limit_millis = (parse_quantity(&cpu_limit_text)
        .unwrap_or_else(|| panic!("limits.cpu `{cpu_limit_text}` is not a quantity"))
        * 1000.0)
        .ceil() as u64;
    Container {
        command,
        args,
        env,
        memory_limit,
        cpu_limit_millis,
        memory_limit_text,
        cpu_limit_text,
    }
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined reference is
/// left as written, and `$$` is an escaped `$`.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|r| r.split_once(')')) {
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A Kubernetes quantity (`256Mi`, `1.5Gi`, `2`, `500m`, `1e9`, `128k`) in base units.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        e => 10f64.powi(e.strip_prefix(['e', 'E'])?.parse().ok()?),
    };
    Some(number * factor)
}
