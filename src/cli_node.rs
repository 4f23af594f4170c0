//! The command line for edge nodes: `edgeshift node keygen|register` for node operators, and
//! the EdgeNode controller's flags of `edgeshift run`. The logic lives in `edgeshift::trust`.
use std::io::Write as _;
use std::path::{Path, PathBuf};

use edgeshift::api::{EdgeCapacity, EdgeLocation, EdgeNode, EdgeNodeSpec};
use edgeshift::controller::edge_node::{EdgeNodeOptions, PolicyRef, DEFAULT_TRUST_POLICY};
use edgeshift::trust::encoding::decimal;
use edgeshift::trust::{NodeKey, ReputationSettings};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::SignedDuration;

/// File names `keygen` writes.
pub const KEY_FILE: &str = "edgeshift-node.key";
pub const PUBLIC_KEY_FILE: &str = "edgeshift-node.pub";

#[derive(clap::Subcommand, Debug)]
pub enum NodeCommand {
    /// Create a node key: DIR/edgeshift-node.key (secret, mode 0600) and DIR/edgeshift-node.pub.
    /// Refuses to overwrite an existing key.
    Keygen(KeygenArgs),
    /// Print a signed EdgeNode manifest (YAML) for `kubectl apply -f -`.
    Register(RegisterArgs),
}

#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Directory to write the key files to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct RegisterArgs {
    /// The secret key file from `edgeshift node keygen`.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The Kubernetes Node this machine joined the cluster as.
    #[arg(long, value_name = "NAME", value_parser = parse_node_name)]
    pub node: String,
    /// Your operator identity (e.g. a wallet address), as the platform's trust policy lists it.
    #[arg(long, value_name = "ID", value_parser = parse_operator)]
    pub operator: String,
    /// Where the node is: latitude and longitude in degrees (at most 6 decimals), optionally
    /// an ISO country code, e.g. `52.52,13.405,DE`.
    #[arg(long, value_name = "LAT,LON[,CC]", value_parser = parse_location, allow_hyphen_values = true)]
    pub location: EdgeLocation,
    /// What the node offers, e.g. `cpu=4,memory=8Gi,pods=20` (any of the three).
    #[arg(long, value_name = "cpu=N,memory=Q,pods=N", value_parser = parse_capacity)]
    pub capacity: EdgeCapacity,
    /// Asking price per hour (0 or more, at most 6 decimals).
    #[arg(long, value_name = "PRICE", value_parser = parse_price, allow_negative_numbers = true)]
    pub price: f64,
    /// A label describing the node, e.g. `gpu=none`. Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Name of the EdgeNode object (default: the node name).
    #[arg(long, value_name = "NAME", value_parser = parse_node_name)]
    pub name: Option<String>,
}

/// `edgeshift run`'s flags for the EdgeNode controller.
#[derive(clap::Args, Debug)]
#[command(next_help_heading = "Edge nodes")]
pub struct EdgeNodeRunArgs {
    /// The trust policy ConfigMap (keys `mode`, `allowedOperators`, `revokedKeys`); when it
    /// is missing or unusable, every registration is rejected.
    #[arg(long, value_name = "NAMESPACE/NAME", default_value = DEFAULT_TRUST_POLICY)]
    pub trust_policy: PolicyRef,
    /// Verify only the EdgeNodes matching this label selector (default: all).
    #[arg(long, value_name = "SELECTOR")]
    pub edge_node_selector: Option<String>,
    /// Do not run the EdgeNode controller (EdgeNode status is set by someone else, e.g. tests).
    #[arg(long)]
    pub disable_edge_nodes: bool,
    /// Seconds a new or recovered edge node must be verified and Ready before it takes more
    /// than one replica of a service.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub probation_seconds: u32,
    /// Ready→NotReady flaps within --quarantine-window-seconds that quarantine an edge node
    /// (0: never).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub quarantine_flaps: u32,
    /// The window in which flaps are counted.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub quarantine_window_seconds: u32,
    /// How long a quarantined edge node gets no new workloads.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub quarantine_seconds: u32,
    /// Roughly how far back an edge node's availability looks (time constant of its average).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub availability_window_seconds: u32,
}

