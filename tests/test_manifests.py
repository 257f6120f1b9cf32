"""The cluster manifests (manifests/) against a real kube-apiserver with RBAC.

The API server and etcd come from `scripts/build-kube`; without them the `kube` tests fail
(never skip) with a message naming that script. Select them with `-m kube`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from streamforge_nb.exceptions import KubeTestError
from streamforge_nb.platform import names
from streamforge_nb.testing import LocalApiServer, find_kube_binaries, local_apiserver

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
NAMESPACE = "stf"
NOTEBOOK_SA = "streamforge-notebook"
CORE_FILES = [
    "namespace.yaml",
    "notebook-rbac.yaml",
    "worker-config.yaml",
    "worker-secret.template.yaml",
    "worker-job.template.yaml",
    "network-policies.yaml",
    "jupyterhub-volumes.yaml",
]
CRD_FILES = ["kafka-topics.yaml", "kafka-users.yaml"]
HELM_VALUES = [
    "jupyterhub-values.yaml",
    "jupyterhub-values.production.yaml",
    "kafka-ui-values.yaml",
]
# zero-to-jupyterhub's values.yaml and values.schema.yaml (descriptions dropped, as JSON) from
# github.com/jupyterhub/zero-to-jupyterhub-k8s 48ea50e3 (chart for JupyterHub 5.5.0).
Z2JH = Path(__file__).resolve().parent / "data" / "z2jh"
JUPYTERHUB_PRODUCTION = ["jupyterhub-values.yaml", "jupyterhub-values.production.yaml"]


def load(name: str) -> list[dict[str, Any]]:
    with open(MANIFESTS / name, encoding="utf-8") as handle:
        return [d for d in yaml.safe_load_all(handle) if d is not None]


def job_template() -> dict[str, Any]:
    (job,) = load("worker-job.template.yaml")
    return job


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalApiServer]:
    """A real API server with namespace `stf` and the notebook RBAC applied for real."""
    manager = local_apiserver(tmp_path_factory.mktemp("kube"))
    try:
        server = manager.__enter__()
    except KubeTestError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(f"no local Kubernetes API server: {problem}", pytrace=False)
    try:
        server.apply(MANIFESTS / "namespace.yaml")
        server.apply(MANIFESTS / "notebook-rbac.yaml")
        server.apply(MANIFESTS / "worker-config.yaml")
        # Placeholder values only; there so that "may not read it" is about a real Secret.
        server.apply(MANIFESTS / "worker-secret.template.yaml")
        yield server
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="module")
def notebook(kube: LocalApiServer) -> Any:
    """An ApiClient authenticated as the notebook ServiceAccount with a real SA token."""
    return kube.service_account_client(NAMESPACE, NOTEBOOK_SA)


def forbidden(call: Any, *args: Any, **kwargs: Any) -> ApiException:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    assert info.value.status == 403, info.value
    return info.value


def a_job(namespace: str = NAMESPACE) -> dict[str, Any]:
    """The Job template with a unique name, in `namespace`."""
    job = job_template()
    job["metadata"]["name"] = f"job-dummy-btcusdt-{uuid.uuid4().hex[:6]}"
    job["metadata"]["namespace"] = namespace
    return job


# --- the API server accepts the core manifests ---------------------------------------------


@pytest.mark.kube
@pytest.mark.parametrize("name", CORE_FILES)
def test_core_manifest_passes_server_side_dry_run(kube: LocalApiServer, name: str) -> None:
    documents = load(name)
    # Server-side apply with dry run (kubectl apply --server-side --dry-run=server):
    # schema with strict field validation, defaulting, admission, RBAC; nothing stored.
    results = kube.apply(documents, dry_run=True)
    assert [(r["kind"], r["metadata"]["name"]) for r in results] == [
        (d["kind"], d["metadata"]["name"]) for d in documents
    ]


@pytest.mark.kube
def test_job_template_creates_in_a_dry_run_as_given(kube: LocalApiServer) -> None:
    (created,) = kube.create([a_job()], dry_run=True)
    pod = created["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"streamforge-worker": "true"}
    assert created["spec"]["backoffLimit"] == 2
    assert created["spec"]["ttlSecondsAfterFinished"] == 3600


@pytest.mark.kube
def test_a_typo_in_a_manifest_is_refused(kube: LocalApiServer) -> None:
    """The dry run is strict: an unknown field fails, so the checks above mean something."""
    job = a_job()
    job["spec"]["ttlSecondAfterFinished"] = 3600
    with pytest.raises(ApiException) as created:
        kube.create([job], dry_run=True)
    assert created.value.status == 400
    assert "ttlSecondAfterFinished" in str(created.value.body)
    # Server-side apply refuses it too (kube-apiserver answers 500 "field not declared in
    # schema" for an apply patch, where a create gets 400).
    with pytest.raises(ApiException) as applied:
        kube.apply([job], dry_run=True)
    assert "ttlSecondAfterFinished" in str(applied.value.body)


# --- Pod Security "restricted" and NetworkPolicies ----------------------------------------------


def job_pod(job: dict[str, Any], name: str = "worker-pod") -> dict[str, Any]:
    """The Pod that `job`'s controller creates from its template."""
    template = job["spec"]["template"]
    namespace = job["metadata"]["namespace"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {**template["metadata"], "name": name, "namespace": namespace},
        "spec": template["spec"],
    }  # fmt: skip


