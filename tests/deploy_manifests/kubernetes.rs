//! config/kubernetes/ against its topology: which node each pod runs (its start command, run),
//! and whether the StatefulSet gives that node what it needs — its DNS name as listen and
//! advertise address, its port, probes on the right paths, a headless Service, a
//! PodDisruptionBudget, a volume for its data, the topology file where `--topology` says.

use std::collections::{BTreeMap, BTreeSet};

use promtier::topology::{self, NodeRole, Topology};

use crate::image::Image;
use crate::launch::{StandIn, binary_accepts, flag, split_host_port};
use crate::objects::*;
use crate::{ROLES, Report, repo};

const KUBERNETES_DIR: &str = "config/kubernetes";
/// The pod label naming a StatefulSet's role.
const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// What the manifests are checked against.
struct Inputs<'a> {
    m: &'a Manifests,
    /// The topology file the ConfigMap carries.
    topology: &'a Topology,
    image: &'a Image,
    stand_in: &'a StandIn,
}

/// Checks the manifests against the topology their ConfigMap carries, the image and the binary.
fn check_kubernetes(m: &Manifests, topology: &Topology, image: &Image, stand_in: &StandIn) -> Report {
    let mut r = Report::default();
    let inputs = Inputs { m, topology, image, stand_in };
    check_kustomization(m, topology, &mut r);
    // node name → the pod that runs it
    let mut ran: BTreeMap<String, String> = BTreeMap::new();
    for (file, set) in m.sets() {
        check_set(&format!("{file}: StatefulSet {}", set.metadata.name), &inputs, set, &mut ran, &mut r);
    }
    for node in &topology.nodes {
        if !matches!(node.role, NodeRole::Demo { .. }) && !ran.contains_key(&node.name) {
            r.add(KUBERNETES_DIR, format!("node {} of the topology has no pod", node.name));
        }
    }
    check_client_services(m, &mut r);
    r
}

/// One StatefulSet: its pod template, then each pod, then what all its pods share (one port,
/// one scheme: probes, Service, budget).
fn check_set(
    at: &str,
    inputs: &Inputs<'_>,
    set: &StatefulSet,
    ran: &mut BTreeMap<String, String>,
    r: &mut Report,
) {
    let Some((container, role)) = check_template(at, set, inputs.image, r) else { return };
    let claims: Vec<&str> =
        set.spec.volume_claim_templates.iter().map(|c| c.metadata.name.as_str()).collect();
    let data_mounts: Vec<&str> = container
        .volume_mounts
        .iter()
        .filter(|v| claims.contains(&v.name.as_str()))
        .map(|v| v.mount_path.as_str())
        .collect();
    if data_mounts.is_empty() {
        r.add(at, "no volumeClaimTemplate is mounted: data would not survive the pod");
    }
    let mut served = BTreeSet::new();
    for ordinal in 0..set.spec.replicas {
        let pod = Pod { name: format!("{}-{ordinal}", set.metadata.name), set, container, role };
        let at = format!("{at}: pod {}", pod.name);
        served.extend(check_pod(&at, inputs, &pod, &data_mounts, ran, r));
    }
    let served: Vec<(u16, &str)> = served.into_iter().collect();
    let &[(port, scheme)] = served.as_slice() else {
        if served.len() > 1 {
            r.add(
                at,
                format!("its nodes serve on different ports or schemes {served:?}; a pod template has one"),
            );
        }
        return;
    };
    check_probes(at, container, port, scheme, r);
    if !container.ports.iter().any(|p| p.container_port == port) {
        let declared: Vec<u16> = container.ports.iter().map(|p| p.container_port).collect();
        r.add(at, format!("its nodes listen on port {port}; the container declares ports {declared:?}"));
    }
    if !inputs.image.exposed.contains(&port) {
        r.add(at, format!("port {port} is not EXPOSEd by the Dockerfile ({:?})", inputs.image.exposed));
    }
    check_headless_service(at, inputs.m, set, container, port, r);
    check_budget(at, inputs.m, set, r);
}