impl EdgeNodeRunArgs {
    /// The controller's options, or `None` with `--disable-edge-nodes`.
    pub fn options(&self) -> Option<EdgeNodeOptions> {
        let secs = |s: u32| SignedDuration::from_secs(i64::from(s));
        (!self.disable_edge_nodes).then(|| EdgeNodeOptions {
            trust_policy: self.trust_policy.clone(),
            selector: self.edge_node_selector.clone(),
            reputation: ReputationSettings {
                probation: secs(self.probation_seconds),
                quarantine_flaps: self.quarantine_flaps,
                flap_window: secs(self.quarantine_window_seconds),
                quarantine_for: secs(self.quarantine_seconds),
                availability_window: secs(self.availability_window_seconds.max(1)),
            },
            ..EdgeNodeOptions::default()
        })
    }
}

pub fn run(command: NodeCommand) -> Result<(), String> {
    match command {
        NodeCommand::Keygen(args) => {
            let key = NodeKey::generate().map_err(|e| format!("generating a key: {e}"))?;
            let (secret, public) = write_key(&args.out, &key)?;
            println!(
                "wrote {} (secret: keep it on the node, never share it) and {}",
                secret.display(),
                public.display()
            );
            println!(
                "public key (send it to the platform team for their trust policy): {}",
                key.public_key_base64()
            );
            Ok(())
        }
        NodeCommand::Register(args) => {
            let text = std::fs::read_to_string(&args.key)
                .map_err(|e| format!("reading key file {}: {e}", args.key.display()))?;
            warn_if_readable_by_others(&args.key);
            let key = NodeKey::from_base64(&text)
                .map_err(|e| format!("key file {}: {e}", args.key.display()))?;
            print!("{}", manifest(&args, &key)?);
            Ok(())
        }
    }
}

/// Writes `DIR/edgeshift-node.key` (mode 0600) and `DIR/edgeshift-node.pub`; refuses when
/// either exists, so an existing key is never lost.
pub fn write_key(dir: &Path, key: &NodeKey) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let secret = dir.join(KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    for path in [&secret, &public] {
        if path.exists() {
            return Err(format!(
                "{} already exists; refusing to overwrite a node key (move it away first if you really mean to replace it)",
                path.display()
            ));
        }
    }
    write_new(&secret, &key.to_base64(), 0o600)?;
    write_new(&public, &key.public_key_base64(), 0o644)?;
    Ok((secret, public))
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    writeln!(file, "{text}").map_err(|e| format!("writing {}: {e}", path.display()))
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                eprintln!(
                    "edgeshift: warning: {} is readable by other users; `chmod 600` it",
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The signed EdgeNode manifest, as YAML `kubectl apply -f -` takes.
pub fn manifest(args: &RegisterArgs, key: &NodeKey) -> Result<String, String> {
    let mut spec = EdgeNodeSpec {
        node_name: args.node.clone(),
        operator: args.operator.clone(),
        public_key: String::new(),
        signature: String::new(),
        location: Some(args.location.clone()),
        capacity: Some(args.capacity.clone()),
        price_per_hour: Some(args.price),
        labels: args.labels.iter().cloned().collect(),
    };
    key.sign(&mut spec)
        .map_err(|e| format!("signing the registration: {e}"))?;
    let edge_node = EdgeNode::new(args.name.as_deref().unwrap_or(&args.node), spec);
    let yaml =
        serde_yaml::to_string(&edge_node).map_err(|e| format!("writing the manifest: {e}"))?;
    Ok(format!(
        "# EdgeNode for Node {}, signed by {} (edgeshift-registration-v1).\n# Any change to the spec below breaks the signature: sign again instead.\n{yaml}",
        args.node,
        key.public_key_base64()
    ))
}

fn parse_node_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!("'{s}' is not a Kubernetes node name (lowercase letters, digits, '-' and '.', at most 253)")
    })
}

fn parse_operator(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().count() > 128 {
        return Err("the operator id has 1 to 128 characters".to_string());
    }
    Ok(s.to_string())
}

fn number(field: &'static str, text: &str, min: f64, max: f64) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{field} '{text}' is not a number"))?;
    if !(min..=max).contains(&value) {
        return Err(format!("{field} {value} is outside {min}..{max}"));
    }
    decimal(field, value).map_err(|e| e.to_string())?;
    Ok(value)
}