def default_service_account(kube: LocalApiServer) -> None:
    """Make stf's `default` ServiceAccount: Pod admission looks it up, and no controller
    manager runs here to make it."""
    kube.apply([{"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "default", "namespace": NAMESPACE}}])  # fmt: skip


@pytest.mark.kube
def test_stf_admits_the_worker_pod_and_refuses_one_without_its_security_context(
    kube: LocalApiServer,
) -> None:
    """namespace.yaml enforces Pod Security "restricted" (the API server's admission)."""
    default_service_account(kube)
    kube.create([job_pod(a_job())], dry_run=True)
    seed = job_pod(a_job())
    del seed["spec"]["securityContext"]
    del seed["spec"]["containers"][0]["securityContext"]
    with pytest.raises(ApiException) as refused:
        kube.create([seed], dry_run=True)
    assert refused.value.status == 403
    assert 'violates PodSecurity \\"restricted:latest\\"' in str(refused.value.body)


def test_worker_jobs_are_pod_security_restricted() -> None:
    from streamforge_nb.workflow.targets import job_spec

    job = job_spec(job_name="job-dummy-x", namespace=NAMESPACE, queue_id="wf-x",
                   target="dummy", image="i", env={})  # fmt: skip
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 1001, "runAsGroup": 100, "fsGroup": 100,
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty}
    assert writable == {"/home/jovyan", "/tmp"}
    (namespace,) = load("namespace.yaml")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions Exists/In) selects `labels`."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        if operator == "Exists" and key not in labels:
            return False
        if operator == "In" and labels.get(key) not in expression["values"]:
            return False
    return True


def test_worker_network_policy_selects_the_workers_and_allows_only_their_peers() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in load("network-policies.yaml")}
    workers = policies["streamforge-workers"]
    job_labels = job_template()["spec"]["template"]["metadata"]["labels"]
    assert selects(workers["podSelector"], job_labels)
    assert not selects(
        workers["podSelector"], {"app": "streamforge", "component": "queue-manager-api"}
    )
    assert selects(policies["streamforge-api"]["podSelector"],
                   {"app": "streamforge", "component": "queue-manager-api"})  # fmt: skip
    assert workers["policyTypes"] == ["Ingress", "Egress"]
    assert [p["port"] for rule in workers["ingress"] for p in rule["ports"]] == [8000]
    egress = {(p["protocol"], p["port"]) for rule in workers["egress"] for p in rule["ports"]}
    # Kafka's TLS listener, ArangoDB, DNS, the exchange over HTTPS: nothing else.
    assert egress == {("TCP", 9093), ("TCP", 8529), ("UDP", 53), ("TCP", 53), ("TCP", 443)}
    bootstrap_port = int(
        load("worker-config.yaml")[0]["data"]["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]
    )
    assert ("TCP", bootstrap_port) in egress


# --- RBAC: what the notebook ServiceAccount may do -------------------------------------------


@pytest.mark.kube
def test_token_is_the_notebook_service_account(kube: LocalApiServer, notebook: Any) -> None:
    review = client.AuthenticationV1Api(notebook).create_self_subject_review(
        client.V1SelfSubjectReview()
    )
    assert review.status.user_info.username == f"system:serviceaccount:{NAMESPACE}:{NOTEBOOK_SA}"
    assert f"system:serviceaccounts:{NAMESPACE}" in review.status.user_info.groups


@pytest.mark.kube
def test_notebook_may_create_list_and_delete_jobs_in_stf(notebook: Any) -> None:
    batch = client.BatchV1Api(notebook)
    job = a_job()
    name = job["metadata"]["name"]
    batch.create_namespaced_job(NAMESPACE, job)
    assert batch.read_namespaced_job(name, NAMESPACE).metadata.labels["app"] == "streamforge"
    listed = batch.list_namespaced_job(NAMESPACE, label_selector="app=streamforge")
    assert name in [j.metadata.name for j in listed.items]
    batch.delete_namespaced_job(name, NAMESPACE, propagation_policy="Background")
    listed = batch.list_namespaced_job(NAMESPACE, label_selector="app=streamforge")
    assert name not in [j.metadata.name for j in listed.items]


@pytest.mark.kube
def test_notebook_may_watch_pods_read_logs_and_its_config(notebook: Any) -> None:
    core = client.CoreV1Api(notebook)
    core.list_namespaced_pod(NAMESPACE)
    config = core.read_namespaced_config_map("streamforge-config", NAMESPACE)
    assert config.data["KAFKA_BOOTSTRAP_SERVERS"] == "k3-kafka-bootstrap.kafka:9093"
    # pods/log is granted: asking for a missing pod's log is a 404, not a 403.
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("no-such-pod", NAMESPACE)
    assert info.value.status == 404


@pytest.mark.kube
def test_notebook_may_not_read_secrets(notebook: Any) -> None:
    core = client.CoreV1Api(notebook)
    forbidden(core.read_namespaced_secret, "streamforge-secrets", NAMESPACE)
    forbidden(core.list_namespaced_secret, NAMESPACE)


@pytest.mark.kube
def test_notebook_may_not_create_jobs_in_another_namespace(notebook: Any) -> None:
    forbidden(client.BatchV1Api(notebook).create_namespaced_job, "default", a_job("default"))


@pytest.mark.kube
def test_notebook_has_nothing_cluster_wide_nor_more_in_stf(notebook: Any) -> None:
    core = client.CoreV1Api(notebook)
    forbidden(core.list_namespace)
    forbidden(client.BatchV1Api(notebook).list_job_for_all_namespaces)
    forbidden(core.create_namespaced_config_map, NAMESPACE, {"metadata": {"name": "x"}})
    forbidden(
        client.RbacAuthorizationV1Api(notebook).create_namespaced_role_binding,
        NAMESPACE,
        {
            "metadata": {"name": "escalate"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": NOTEBOOK_SA, "namespace": NAMESPACE}],
        },
    )


@pytest.mark.kube
def test_impersonation_sees_the_same_rules(kube: LocalApiServer) -> None:
    """The helper's other way to act as the ServiceAccount agrees with its token."""
    api = kube.api_client(impersonate=f"system:serviceaccount:{NAMESPACE}:{NOTEBOOK_SA}")
    client.BatchV1Api(api).list_namespaced_job(NAMESPACE)
    forbidden(client.CoreV1Api(api).list_namespaced_secret, NAMESPACE)


@pytest.mark.kube
def test_kubeconfig_works_with_the_kubernetes_client(kube: LocalApiServer) -> None:
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kube.kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        namespaces = client.CoreV1Api(api).list_namespace()
    assert NAMESPACE in [n.metadata.name for n in namespaces.items]


# --- without a server --------------------------------------------------------------------------


def test_missing_binaries_name_the_build_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMFORGE_KUBE_CACHE", str(tmp_path))
    monkeypatch.delenv("STREAMFORGE_KUBE_APISERVER", raising=False)
    monkeypatch.delenv("STREAMFORGE_ETCD", raising=False)
    with pytest.raises(KubeTestError, match="scripts/build-kube"):
        find_kube_binaries()


@pytest.mark.parametrize("name", CRD_FILES)
def test_strimzi_manifests_are_valid_yaml(name: str) -> None:
    documents = load(name)
    assert documents
    for document in documents:
        assert document["apiVersion"] == "kafka.strimzi.io/v1"  # Strimzi 1.x serves only v1
        assert document["kind"] in ("KafkaTopic", "KafkaUser")
        assert document["metadata"]["labels"]["strimzi.io/cluster"] == "k3"


@pytest.mark.parametrize("name", HELM_VALUES)
def test_helm_values_are_one_mapping(name: str) -> None:
    (values,) = load(name)
    assert isinstance(values, dict) and values


def test_jupyterhub_values_say_what_the_platform_says() -> None:
    (values,) = load("jupyterhub-values.yaml")
    assert values["cull"] == {
        "enabled": True, "users": False, "adminUsers": True, "timeout": 7200, "every": 600,
    }  # fmt: skip
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "dummy"
    assert values["hub"]["db"]["type"] == "sqlite-memory"
    assert values["hub"]["extraVolumes"][0]["hostPath"]["path"] == "/data/home/jovyan/hub-db"
    node = {"kubernetes.io/hostname": "k2w-8"}
    assert values["hub"]["nodeSelector"] == values["singleuser"]["nodeSelector"] == node
    assert values["ingress"]["hosts"] == ["jupyterhub.dmz.home"]
    assert values["ingress"]["tls"][0]["secretName"] == "jupyterhub-tls"
    assert values["ingress"]["ingressClassName"] == "traefik"
    single = values["singleuser"]
    image = f"{single['image']['name']}:{single['image']['tag']}"
    assert image == "registry.dmz.home/streamforge/core-modules/jupyter-python311:v0.0.2"
    assert single["memory"]["guarantee"] == "1G"
    assert (single["uid"], single["fsGid"]) == (1001, 100)
    assert single["serviceAccountName"] == NOTEBOOK_SA
    assert values["imagePullSecrets"] == ["regcred"]
    mounts = {m["name"]: m["mountPath"] for m in single["storage"]["extraVolumeMounts"]}
    assert mounts["gf-home"] == "/home"
    assert mounts["gf-projects"] == "/data/project"
    assert mounts["gf-venv"] == "/data/venv"


def helm_merge(base: Any, override: Any) -> Any:
    """Merge values as `helm -f a -f b` does: maps deeply, lists and scalars replaced,
    a null deletes the key."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = helm_merge(base.get(key), value)
    return merged


def jupyterhub_values(*files: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values helm hands the z2jh chart for `-f file ...` (its defaults first)."""
    with open(Z2JH / "values.yaml", encoding="utf-8") as handle:
        values = yaml.safe_load(handle)
    for name in files:
        (override,) = load(name)
        values = helm_merge(values, override)
    return helm_merge(values, extra or {})  # type: ignore[no-any-return]


def z2jh_errors(values: dict[str, Any]) -> list[str]:
    """What helm's check against the chart's values.schema.json would refuse."""
    import jsonschema

    schema = json.loads((Z2JH / "values.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(values)]


@pytest.mark.parametrize("files", [["jupyterhub-values.yaml"], JUPYTERHUB_PRODUCTION])
def test_jupyterhub_values_validate_against_the_z2jh_schema(files: list[str]) -> None:
    assert z2jh_errors(jupyterhub_values(*files)) == []


def test_the_z2jh_schema_check_refuses_a_misspelled_key() -> None:
    typo = {"singleuser": {"cloudMetadata": {"blockWithIptable": False}}}
    (error,) = z2jh_errors(jupyterhub_values(*JUPYTERHUB_PRODUCTION, extra=typo))
    assert "blockWithIptable" in error


def test_jupyterhub_production_logs_in_for_real_with_named_admins_and_no_host_paths() -> None:
    values = jupyterhub_values(*JUPYTERHUB_PRODUCTION)
    config = values["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "gitlab"
    assert config["Authenticator"]["allow_all"] is False
    assert config["Authenticator"]["admin_users"] == ["streamforge-admin"]
    assert config["GitLabOAuthenticator"]["allowed_gitlab_groups"] == ["streamforge"]
    assert values["singleuser"]["cloudMetadata"]["blockWithIptables"] is False
    volumes = [*values["hub"]["extraVolumes"], *values["singleuser"]["storage"]["extraVolumes"]]
    assert not [v["name"] for v in volumes if "hostPath" in v]
    claims = {d["metadata"]["name"] for d in load("jupyterhub-volumes.yaml")
              if d["kind"] == "PersistentVolumeClaim"}  # fmt: skip
    used = {
        v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    }
    assert used == claims == {"hub-db", "gf-home", "gf-projects", "gf-venv"}
    # The seed's mounts stay: each names a volume the overlay still defines.
    mounts = {m["name"] for m in values["singleuser"]["storage"]["extraVolumeMounts"]}
    assert mounts <= {v["name"] for v in values["singleuser"]["storage"]["extraVolumes"]}


def single_user_pod(values: dict[str, Any]) -> dict[str, Any]:
    """A single-user Pod as KubeSpawner builds it from `values` (the parts Pod Security
    checks: security contexts, volumes); the chart adds nothing else to it."""
    single = values["singleuser"]
    spawner = values["hub"]["config"].get("KubeSpawner", {})
    container: dict[str, Any] = {
        "name": "notebook",
        "image": f"{single['image']['name']}:{single['image']['tag']}",
        "securityContext": {
            "runAsUser": single["uid"],
            "allowPrivilegeEscalation": single["allowPrivilegeEscalation"],
            **spawner.get("container_security_context", {}),
        },
        "volumeMounts": single["storage"]["extraVolumeMounts"],
    }  # fmt: skip
    pod: dict[str, Any] = {
        "securityContext": {"fsGroup": single["fsGid"], **spawner.get("pod_security_context", {})},
        "serviceAccountName": "default",
        "containers": [container],
        "volumes": single["storage"]["extraVolumes"],
    }
    if single["cloudMetadata"]["blockWithIptables"]:
        # The chart's init container: root, NET_ADMIN, privilege escalation (iptables).
        pod["initContainers"] = [{
            "name": "block-cloud-metadata", "image": "quay.io/jupyterhub/k8s-network-tools",
            "securityContext": {"runAsUser": 0, "privileged": True,
                                "capabilities": {"add": ["NET_ADMIN"]}},
        }]  # fmt: skip
    metadata = {"name": "jupyter-someone", "namespace": NAMESPACE}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod}


@pytest.mark.kube
def test_stf_admits_production_single_user_pods_and_refuses_the_seeds(kube: LocalApiServer) -> None:
    default_service_account(kube)
    kube.create([single_user_pod(jupyterhub_values(*JUPYTERHUB_PRODUCTION))], dry_run=True)
    with pytest.raises(ApiException) as refused:
        kube.create([single_user_pod(jupyterhub_values("jupyterhub-values.yaml"))], dry_run=True)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'restricted volume type "hostPath"' in message and "NET_ADMIN" in message, message


def test_kafka_ui_values_say_what_the_platform_says() -> None:
    from streamforge_nb.platform.topics import KAFKA_UI_USER

    (values,) = load("kafka-ui-values.yaml")
    assert values["image"] == {"registry": "ghcr.io", "repository": "kafbat/kafka-ui",
                               "tag": "v1.3.0"}  # fmt: skip
    assert values["replicaCount"] == 1
    assert values["nodeSelector"] == {"kubernetes.io/hostname": "k2w-7"}
    assert values["ingress"]["host"] == "kafka-ui.dmz.home"
    assert values["ingress"]["ingressClassName"] == "nginx"
    assert values["ingress"]["tls"] == {"enabled": True, "secretName": "kafka-ui-tls"}
    config = values["envs"]["config"]
    assert config["KAFKA_CLUSTERS_0_NAME"] == "k3"
    assert config["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == "k3-kafka-bootstrap.kafka:9093"
    assert config["KAFKA_CLUSTERS_0_READONLY"] == "true"
    assert config["KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["KAFKA_CLUSTERS_0_PROPERTIES_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config["AUTH_TYPE"] == "LOGIN_FORM"
    secrets = values["envs"]["secretMappings"]
    # The User Operator's Secret of the read-only KafkaUser (kafka-users.yaml), by reference.
    assert secrets["KAFKA_CLUSTERS_0_PROPERTIES_SASL_JAAS_CONFIG"]["name"] == KAFKA_UI_USER
    assert KAFKA_UI_USER in {u["metadata"]["name"] for u in load("kafka-users.yaml")}
    assert secrets["SPRING_SECURITY_USER_PASSWORD"]["name"] == "kafka-ui-login"
    assert not {k for k in config if "PASSWORD" in k or "JAAS" in k}


# kafbat's chart (github.com/kafbat/helm-charts 2d4336d5, chart 1.5.2, Apache-2.0), for
# `helm lint` and `helm template` without the network.
KAFBAT_CHART = Path(__file__).resolve().parent / "data" / "charts" / "kafka-ui"


def helm(*args: str) -> str:
    """Run the helm of scripts/build-kube --node; fail (never skip) without it."""
    import subprocess

    from streamforge_nb.local.cluster.apiserver import kube_cache_dir

    binary = kube_cache_dir() / "bin" / "helm"
    if not binary.is_file():
        pytest.fail(f"no helm at {binary}: build it with scripts/build-kube --node", pytrace=False)
    done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def kafka_ui_rendered() -> list[dict[str, Any]]:
    text = helm("template", "kafka-ui", str(KAFBAT_CHART), "-n", "kafka",
                "-f", str(MANIFESTS / "kafka-ui-values.yaml"))  # fmt: skip
    return [d for d in yaml.safe_load_all(text) if d]


def test_kafka_ui_values_lint_and_render_with_kafbats_chart() -> None:
    helm("lint", "--strict", str(KAFBAT_CHART), "-f", str(MANIFESTS / "kafka-ui-values.yaml"))
    kinds = {d["kind"]: d for d in kafka_ui_rendered()}
    assert set(kinds) == {"ServiceAccount", "ConfigMap", "Service", "Deployment", "Ingress"}
    (container,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/kafbat/kafka-ui:v1.3.0"
    assert kinds["ConfigMap"]["data"]["KAFKA_CLUSTERS_0_READONLY"] == "true"


@pytest.mark.kube
def test_kafka_ui_rendered_manifests_pass_the_api_server_under_restricted(
    kube: LocalApiServer,
) -> None:
    """Every object kafbat's chart renders from our values is accepted, its Pod in a
    namespace that enforces Pod Security "restricted"."""
    (namespace,) = load("namespace.yaml")
    namespace["metadata"] = {**namespace["metadata"], "name": "kafka"}
    kube.apply([namespace])
    kube.apply([{"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "kafka-ui", "namespace": "kafka"}}])  # fmt: skip
    rendered = kafka_ui_rendered()
    kube.apply(rendered, dry_run=True)
    (deployment,) = [d for d in rendered if d["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    metadata = {**template["metadata"], "name": "kafka-ui-x", "namespace": "kafka"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
    kube.create([pod], dry_run=True)


def test_job_template_is_what_the_library_generates() -> None:
    """The documented shape and streamforge_nb.workflow.targets.job_spec must not drift apart."""
    from streamforge_nb.workflow.targets import job_spec

    template = job_template()
    container = template["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    generated = job_spec(
        job_name=template["metadata"]["name"],
        namespace=template["metadata"]["namespace"],
        queue_id=template["metadata"]["labels"]["queue_id"],
        target=container["name"],
        image=container["image"],
        env=env,
    )
    assert generated == template


def test_job_template_uses_the_platform_names() -> None:
    template = job_template()
    env = {
        e["name"]: e["value"] for e in template["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    qid = names.queue_id("BTCUSDT", "api_candles_1m", date(2024, 8, 1), "abc123")
    assert template["metadata"]["name"] == names.job_name("arango-candles", "BTCUSDT", "abc123")
    assert template["metadata"]["labels"]["queue_id"] == env["QUEUE_ID"] == qid
    assert env["KAFKA_TOPIC"] == names.data_topic(qid)
    assert env["COLLECTION_NAME"] == names.collection_name(
        "BTCUSDT", "api_candles_1m", date(2024, 8, 1)
    )
    assert env["TELEMETRY_PRODUCER_ID"] == names.producer_id("arango-candles", "abc123")
    assert set(env) == {
        "QUEUE_ID", "SYMBOL", "TYPE", "TIME_RANGE", "KAFKA_TOPIC", "COLLECTION_NAME",
        "TELEMETRY_PRODUCER_ID", "STREAMFORGE_TIMEOUT",
    }  # fmt: skip
    # The run's timeout and the Job's deadline come from one number.
    deadline = template["spec"]["activeDeadlineSeconds"]
    assert deadline == int(env["STREAMFORGE_TIMEOUT"]) + 120


# --- no secret in git ----------------------------------------------------------------------------

PLACEHOLDERS = {"changeme", ""}
_SECRET_KEY = re.compile(
    r"pass(word|wd)?$|token$|api[_-]?key$|credentials?$|private[_-]?key$", re.I
)
_BASE64ISH = re.compile(r"^[A-Za-z0-9+/]{32,}={0,2}$")
_INLINE_PASSWORD = re.compile(r"""password\s*=\s*["']([^"']*)["']""", re.I)


def secret_findings(documents: list[Any]) -> list[str]:
    """Return every value in `documents` that looks like a real secret."""
    findings: list[str] = []

    def placeholder(value: str) -> bool:
        return value.lower() in PLACEHOLDERS or bool(re.fullmatch(r"<[^<>]+>|\$\{?\w+\}?", value))

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                where = f"{path}.{key}"
                if isinstance(value, str):
                    if _SECRET_KEY.search(str(key)) and not placeholder(value):
                        findings.append(f"{where}: a literal value for a secret key")
                    elif _BASE64ISH.match(value):
                        findings.append(f"{where}: looks like a key or token")
                walk(value, where)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{path}[{index}]")
        elif isinstance(node, str):
            if "-----BEGIN" in node:
                findings.append(f"{path}: a PEM block")
            for match in _INLINE_PASSWORD.finditer(node):
                if not placeholder(match.group(1)):
                    findings.append(f"{path}: an inline password")

    for index, document in enumerate(documents):
        if isinstance(document, dict) and document.get("kind") == "Secret":
            if document.get("data"):
                findings.append(f"[{index}] Secret {document['metadata']['name']}: data: (base64)")
            for key, value in (document.get("stringData") or {}).items():
                if re.search(r"PASSWORD|TOKEN|SECRET|KEY", key) and not placeholder(str(value)):
                    findings.append(f"[{index}] Secret stringData.{key}: not a placeholder")
        walk(document, f"[{index}]")
    return findings


@pytest.mark.parametrize("name", sorted(p.name for p in MANIFESTS.glob("*.yaml")))
def test_no_manifest_holds_a_real_secret(name: str) -> None:
    text = (MANIFESTS / name).read_text(encoding="utf-8")
    assert "-----BEGIN" not in text
    assert secret_findings(load(name)) == []


def test_the_secret_check_finds_real_looking_secrets() -> None:
    """The check above is not vacuous: it catches what it is meant to."""
    leaked = [
        {
            "kind": "Secret",
            "metadata": {"name": "s"},
            "stringData": {"KAFKA_PASSWORD": "p4ssw0rd-real"},
        },
        {"kind": "Secret", "metadata": {"name": "t"}, "data": {"KAFKA_PASSWORD": "cGFzcw=="}},
        {"hub": {"config": {"DummyAuthenticator": {"password": "hunter2"}}}},
        {"env": [{"name": "JAAS", "value": 'ScramLoginModule required password="s3cret";'}]},
        {"token": "changeme", "apiKey": "aGVsbG8gd29ybGQgdGhpcyBpcyBhIGxvbmcga2V5IQ=="},
    ]
    found = "\n".join(secret_findings(leaked))
    for expected in ("stringData.KAFKA_PASSWORD", "data: (base64)", "password: a literal",
                     "inline password", "apiKey"):  # fmt: skip
        assert expected in found
    assert "token" not in found.replace("or token", "")