/// The pod template: selector, role label, one container, security, resources, claims. Returns
/// the container and the role when there is something to run.
fn check_template<'a>(
    at: &str,
    set: &'a StatefulSet,
    image: &Image,
    r: &mut Report,
) -> Option<(&'a Container, &'a str)> {
    let spec = &set.spec;
    let labels = &spec.template.metadata.labels;
    if set.api_version != "apps/v1" {
        r.add(at, format!("apiVersion {} (want apps/v1)", set.api_version));
    }
    if spec.selector.match_labels.is_empty() || !is_subset(&spec.selector.match_labels, labels) {
        r.add(at, "selector.matchLabels must be non-empty and among the pod template's labels");
    }
    let role = labels.get(COMPONENT_LABEL).map(String::as_str).unwrap_or("");
    if !ROLES.contains(&role) {
        r.add(at, format!("pod label {COMPONENT_LABEL}={role:?} is not one of {ROLES:?}"));
    }
    check_security(at, &spec.template.spec, image, r);
    for claim in &spec.volume_claim_templates {
        if !claim.spec.resources.requests.contains_key("storage") {
            r.add(at, format!("volumeClaimTemplate {} requests no storage", claim.metadata.name));
        }
    }
    let [container] = spec.template.spec.containers.as_slice() else {
        r.add(at, "want exactly one container");
        return None;
    };
    if container.command.as_ref().is_some_and(|c| c.first().is_some_and(|p| p.ends_with("/sh")))
        && (image.base.contains("distroless") || image.base == "scratch")
    {
        r.add(at, format!("the start command needs a shell, and the image is {}", image.base));
    }
    let requests = container.resources.as_ref().map(|res| &res.requests);
    for resource in ["cpu", "memory"] {
        if !requests.is_some_and(|req| req.contains_key(resource)) {
            r.add(at, format!("no {resource} request"));
        }
    }
    Some((container, role))
}

/// One pod of a StatefulSet.
struct Pod<'a> {
    /// `<set>-<ordinal>`, as the StatefulSet names it.
    name: String,
    set: &'a StatefulSet,
    container: &'a Container,
    /// The role its labels give.
    role: &'a str,
}

/// Runs the pod's start command and checks the node it would be: known to the topology, of the
/// pod's role, run by no other pod, reachable at the pod's DNS name, its data on the pod's
/// volume. Returns the node's port and scheme.
fn check_pod(
    at: &str,
    inputs: &Inputs<'_>,
    pod: &Pod<'_>,
    data_mounts: &[&str],
    ran: &mut BTreeMap<String, String>,
    r: &mut Report,
) -> Option<(u16, &'static str)> {
    let args = match inputs.stand_in.launch(pod.container, &pod.name, &inputs.image.entrypoint) {
        Ok(args) => args,
        Err(e) => {
            r.add(at, e);
            return None;
        }
    };
    if let Err(e) = binary_accepts(&args) {
        r.add(at, e);
    }
    if args.first().map(String::as_str) != Some(pod.role) {
        r.add(at, format!("runs `promtier {}`, but the pod is labelled {}", args.join(" "), pod.role));
    }
    match flag(&args, "topology") {
        Some(path) => {
            let spec = &pod.set.spec.template.spec;
            if let Err(e) = check_topology_mount(path, pod.container, spec, inputs.m, inputs.topology) {
                r.add(at, e);
            }
        }
        None => r.add(at, "no --topology"),
    }
    let Some(name) = flag(&args, "node") else {
        r.add(at, "no --node");
        return None;
    };
    let Some(node) = inputs.topology.node(name) else {
        r.add(at, format!("runs node {name:?}, which the topology does not have"));
        return None;
    };
    if let Some(other) = ran.insert(name.to_string(), pod.name.clone()) {
        r.add(at, format!("node {name} is run by pod {other} too"));
    }
    if node.role.kind() != pod.role {
        r.add(at, format!("node {name} is a {} node, the pod is labelled {}", node.role.kind(), pod.role));
    }
    if !data_mounts.iter().any(|mount| node.data_dir.starts_with(mount)) {
        let dir = node.data_dir.display();
        r.add(
            at,
            format!("node {name} keeps its data in {dir}, outside the volume(s) mounted at {data_mounts:?}"),
        );
    }
    let namespace = &inputs.m.kustomization.namespace;
    let host = format!("{}.{}.{namespace}.svc.cluster.local", pod.name, pod.set.spec.service_name);
    let mut port = None;
    for (what, addr) in [("listen", &node.listen), ("advertise", &node.advertise)] {
        match split_host_port(addr) {
            Some((h, p)) if h == host => port = port.or(Some(p)),
            _ => r.add(
                at,
                format!(
                    "node {name} has {what} {addr}; the pod's DNS name is {host} (nodes: in the topology)"
                ),
            ),
        }
    }
    Some((port?, node.web.scheme()))
}