fn parse_location(s: &str) -> Result<EdgeLocation, String> {
    let parts: Vec<&str> = s.split(',').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(format!("'{s}' is not LAT,LON[,CC] (e.g. 52.52,13.405,DE)"));
    }
    let country = match parts.get(2).map(|c| c.trim().to_ascii_uppercase()) {
        Some(cc) if cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase()) => Some(cc),
        Some(cc) => return Err(format!("'{cc}' is not a two-letter country code (e.g. DE)")),
        None => None,
    };
    Ok(EdgeLocation {
        latitude: number("latitude", parts[0], -90.0, 90.0)?,
        longitude: number("longitude", parts[1], -180.0, 180.0)?,
        country,
    })
}

fn parse_capacity(s: &str) -> Result<EdgeCapacity, String> {
    let mut capacity = EdgeCapacity {
        cpu: None,
        memory: None,
        pods: None,
    };
    for item in s.split(',').filter(|i| !i.trim().is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("'{item}' is not KEY=VALUE (cpu, memory or pods)"))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("{key} has no value"));
        }
        match key.trim() {
            "cpu" => capacity.cpu = Some(Quantity(value.to_string())),
            "memory" => capacity.memory = Some(Quantity(value.to_string())),
            "pods" => {
                let pods: u32 = value
                    .parse()
                    .map_err(|_| format!("pods '{value}' is not a whole number"))?;
                if pods > 1000 {
                    return Err(format!("pods {pods} is more than 1000"));
                }
                capacity.pods = Some(pods);
            }
            other => return Err(format!("unknown capacity '{other}' (cpu, memory or pods)")),
        }
    }
    if capacity.cpu.is_none() && capacity.memory.is_none() && capacity.pods.is_none() {
        return Err("give at least one of cpu=, memory=, pods=".to_string());
    }
    Ok(capacity)
}

