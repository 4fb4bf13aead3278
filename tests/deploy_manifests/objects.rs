//! The Kubernetes objects of config/kubernetes/ and its kustomization, with only the fields the
//! checks read (serde skips the others; `kubectl apply --dry-run` or a schema validator is the
//! place for typos in the rest).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IgnoredAny;

pub(crate) type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind")]
pub(crate) enum Object {
    Namespace { metadata: Metadata },
    StatefulSet(StatefulSet),
    Service(Service),
    PodDisruptionBudget(Disruption),
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Metadata {
    pub(crate) name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatefulSet {
    pub(crate) api_version: String,
    pub(crate) metadata: Metadata,
    pub(crate) spec: StatefulSetSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatefulSetSpec {
    pub(crate) service_name: String,
    pub(crate) replicas: u32,
    pub(crate) selector: Selector,
    pub(crate) template: PodTemplate,
    #[serde(default)]
    pub(crate) volume_claim_templates: Vec<Claim>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Selector {
    pub(crate) match_labels: Labels,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PodTemplate {
    pub(crate) metadata: TemplateMetadata,
    pub(crate) spec: PodSpec,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TemplateMetadata {
    #[serde(default)]
    pub(crate) labels: Labels,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodSpec {
    pub(crate) containers: Vec<Container>,
    #[serde(default)]
    pub(crate) volumes: Vec<Volume>,
    pub(crate) security_context: Option<PodSecurity>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodSecurity {
    pub(crate) run_as_user: Option<u32>,
    pub(crate) run_as_non_root: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Container {
    /// Replaces the image's ENTRYPOINT when given.
    pub(crate) command: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) args: Vec<String>,
    #[serde(default)]
    pub(crate) env: Vec<EnvVar>,
    #[serde(default)]
    pub(crate) ports: Vec<ContainerPort>,
    pub(crate) startup_probe: Option<Probe>,
    pub(crate) liveness_probe: Option<Probe>,
    pub(crate) readiness_probe: Option<Probe>,
    pub(crate) resources: Option<Resources>,
    #[serde(default)]
    pub(crate) volume_mounts: Vec<VolumeMount>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnvVar {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
    pub(crate) value_from: Option<EnvSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnvSource {
    pub(crate) field_ref: Option<FieldRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FieldRef {
    pub(crate) field_path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerPort {
    pub(crate) name: Option<String>,
    pub(crate) container_port: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Probe {
    pub(crate) http_get: Option<HttpGet>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct HttpGet {
    pub(crate) path: String,
    pub(crate) port: IntOrString,
    pub(crate) scheme: Option<String>,
}

/// Kubernetes' int-or-string: a port number or a port name, a count or a percentage.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub(crate) enum IntOrString {
    Int(u16),
    String(String),
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Resources {
    #[serde(default)]
    pub(crate) requests: BTreeMap<String, IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Volume {
    pub(crate) name: String,
    pub(crate) projected: Option<Projected>,
    pub(crate) config_map: Option<ConfigMapRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Projected {
    pub(crate) sources: Vec<ProjectedSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProjectedSource {
    pub(crate) config_map: Option<ConfigMapRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ConfigMapRef {
    pub(crate) name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VolumeMount {
    pub(crate) name: String,
    pub(crate) mount_path: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Claim {
    pub(crate) metadata: Metadata,
    pub(crate) spec: ClaimSpec,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ClaimSpec {
    pub(crate) resources: Resources,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Service {
    pub(crate) api_version: String,
    pub(crate) metadata: Metadata,
    pub(crate) spec: ServiceSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceSpec {
    #[serde(rename = "clusterIP")]
    pub(crate) cluster_ip: Option<String>,
    pub(crate) publish_not_ready_addresses: Option<bool>,
    #[serde(default)]
    pub(crate) selector: Labels,
    pub(crate) ports: Vec<ServicePort>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServicePort {
    pub(crate) port: u16,
    pub(crate) target_port: Option<IntOrString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Disruption {
    pub(crate) api_version: String,
    pub(crate) metadata: Metadata,
    pub(crate) spec: DisruptionSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DisruptionSpec {
    pub(crate) max_unavailable: Option<IntOrString>,
    pub(crate) selector: Selector,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Kustomization {
    pub(crate) namespace: String,
    pub(crate) resources: Vec<String>,
    #[serde(default)]
    pub(crate) config_map_generator: Vec<Generator>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Generator {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) files: Vec<String>,
}

impl Generator {
    /// (key in the ConfigMap, file beside the kustomization) for each `files:` entry
    /// (`path` or `key=path`).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().map(|f| match f.split_once('=') {
            Some((key, path)) => (key, path),
            None => (f.rsplit('/').next().unwrap_or(f), f.as_str()),
        })
    }
}

/// config/kubernetes/ as loaded: the kustomization and every object of its resources.
#[derive(Debug, Clone)]
pub(crate) struct Manifests {
    pub(crate) dir: PathBuf,
    pub(crate) kustomization: Kustomization,
    /// (file, object), in file order.
    pub(crate) objects: Vec<(String, Object)>,
}

impl Manifests {
    pub(crate) fn load(dir: &Path) -> Manifests {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
        };
        let kustomization: Kustomization = serde_saphyr::from_str(&read("kustomization.yaml"))
            .unwrap_or_else(|e| panic!("{}/kustomization.yaml: {e}", dir.display()));
        let mut objects = Vec::new();
        for file in &kustomization.resources {
            let docs: Vec<Object> = serde_saphyr::from_multiple(&read(file))
                .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()));
            objects.extend(docs.into_iter().map(|o| (file.clone(), o)));
        }
        Manifests { dir: dir.to_path_buf(), kustomization, objects }
    }

    pub(crate) fn sets(&self) -> impl Iterator<Item = (&str, &StatefulSet)> {
        self.objects.iter().filter_map(|(f, o)| match o {
            Object::StatefulSet(s) => Some((f.as_str(), s)),
            _ => None,
        })
    }

    pub(crate) fn services(&self) -> impl Iterator<Item = (&str, &Service)> {
        self.objects.iter().filter_map(|(f, o)| match o {
            Object::Service(s) => Some((f.as_str(), s)),
            _ => None,
        })
    }

    pub(crate) fn budgets(&self) -> impl Iterator<Item = &Disruption> {
        self.objects.iter().filter_map(|(_, o)| match o {
            Object::PodDisruptionBudget(d) => Some(d),
            _ => None,
        })
    }

    pub(crate) fn set_mut(&mut self, name: &str) -> &mut StatefulSet {
        self.objects
            .iter_mut()
            .find_map(|(_, o)| match o {
                Object::StatefulSet(s) if s.metadata.name == name => Some(s),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no StatefulSet {name}"))
    }
}