/// One PodDisruptionBudget selecting exactly the set's pods, letting one go at a time.
fn check_budget(at: &str, m: &Manifests, set: &StatefulSet, r: &mut Report) {
    let selector = &set.spec.selector.match_labels;
    let budgets: Vec<&Disruption> =
        m.budgets().filter(|d| &d.spec.selector.match_labels == selector).collect();
    let [d] = budgets.as_slice() else {
        r.add(at, format!("{} PodDisruptionBudgets select exactly its pods; want one", budgets.len()));
        return;
    };
    let at = format!("{at}: PodDisruptionBudget {}", d.metadata.name);
    if d.api_version != "policy/v1" {
        r.add(&at, format!("apiVersion {}", d.api_version));
    }
    if d.spec.max_unavailable != Some(IntOrString::Int(1)) {
        r.add(&at, format!("maxUnavailable {:?}, want 1 (one replica at a time)", d.spec.max_unavailable));
    }
}

fn is_subset(small: &Labels, big: &Labels) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

/// Every file accounted for, the namespace created, every ConfigMap a pod mounts generated.
fn check_kustomization(m: &Manifests, topology: &Topology, r: &mut Report) {
    let at = format!("{KUBERNETES_DIR}/kustomization.yaml");
    let k = &m.kustomization;
    let generated: BTreeSet<&str> =
        k.config_map_generator.iter().flat_map(|g| g.entries().map(|(_, f)| f)).collect();
    let mut files: Vec<String> = std::fs::read_dir(&m.dir)
        .expect("read the manifests directory")
        .map(|e| e.expect("directory entry").file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml"))
        .collect();
    files.sort();
    for f in files {
        if f != "kustomization.yaml" && !k.resources.contains(&f) && !generated.contains(f.as_str()) {
            r.add(&at, format!("{f} is neither a resource nor a configMapGenerator file"));
        }
    }
    for f in &generated {
        if !m.dir.join(f).is_file() {
            r.add(&at, format!("configMapGenerator file {f} does not exist"));
        }
    }
    if !generated.iter().any(|f| m.dir.join(f) == topology.source) {
        r.add(&at, format!("no configMapGenerator carries {}", topology.source.display()));
    }
    let namespaces: Vec<&str> = m
        .objects
        .iter()
        .filter_map(|(_, o)| match o {
            Object::Namespace { metadata } => Some(metadata.name.as_str()),
            _ => None,
        })
        .collect();
    if namespaces != [k.namespace.as_str()] {
        r.add(&at, format!("namespace {} but Namespace objects {namespaces:?}", k.namespace));
    }
    for (_, set) in m.sets() {
        for v in &set.spec.template.spec.volumes {
            let maps = v.config_map.iter().chain(
                v.projected.iter().flat_map(|p| p.sources.iter().filter_map(|s| s.config_map.as_ref())),
            );
            for cm in maps {
                if !k.config_map_generator.iter().any(|g| g.name == cm.name) {
                    r.add(
                        &at,
                        format!(
                            "StatefulSet {} mounts ConfigMap {}, which no generator makes",
                            set.metadata.name, cm.name
                        ),
                    );
                }
            }
        }
    }
}

/// `--topology PATH` must name the topology file through the volume mounted at PATH's folder:
/// a ConfigMap generated from `topology`'s own file, under PATH's file name.
fn check_topology_mount(
    path: &str,
    c: &Container,
    pod: &PodSpec,
    m: &Manifests,
    topology: &Topology,
) -> Result<(), String> {
    let (dir, key) = path.rsplit_once('/').ok_or_else(|| format!("--topology {path} is not absolute"))?;
    let mount = c
        .volume_mounts
        .iter()
        .find(|v| v.mount_path.trim_end_matches('/') == dir)
        .ok_or_else(|| format!("--topology {path}: nothing is mounted at {dir}"))?;
    let volume = pod
        .volumes
        .iter()
        .find(|v| v.name == mount.name)
        .ok_or_else(|| format!("volume {} is mounted but not defined", mount.name))?;
    let maps: Vec<&str> = volume
        .config_map
        .iter()
        .chain(volume.projected.iter().flat_map(|p| p.sources.iter().filter_map(|s| s.config_map.as_ref())))
        .map(|c| c.name.as_str())
        .collect();
    let file = m
        .kustomization
        .config_map_generator
        .iter()
        .filter(|g| maps.contains(&g.name.as_str()))
        .flat_map(Generator::entries)
        .find(|(k, _)| *k == key)
        .map(|(_, f)| f)
        .ok_or_else(|| {
            format!("--topology {path}: no ConfigMap of volume {} has a key {key}", volume.name)
        })?;
    if m.dir.join(file) != topology.source {
        return Err(format!("--topology {path} is {file}, not {}", topology.source.display()));
    }
    Ok(())
}

/// The numeric port a probe or Service names: a number, or a container port's name.
fn resolve_port(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => {
            c.ports.iter().find(|p| p.name.as_deref() == Some(name.as_str())).map(|p| p.container_port)
        }
    }
}