fn parse_price(s: &str) -> Result<f64, String> {
    number("price", s, 0.0, f64::MAX)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        node: NodeCommand,
    }

    fn register(args: &[&str]) -> Result<RegisterArgs, String> {
        let mut argv = vec!["node", "register"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).map_err(|e| e.to_string())?.node {
            NodeCommand::Register(r) => Ok(r),
            other => Err(format!("parsed as {other:?}")),
        }
    }

    const FULL: &[&str] = &[
        "--key",
        "k",
        "--node",
        "edge-berlin-1",
        "--operator",
        "alice",
        "--location",
        "52.52,13.405,de",
        "--capacity",
        "cpu=4,memory=8Gi,pods=20",
        "--price",
        "0.05",
        "--label",
        "gpu=none",
        "--label",
        "net=a=b",
    ];

    #[test]
    fn register_parses_every_flag() {
        let r = register(FULL).expect("parses");
        assert_eq!(r.node, "edge-berlin-1");
        assert_eq!(
            r.location,
            EdgeLocation {
                latitude: 52.52,
                longitude: 13.405,
                country: Some("DE".into())
            }
        );
        assert_eq!(r.capacity.cpu, Some(Quantity("4".into())));
        assert_eq!(r.capacity.memory, Some(Quantity("8Gi".into())));
        assert_eq!(r.capacity.pods, Some(20));
        assert_eq!(r.price, 0.05);
        assert_eq!(
            r.labels,
            vec![("gpu".into(), "none".into()), ("net".into(), "a=b".into())]
        );
        let south = register(&[
            "--key",
            "k",
            "--node",
            "n",
            "--operator",
            "o",
            "--location",
            "-33.86882,151.209296",
            "--capacity",
            "pods=1",
            "--price",
            "0",
        ])
        .expect("negative latitude, no country");
        assert_eq!(south.location.country, None);
        assert_eq!(south.location.latitude, -33.86882);
    }

    #[test]
    fn register_refuses_bad_values_with_a_reason() {
        let with = |flag: &str, value: &str| {
            let mut args: Vec<&str> = FULL.to_vec();
            let i = args.iter().position(|a| *a == flag).expect("flag");
            args[i + 1] = value;
            register(&args).map(|_| ()).unwrap_err()
        };
        assert!(with("--location", "52.52").contains("LAT,LON"));
        assert!(with("--location", "95,10").contains("outside"));
        assert!(with("--location", "52.5200001,10").contains("6 decimals"));
        assert!(with("--location", "1,2,DEU").contains("country code"));
        assert!(with("--capacity", "gpu=1").contains("unknown capacity"));
        assert!(with("--capacity", "pods=many").contains("whole number"));
        assert!(with("--capacity", "").contains("at least one"));
        assert!(with("--price", "-1").contains("outside"));
        assert!(with("--price", "NaN").contains("outside"));
        assert!(with("--node", "Edge_1").contains("node name"));
        assert!(with("--label", "=x").contains("KEY=VALUE"));
        assert!(
            register(&["--node", "n"]).is_err(),
            "--key and the rest are required"
        );
    }

    #[test]
    fn the_printed_manifest_is_a_verifiable_edge_node() {
        let r = register(FULL).expect("parses");
        let key = NodeKey::from_seed([3; 32]);
        let text = manifest(&r, &key).expect("manifest");
        let back: EdgeNode = serde_yaml::from_str(&text).expect("YAML of an EdgeNode");
        assert_eq!(back.metadata.name.as_deref(), Some("edge-berlin-1"));
        assert_eq!(back.spec.public_key, key.public_key_base64());
        assert_eq!(edgeshift::trust::verify_signature(&back.spec), Ok(()));
        assert!(back.status.is_none());
        let value: serde_json::Value = serde_yaml::from_str(&text).expect("YAML");
        assert_eq!(value["apiVersion"], "edgeshift.io/v1alpha1");
        assert_eq!(value["kind"], "EdgeNode");
        assert_eq!(value["spec"]["pricePerHour"], 0.05);
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "edgeshift-keygen-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn keygen_writes_a_private_key_and_never_overwrites_one() {
        let dir = temp_dir("once");
        let key = NodeKey::from_seed([4; 32]);
        let (secret, public) = write_key(&dir, &key).expect("writes");
        let read =
            NodeKey::from_base64(&std::fs::read_to_string(&secret).expect("key")).expect("a key");
        assert_eq!(read.public_key_base64(), key.public_key_base64());
        assert_eq!(
            std::fs::read_to_string(&public).expect("pub").trim(),
            key.public_key_base64()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&secret)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = write_key(&dir, &NodeKey::from_seed([5; 32])).unwrap_err();
        assert!(again.contains("refusing to overwrite"), "{again}");
        let still =
            NodeKey::from_base64(&std::fs::read_to_string(&secret).expect("key")).expect("a key");
        assert_eq!(still.public_key_base64(), key.public_key_base64());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keygen_parses_its_directory() {
        let cli = Cli::try_parse_from(["node", "keygen", "--out", "/tmp/x"]).expect("parses");
        assert!(
            matches!(cli.node, NodeCommand::Keygen(KeygenArgs { out }) if out == Path::new("/tmp/x"))
        );
    }

    #[test]
    fn run_flags_turn_into_controller_options() {
        #[derive(Parser)]
        struct Run {
            #[command(flatten)]
            edge: EdgeNodeRunArgs,
        }
        let run = Run::try_parse_from(["run"]).expect("defaults");
        let options = run.edge.options().expect("enabled by default");
        assert_eq!(options.trust_policy.to_string(), DEFAULT_TRUST_POLICY);
        assert_eq!(options.reputation, ReputationSettings::default());
        let run = Run::try_parse_from([
            "run",
            "--trust-policy",
            "ns/p",
            "--edge-node-selector",
            "a=b",
            "--probation-seconds",
            "5",
            "--quarantine-flaps",
            "2",
        ])
        .expect("flags");
        let options = run.edge.options().expect("enabled");
        assert_eq!(options.trust_policy.to_string(), "ns/p");
        assert_eq!(options.selector.as_deref(), Some("a=b"));
        assert_eq!(options.reputation.probation, SignedDuration::from_secs(5));
        assert_eq!(options.reputation.quarantine_flaps, 2);
        assert!(Run::try_parse_from(["run", "--trust-policy", "nonamespace"]).is_err());
        let off = Run::try_parse_from(["run", "--disable-edge-nodes"]).expect("flag");
        assert!(off.edge.options().is_none());
    }
}
