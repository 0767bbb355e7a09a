"""The deploy files: what cannot run here is at least parsed and checked.

  python3 deploy_test.py REPO_ROOT BUILD_DIR

- deploy/poledger.service passes `systemd-analyze verify` (when systemd is
  present), with ExecStart pointed at the built binary.
- deploy/kubernetes/*.yaml parse, and hold what they must: a StatefulSet with
  a PersistentVolumeClaim per pod, gRPC probes on a declared port, a
  non-root pod, flags from the ConfigMap, Services that select the pods.
- deploy/Dockerfile builds in one Debian 12 stage and runs in a slim one, as
  a non-root user, with a volume and a health check, and installs every
  Debian package the built binaries load a library from.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

ROOT = BUILD = None


class SystemdUnitTest(unittest.TestCase):
    def test_unit_verifies(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed")
        text = open(os.path.join(ROOT, "deploy/poledger.service")).read()
        for key in ("User=poledger", "StateDirectory=poledger",
                    "Restart=on-failure", "KillSignal=SIGTERM",
                    "NoNewPrivileges=yes", "ProtectSystem=strict",
                    "ExecReload=/bin/kill -HUP $MAINPID"):
            self.assertIn(key, text)
        server = os.path.join(BUILD, "server/poledger-server")
        text = text.replace("/usr/local/bin/poledger-server", server)
        with tempfile.TemporaryDirectory() as d:
            unit = os.path.join(d, "poledger.service")
            open(unit, "w").write(text)
            run = subprocess.run(["systemd-analyze", "verify", unit],
                                 capture_output=True, text=True)
            # Only lines about our unit count (the host's own units may
            # have their own complaints).
            ours = [l for l in (run.stdout + run.stderr).splitlines()
                    if "poledger.service" in l]
            self.assertEqual(ours, [])


def load(name):
    with open(os.path.join(ROOT, "deploy/kubernetes", name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


class KubernetesTest(unittest.TestCase):
    def setUp(self):
        self.docs = {}
        for name in sorted(os.listdir(os.path.join(ROOT, "deploy/kubernetes"))):
            if name.endswith(".yaml"):
                for doc in load(name):
                    self.assertIn("apiVersion", doc, name)
                    self.docs.setdefault(doc["kind"], []).append(doc)

    def test_statefulset(self):
        (sts,) = self.docs["StatefulSet"]
        spec = sts["spec"]
        template = spec["template"]
        self.assertEqual(spec["selector"]["matchLabels"],
                         {k: template["metadata"]["labels"][k]
                          for k in spec["selector"]["matchLabels"]})
        self.assertTrue(template["spec"]["securityContext"]["runAsNonRoot"])
        (claim,) = spec["volumeClaimTemplates"]
        (container,) = template["spec"]["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        self.assertEqual(mounts[claim["metadata"]["name"]], "/var/lib/poledger")
        ports = {p["containerPort"] for p in container["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertIn(container[probe]["grpc"]["port"], ports, probe)
        self.assertIn("memory", container["resources"]["limits"])
        self.assertIn("cpu", container["resources"]["requests"])
        (config_ref,) = container["envFrom"]
        (config,) = self.docs["ConfigMap"]
        self.assertEqual(config_ref["configMapRef"]["name"],
                         config["metadata"]["name"])
        flags = [k for k in config["data"] if k.startswith("POLEDGER_")]
        self.assertIn("POLEDGER_DATA_DIR", flags)
        self.assertEqual(config["data"]["POLEDGER_DATA_DIR"], "/var/lib/poledger")
        # Every flag in the ConfigMap is a flag of the server.
        help_text = subprocess.run(
            [os.path.join(BUILD, "server/poledger-server"), "--help"],
            capture_output=True, text=True).stdout
        for flag in flags:
            name = "--" + flag[len("POLEDGER_"):].lower().replace("_", "-")
            self.assertIn(name, help_text, flag)
        # The metrics port is declared and annotated for scraping.
        metrics = int(config["data"]["POLEDGER_METRICS_LISTEN"].rsplit(":", 1)[1])
        self.assertIn(metrics, ports)
        annotations = template["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(int(annotations["prometheus.io/port"]), metrics)
        # The health port is the one POLEDGER_HEALTH_LISTEN opens.
        health = int(config["data"]["POLEDGER_HEALTH_LISTEN"].rsplit(":", 1)[1])
        self.assertEqual(container["livenessProbe"]["grpc"]["port"], health)

    def test_services_select_the_pods(self):
        (sts,) = self.docs["StatefulSet"]
        labels = sts["spec"]["template"]["metadata"]["labels"]
        names = set()
        for svc in self.docs["Service"]:
            names.add(svc["metadata"]["name"])
            for k, v in svc["spec"]["selector"].items():
                self.assertEqual(labels.get(k), v)
        self.assertIn(sts["spec"]["serviceName"], names)


class ClusterManifestsTest(unittest.TestCase):
    """deploy/cluster/kubernetes: shards as a StatefulSet (ordinal = shard
    index) and HAProxy whose configuration is the generator's output."""

    def setUp(self):
        self.docs = {}
        base = os.path.join(ROOT, "deploy/cluster/kubernetes")
        for name in ("shards.yaml", "haproxy.yaml"):
            with open(os.path.join(base, name)) as f:
                for doc in yaml.safe_load_all(f):
                    if doc:
                        self.docs[(doc["kind"], doc["metadata"]["name"])] = doc
        with open(os.path.join(base, "haproxy.yaml")) as f:
            self.haproxy_text = f.read()

    def test_the_ordinal_is_the_shard(self):
        sts = self.docs[("StatefulSet", "poledger-shard")]
        n = sts["spec"]["replicas"]
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        self.assertEqual(env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"],
                         "metadata.labels['apps.kubernetes.io/pod-index']")
        self.assertEqual(env["POLEDGER_SHARD"]["value"], "$(POD_INDEX)/%d" % n)
        config = self.docs[("ConfigMap", "poledger-shard")]
        help_text = subprocess.run(
            [os.path.join(BUILD, "server/poledger-server"), "--help"],
            capture_output=True, text=True).stdout
        for flag in [k for k in config["data"] if k.startswith("POLEDGER_")] + [
                "POLEDGER_SHARD"]:
            name = "--" + flag[len("POLEDGER_"):].lower().replace("_", "-")
            self.assertIn(name, help_text, flag)
        self.assertIn("POLEDGER_TRUSTED_PROXY_IDENTITY", config["data"])
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        self.assertEqual(mounts[claim["metadata"]["name"]], "/var/lib/poledger")

    def test_haproxy_routes_to_every_shard_as_generated(self):
        sts = self.docs[("StatefulSet", "poledger-shard")]
        n = sts["spec"]["replicas"]
        config = self.docs[("ConfigMap", "poledger-haproxy")]["data"]["haproxy.cfg"]
        command = re.search(r"#   bash (deploy/cluster/haproxy-config.sh .*)",
                            self.haproxy_text).group(1)
        args = command.split()
        generated = subprocess.run(["bash", os.path.join(ROOT, args[0])] +
                                   args[1:], capture_output=True, text=True,
                                   check=True).stdout
        self.assertEqual(config, generated)
        addresses = [a for a in args[1:] if not a.startswith("--")]
        self.assertEqual(addresses, [
            "%s-%d.%s:50051" % (sts["metadata"]["name"], i,
                                sts["spec"]["serviceName"]) for i in range(n)])
        self.assertIn("mod(%d)" % n, config)
        # The shards trust the identity the proxy's client certificate has.
        trusted = self.docs[("ConfigMap", "poledger-shard")]["data"][
            "POLEDGER_TRUSTED_PROXY_IDENTITY"]
        self.assertIn(trusted, self.haproxy_text)
        # The proxy's Service selects its pods; its pods mount the config.
        deployment = self.docs[("Deployment", "poledger-haproxy")]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        service = self.docs[("Service", "poledger")]
        for k, v in service["spec"]["selector"].items():
            self.assertEqual(labels.get(k), v)
        volumes = {v["name"]: v for v in
                   deployment["spec"]["template"]["spec"]["volumes"]}
        self.assertEqual(volumes["config"]["configMap"]["name"],
                         "poledger-haproxy")

    def test_haproxy_accepts_the_configuration(self):
        haproxy = shutil.which("haproxy") or (
            "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
        if haproxy is None:
            self.skipTest("haproxy is not installed")
        config = self.docs[("ConfigMap", "poledger-haproxy")]["data"]["haproxy.cfg"]
        with tempfile.TemporaryDirectory() as d:
            made = subprocess.run(
                ["bash", os.path.join(ROOT, "tests/testing/make_certs.sh"), d,
                 "proxy"], capture_output=True, text=True)
            self.assertEqual(made.returncode, 0, made.stderr)
            files = {
                "proxy-server.pem": ("server.pem", "server.key"),
                "proxy-client.pem": ("proxy.pem", "proxy.key"),
                "client-ca.crt": ("ca.pem",),
                "ca.crt": ("ca.pem",),
            }
            for out, parts in files.items():
                with open(os.path.join(d, out), "w") as f:
                    for part in parts:
                        with open(os.path.join(d, part)) as source:
                            f.write(source.read())
            path = os.path.join(d, "haproxy.cfg")
            with open(path, "w") as f:
                f.write(config.replace("/etc/haproxy/tls/", d + "/"))
            check = subprocess.run([haproxy, "-c", "-f", path],
                                   capture_output=True, text=True)
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


class DockerfileTest(unittest.TestCase):
    def test_stages_user_volume_health(self):
        text = open(os.path.join(ROOT, "deploy/Dockerfile")).read()
        stages = re.findall(r"^FROM (\S+)", text, re.M)
        self.assertEqual(stages[0].split(" ")[0], "debian:12")
        self.assertEqual(stages[-1], "debian:12-slim")
        self.assertIn("deploy/build.sh", text)
        user = re.findall(r"^USER (\S+)", text, re.M)
        self.assertTrue(user and user[-1] not in ("root", "0"))
        self.assertRegex(text, r"(?m)^VOLUME .*/var/lib/poledger")
        self.assertRegex(text, r"(?m)^HEALTHCHECK ")
        # The health check asks the health-only port the image opens.
        health = re.search(r"POLEDGER_HEALTH_LISTEN=\S*:(\d+)", text).group(1)
        self.assertRegex(text, r'CMD \["poctl", "--server=127.0.0.1:%s"' % health)

    def test_runtime_packages_cover_the_binaries(self):
        text = open(os.path.join(ROOT, "deploy/Dockerfile")).read()
        runtime = text[text.rindex("FROM debian:12-slim"):]
        block = runtime[runtime.index("apt-get install"):runtime.index("rm -rf")]
        packages = set(re.findall(r"\b(lib[\w.+-]+|zlib1g)\b", block))
        # In every Debian 12 image already; and the sanitizers' runtimes of
        # a POLEDGER_SANITIZE build, which no image ships.
        base = {"libc6", "libgcc-s1", "libstdc++6", "libasan8", "libubsan1"}
        paths = set()
        for binary in ("server/poledger-server", "clients/poctl"):
            ldd = subprocess.run(["ldd", os.path.join(BUILD, binary)],
                                 capture_output=True, text=True).stdout
            paths.update(re.findall(r"=> (/\S+)", ldd))
        # One dpkg query for every library, under each name it may be
        # registered by (Debian 12 merged /lib into /usr/lib).
        candidates = {}
        for path in paths:
            real = os.path.realpath(path)
            for c in (path, real, real.replace("/usr/lib/", "/lib/", 1)):
                candidates.setdefault(c, path)
        found = subprocess.run(["dpkg", "-S"] + sorted(candidates),
                               capture_output=True, text=True).stdout
        owners = {}
        for line in found.splitlines():
            package, _, file = line.partition(": ")
            if file in candidates:
                owners[candidates[file]] = package.split(":")[0]
        self.assertTrue(owners)
        # apt installs what the listed packages depend on, too.
        installed = packages | base | depends_closure(packages)
        for path, owner in sorted(owners.items()):
            self.assertIn(owner, installed, f"{path} from {owner}")


def depends_closure(packages):
    """Every package the installed `packages` depend on, recursively (the
    first alternative of each dependency)."""
    seen, todo = set(), list(packages)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        out = subprocess.run(["dpkg-query", "-W", "-f=${Depends},${Pre-Depends}",
                              name], capture_output=True, text=True).stdout
        for dep in out.split(","):
            dep = dep.split("|")[0].strip().split(" ")[0].split(":")[0]
            if dep:
                todo.append(dep)
    return seen



class HighAvailabilityManifestTest(unittest.TestCase):
    """deploy/cluster/kubernetes/ha.yaml: etcd of three members and one
    shard's three nodes with failover flags the server knows."""

    def setUp(self):
        self.docs = {}
        with open(os.path.join(ROOT, "deploy/cluster/kubernetes/ha.yaml")) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    self.docs[(doc["kind"], doc["metadata"]["name"])] = doc

    def test_nodes_find_etcd_and_each_other(self):
        etcd = self.docs[("StatefulSet", "etcd")]
        self.assertEqual(etcd["spec"]["replicas"], 3)
        (etcd_container,) = etcd["spec"]["template"]["spec"]["containers"]
        cluster = [a for a in etcd_container["command"]
                   if a.startswith("--initial-cluster=")][0]
        self.assertEqual(cluster.count("etcd-"), 6)  # Three name=URL pairs.
        nodes = self.docs[("StatefulSet", "poledger-ha-0")]
        self.assertEqual(nodes["spec"]["replicas"], 3)
        (container,) = nodes["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        endpoints = env["POLEDGER_ETCD_ENDPOINTS"].split(",")
        self.assertEqual(endpoints, ["http://etcd-%d.etcd:2379" % i
                                     for i in range(3)])
        service = nodes["spec"]["serviceName"]
        self.assertIn(("Service", service), self.docs)
        self.assertEqual(env["POLEDGER_ADVERTISE_ADDRESS"],
                         "$(POD_NAME).%s:50051" % service)
        self.assertGreaterEqual(int(env["POLEDGER_SYNC_FOLLOWERS"]), 1)
        help_text = subprocess.run(
            [os.path.join(BUILD, "server/poledger-server"), "--help"],
            capture_output=True, text=True).stdout
        for flag in env:
            if flag.startswith("POLEDGER_"):
                name = "--" + flag[len("POLEDGER_"):].lower().replace("_", "-")
                self.assertIn(name, help_text, flag)
        # The proxy's command in the header names every node of the shard.
        with open(os.path.join(ROOT, "deploy/cluster/kubernetes/ha.yaml")) as f:
            header = f.read()
        self.assertIn(",".join("poledger-ha-0-%d.%s:50051" % (i, service)
                               for i in range(3)), header)


if __name__ == "__main__":
    ROOT, BUILD = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    unittest.main(argv=sys.argv[:1], verbosity=2)