/// Readiness on `/-/ready` (503 while the TSDB cannot take writes), liveness and startup on
/// `/-/healthy`, on the node's port and scheme. A startup probe is optional; without one the
/// liveness probe must allow for the WAL replay, during which nothing listens.
fn check_probes(at: &str, c: &Container, node_port: u16, scheme: &str, r: &mut Report) {
    let probes = [
        ("readinessProbe", c.readiness_probe.as_ref(), "/-/ready", true),
        ("livenessProbe", c.liveness_probe.as_ref(), "/-/healthy", true),
        ("startupProbe", c.startup_probe.as_ref(), "/-/healthy", false),
    ];
    for (what, probe, path, required) in probes {
        let Some(probe) = probe else {
            if required {
                r.add(at, format!("no {what}"));
            }
            continue;
        };
        let Some(get) = &probe.http_get else {
            r.add(at, format!("{what} is not an httpGet"));
            continue;
        };
        if get.path != path {
            r.add(at, format!("{what} asks {}, want {path}", get.path));
        }
        let port = resolve_port(&get.port, c);
        if port != Some(node_port) {
            r.add(at, format!("{what} port {:?} is {port:?}, not the node's port {node_port}", get.port));
        }
        let probe_scheme = get.scheme.as_deref().unwrap_or("HTTP");
        if !probe_scheme.eq_ignore_ascii_case(scheme) {
            r.add(at, format!("{what} scheme {probe_scheme}, the node serves {scheme}"));
        }
    }
}

fn check_security(at: &str, pod: &PodSpec, image: &Image, r: &mut Report) {
    let security = pod.security_context.as_ref();
    if security.and_then(|s| s.run_as_non_root) != Some(true) {
        r.add(at, "securityContext.runAsNonRoot is not true");
    }
    let uid = security.and_then(|s| s.run_as_user);
    if uid.is_some() && uid != image.uid() {
        r.add(at, format!("runAsUser {uid:?}, the image's USER is {:?}", image.user));
    }
}

/// The Service named by `serviceName`: headless, selecting exactly the set's pods, publishing
/// them before they are ready (a node's name must resolve from its start), on the node's port.
fn check_headless_service(
    at: &str,
    m: &Manifests,
    set: &StatefulSet,
    c: &Container,
    port: u16,
    r: &mut Report,
) {
    let name = &set.spec.service_name;
    let Some((_, svc)) = m.services().find(|(_, s)| &s.metadata.name == name) else {
        r.add(at, format!("serviceName {name}: no such Service"));
        return;
    };
    let at = format!("{at}: Service {name}");
    if svc.api_version != "v1" {
        r.add(&at, format!("apiVersion {}", svc.api_version));
    }
    if svc.spec.cluster_ip.as_deref() != Some("None") {
        r.add(&at, "not headless (clusterIP: None)");
    }
    if svc.spec.selector != set.spec.selector.match_labels {
        r.add(&at, "its selector is not the StatefulSet's matchLabels");
    }
    if svc.spec.publish_not_ready_addresses != Some(true) {
        r.add(&at, "publishNotReadyAddresses is not true");
    }
    let target = |p: &ServicePort| p.target_port.as_ref().map_or(Some(p.port), |t| resolve_port(t, c));
    if !svc.spec.ports.iter().any(|p| target(p) == Some(port)) {
        r.add(&at, format!("no port leads to the node's port {port}"));
    }
}

/// Services for clients (not headless): each selects the pods of one StatefulSet and leads to a
/// port its container declares.
fn check_client_services(m: &Manifests, r: &mut Report) {
    for (file, svc) in m.services() {
        if svc.spec.cluster_ip.as_deref() == Some("None") {
            continue;
        }
        let at = format!("{file}: Service {}", svc.metadata.name);
        let selected: Vec<&StatefulSet> = m
            .sets()
            .map(|(_, s)| s)
            .filter(|s| {
                !svc.spec.selector.is_empty()
                    && is_subset(&svc.spec.selector, &s.spec.template.metadata.labels)
            })
            .collect();
        let [set] = selected.as_slice() else {
            r.add(&at, format!("selects the pods of {} StatefulSets; want one", selected.len()));
            continue;
        };
        let Some(c) = set.spec.template.spec.containers.first() else { continue };
        for p in &svc.spec.ports {
            let target = p.target_port.as_ref().map_or(Some(p.port), |t| resolve_port(t, c));
            if !target.is_some_and(|t| c.ports.iter().any(|cp| cp.container_port == t)) {
                r.add(
                    &at,
                    format!(
                        "port {} leads to {:?}, not a port of {}",
                        p.port, p.target_port, set.metadata.name
                    ),
                );
            }
        }
    }
}

fn kubernetes() -> (Manifests, Topology, Image) {
    let dir = repo().join(KUBERNETES_DIR);
    let manifests = Manifests::load(&dir);
    let topology = topology::load(&dir.join("topology.yaml")).unwrap_or_else(|e| panic!("{e}"));
    (manifests, topology, Image::load(&repo().join("Dockerfile")))
}

#[test]
fn manifests_run_every_node_of_their_topology() {
    let (manifests, topology, image) = kubernetes();
    assert!(manifests.sets().count() >= 3, "expected a StatefulSet per replica set");
    check_kubernetes(&manifests, &topology, &image, &StandIn::new()).assert_clean(KUBERNETES_DIR);
}

/// Each case breaks a copy of the Kubernetes files in one way and expects that problem.
#[test]
fn checks_catch_broken_manifests() {
    let (good, topology, image) = kubernetes();
    let stand_in = StandIn::new();
    check_kubernetes(&good, &topology, &image, &stand_in).assert_clean("the files as they are");
    let broken = |case: &str, expected: &str, edit: &dyn Fn(&mut Manifests)| {
        let mut m = good.clone();
        edit(&mut m);
        check_kubernetes(&m, &topology, &image, &stand_in).assert_reports(case, expected);
    };
    fn container<'a>(m: &'a mut Manifests, set: &str) -> &'a mut Container {
        &mut m.set_mut(set).spec.template.spec.containers[0]
    }
    broken("a leaf's container port", "the container declares ports [9102]", &|m| {
        container(m, "infra-0").ports[0].container_port = 9102;
    });
    broken("readiness on the liveness path", "readinessProbe asks /-/healthy", &|m| {
        let probe = container(m, "global").readiness_probe.as_mut().expect("probe");
        probe.http_get.as_mut().expect("httpGet").path = "/-/healthy".into();
    });
    broken("a probe on a port name the container lacks", "livenessProbe port", &|m| {
        let probe = container(m, "push").liveness_probe.as_mut().expect("probe");
        probe.http_get.as_mut().expect("httpGet").port = IntOrString::String("web".into());
    });
    broken("a replica fewer", "node infra-1-b of the topology has no pod", &|m| {
        m.set_mut("infra-1").spec.replicas = 1;
    });
    broken("a replica more", "runs node \"self-0-c\"", &|m| m.set_mut("self-0").spec.replicas = 3);
    broken("a flag the binary lacks", "unexpected argument '--bogus'", &|m| {
        container(m, "push").args.push("--bogus".into());
    });
    broken("a push pod started as a leaf", "is a push node, the pod is labelled leaf", &|m| {
        container(m, "push").args[0] = "leaf".into();
        m.set_mut("push").spec.template.metadata.labels.insert(COMPONENT_LABEL.into(), "leaf".into());
    });
    broken("the topology read from elsewhere", "nothing is mounted at /etc", &|m| {
        for a in &mut container(m, "push").args {
            *a = a.replace("/etc/promtier/topology.yaml", "/etc/topology.yaml");
        }
    });
    broken("no data volume", "no volumeClaimTemplate is mounted", &|m| {
        m.set_mut("global").spec.volume_claim_templates.clear();
    });
    broken("a budget of two", "maxUnavailable Some(Int(2))", &|m| {
        for (_, o) in &mut m.objects {
            if let Object::PodDisruptionBudget(d) = o
                && d.metadata.name == "self-0"
            {
                d.spec.max_unavailable = Some(IntOrString::Int(2));
            }
        }
    });
    broken("a headless Service selecting every pod", "its selector is not the StatefulSet's", &|m| {
        for (_, o) in &mut m.objects {
            if let Object::Service(s) = o
                && s.metadata.name == "infra-0"
            {
                s.spec.selector.remove("promtier/replica-set");
            }
        }
    });
    broken("the pods in another namespace", "the pod's DNS name is infra-0-0.infra-0.monitoring", &|m| {
        m.kustomization.namespace = "monitoring".into();
    });
}
