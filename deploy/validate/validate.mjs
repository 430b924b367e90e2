// Offline validation of Flotilla's Kubernetes manifests and Prometheus rules.
//
//   node validate.mjs [K8S_DIR] [--rules FILE] [--adapter FILE] [--dump FILE]
//
// Why: manifests that only get looked at when someone applies them rot silently. This
// renders what `kubectl apply -k` would apply and checks it without a cluster:
//   1. every YAML document under K8S_DIR (default deploy/k8s) parses and validates against
//      its schema (kubernetes-models, @kubernetes-models/keda, .../prometheus-operator);
//      a kind no schema knows is an error, not a skip;
//   2. every kustomization renders (resources exist, no duplicates) and every manifest is
//      reached by one, so `kubectl apply -k` ships everything that is checked;
//   3. in each rendered stack, every worker Deployment has exactly one autoscaler (KEDA
//      ScaledObject or HPA) aimed at it and agreeing with it on queue and concurrency;
//      probes point at declared container ports; terminationGracePeriodSeconds exceeds
//      --shutdown-grace by a margin; queues are the built-in ones;
//   4. the Prometheus rules file has the expected structure, and every expression (rules
//      and prometheus-adapter queries) parses as PromQL.
// It prints one summary line and exits 0, or lists every problem and exits 1.
// --dump writes every rendered object as JSON, for tests that check embedded files
// (flotilla.toml, targets.toml) with the real Rust parsers.

import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { parser as promqlParser } from "@prometheus-io/lezer-promql";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BUILTIN_QUEUES = ["q-ingest", "q-transcode", "q-ai-enrich", "q-distribution"];
/** Seconds a worker pod needs after --shutdown-grace to hand jobs back and exit. */
const MIN_TERMINATION_MARGIN_S = 10;
const SEVERITIES = ["high", "medium", "low"];
const KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1";
/** Cluster-scoped kinds: a kustomization's `namespace` does not apply to them. */
const CLUSTER_SCOPED = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterTriggerAuthentication"]);

const problems = [];
const fail = (message) => problems.push(message);

/** A path as shown in messages: relative to the repository when inside it. */
function show(path) {
  const rel = relative(REPO, path);
  return rel === "" ? "." : rel.startsWith("..") ? path : rel;
}

function parseArgs(argv) {
  const args = {
    k8s: join(REPO, "deploy/k8s"),
    rules: join(REPO, "deploy/prometheus/flotilla-alerts.yml"),
    adapter: join(REPO, "deploy/prometheus/adapter-rules.yaml"),
    dump: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (["--rules", "--adapter", "--dump"].includes(flag)) {
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      args[flag.slice(2)] = resolve(argv[++i]);
    } else if (flag.startsWith("--")) {
      throw new Error(`unknown flag ${flag}`);
    } else {
      args.k8s = resolve(flag);
    }
  }
  return args;
}

// ---------------------------------------------------------------- reading YAML

function yamlFiles(dir) {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return name === "node_modules" ? [] : yamlFiles(path);
      return /\.ya?ml$/.test(name) ? [path] : [];
    });
}

/** The non-empty documents of one YAML file, or none (with a problem) when it does not parse. */
function readDocuments(path, shown) {
  const docs = parseAllDocuments(readFileSync(path, "utf8"), { prettyErrors: true });
  const broken = docs.flatMap((d) => d.errors);
  if (broken.length > 0) {
    fail(`${shown}: YAML: ${broken[0].message}`);
    return [];
  }
  return docs.map((d) => d.toJS()).filter((doc) => doc !== null && doc !== undefined);
}

// ---------------------------------------------------------------- schemas

/** The module holding the models of an apiVersion, or null when no installed package has it. */
function modelModule(apiVersion) {
  if (typeof apiVersion !== "string" || !/^[a-z0-9.]*\/?v[0-9a-z]+$/.test(apiVersion)) return null;
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
  if (group === "keda.sh") return `@kubernetes-models/keda/${apiVersion}`;
  if (group === "monitoring.coreos.com") return `@kubernetes-models/prometheus-operator/${apiVersion}`;
  if (group === "" || group.endsWith(".k8s.io") || !group.includes(".")) return `kubernetes-models/${apiVersion}`;
  return null;
}

async function modelClass(apiVersion, kind) {
  const module = modelModule(apiVersion);
  if (module === null) return null;
  try {
    const models = await import(module);
    return typeof models[kind] === "function" && models[kind].kind === kind ? models[kind] : null;
  } catch {
    return null;
  }
}

function label(obj) {
  return `${obj?.kind ?? "?"}/${obj?.metadata?.name ?? "?"}`;
}

async function validateObject(obj, shown) {
  if (typeof obj?.metadata?.name !== "string" || obj.metadata.name === "") {
    fail(`${shown}: ${label(obj)}: metadata.name is missing`);
  }
  const Model = await modelClass(obj?.apiVersion, obj?.kind);
  if (Model === null) {
    fail(`${shown}: ${label(obj)}: unknown kind ${obj?.kind} of apiVersion ${obj?.apiVersion} (no schema)`);
    return;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    fail(`${shown}: ${label(obj)}: ${e.message}`);
  }
}

// ---------------------------------------------------------------- kustomize

/** Reads every file: objects with their file, and kustomizations by directory. */
function load(k8sDir) {
  const objects = [];
  const kustomizations = new Map();
  for (const path of yamlFiles(k8sDir)) {
    const shown = show(path);
    for (const doc of readDocuments(path, shown)) {
      if (doc.kind === "Kustomization") {
        if (doc.apiVersion !== KUSTOMIZE_API) fail(`${shown}: Kustomization apiVersion must be ${KUSTOMIZE_API}`);
        if (!/^kustomization\.ya?ml$/.test(basename(path))) fail(`${shown}: a Kustomization must be kustomization.yaml`);
        kustomizations.set(dirname(path), doc);
      } else {
        objects.push({ obj: doc, file: path, shown });
      }
    }
  }
  return { objects, kustomizations };
}

/** What `kubectl kustomize dir` would output, following `resources` (files and directories). */
function render(dir, ctx, reached, stack = []) {
  const k = ctx.kustomizations.get(dir);
  const shownDir = show(dir);
  if (!k) return fail(`${shownDir}: referenced as a kustomization but has no kustomization.yaml`), [];
  if (stack.includes(dir)) return fail(`${shownDir}: kustomization cycle`), [];
  const out = [];
  for (const entry of k.resources ?? []) {
    const path = resolve(dir, entry);
    if (!existsSync(path)) {
      fail(`${shownDir}/kustomization.yaml: resource ${entry} does not exist`);
    } else if (statSync(path).isDirectory()) {
      out.push(...render(path, ctx, reached, [...stack, dir]));
    } else {
      reached.add(path);
      out.push(...ctx.objects.filter((o) => o.file === path).map((o) => structuredClone(o)));
    }
  }
  if (k.namespace) {
    out.filter((o) => !CLUSTER_SCOPED.has(o.obj.kind)).forEach((o) => {
      o.obj.metadata = { ...o.obj.metadata, namespace: k.namespace };
    });
  }
  return out;
}

function checkDuplicates(rendered, root) {
  const seen = new Set();
  for (const { obj } of rendered) {
    const id = `${obj.kind}/${obj.metadata?.namespace ?? ""}/${obj.metadata?.name}`;
    if (seen.has(id)) fail(`${root}: ${label(obj)} appears twice in the rendered stack`);
    seen.add(id);
  }
}

/** Renders every root kustomization (one no other kustomization includes). */
function renderRoots(ctx) {
  const included = new Set();
  for (const [dir, k] of ctx.kustomizations) {
    for (const entry of k.resources ?? []) {
      const path = resolve(dir, entry);
      if (existsSync(path) && statSync(path).isDirectory()) included.add(path);
    }
  }
  const reached = new Set();
  const roots = [...ctx.kustomizations.keys()].filter((dir) => !included.has(dir));
  const renders = roots.map((dir) => {
    const name = show(dir);
    const rendered = render(dir, ctx, reached);
    checkDuplicates(rendered, name);
    return { name, objects: rendered.map((o) => o.obj) };
  });
  for (const file of new Set(ctx.objects.map((o) => o.file))) {
    if (!reached.has(file)) fail(`${show(file)}: not listed by any kustomization, so never applied`);
  }
  return renders;
}

// ---------------------------------------------------------------- worker cross-checks

/** `--flag=value` and `--flag value` arguments as a map. */
function flags(args) {
  const out = new Map();
  for (let i = 0; i < (args ?? []).length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(args[i]);
    if (!m) continue;
    if (m[2] !== undefined) out.set(m[1], m[2]);
    else if (i + 1 < args.length && !args[i + 1].startsWith("--")) out.set(m[1], args[++i]);
    else out.set(m[1], "");
  }
  return out;
}

/** Seconds of a humantime duration like `30s`, `2m`, `1m30s`, `500ms`; NaN when unreadable. */
function seconds(text) {
  const units = { ms: 0.001, s: 1, m: 60, h: 3600 };
  const parts = [...String(text).matchAll(/(\d+)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== String(text)) return NaN;
  return parts.reduce((sum, [, n, unit]) => sum + Number(n) * units[unit], 0);
}

function containerPort(container, port) {
  return (container.ports ?? []).find((p) => p.name === port || p.containerPort === port);
}

function checkProbes(where, container) {
  for (const kind of ["livenessProbe", "readinessProbe", "startupProbe"]) {
    const port = container[kind]?.httpGet?.port ?? container[kind]?.tcpSocket?.port;
    if (port !== undefined && !containerPort(container, port)) {
      fail(`${where}: ${kind} port ${port} is not a declared container port`);
    }
  }
}

/** Checks one worker Deployment's container; returns its queues and concurrency. */
function checkWorker(where, deployment) {
  const pod = deployment.spec?.template?.spec ?? {};
  const container = (pod.containers ?? []).find((c) => c.args?.includes("worker"));
  if (!container) return fail(`${where}: no container runs \`flotilla worker\``), null;
  const f = flags(container.args);
  const queues = (f.get("queues") ?? "").split(",").filter(Boolean);
  if (queues.length === 0) fail(`${where}: --queues is missing`);
  queues.filter((q) => !BUILTIN_QUEUES.includes(q)).forEach((q) => fail(`${where}: queue ${q} is not a built-in queue (${BUILTIN_QUEUES.join(", ")})`));
  const concurrency = Number(f.get("concurrency"));
  if (!Number.isInteger(concurrency) || concurrency < 1) fail(`${where}: --concurrency must be a positive integer`);
  checkHealthPort(where, container, f.get("health-addr"));
  const grace = seconds(f.get("shutdown-grace") ?? "30s");
  const period = pod.terminationGracePeriodSeconds ?? 30;
  if (Number.isNaN(grace)) fail(`${where}: --shutdown-grace ${f.get("shutdown-grace")} is not a duration`);
  else if (!(period >= grace + MIN_TERMINATION_MARGIN_S)) {
    fail(`${where}: terminationGracePeriodSeconds ${period} must exceed --shutdown-grace (${grace} s) by at least ${MIN_TERMINATION_MARGIN_S} s`);
  }
  return { queues, concurrency };
}

function checkHealthPort(where, container, healthAddr) {
  const port = Number(/:(\d+)$/.exec(healthAddr ?? "")?.[1]);
  if (!port) return fail(`${where}: --health-addr ADDR:PORT is missing (the probes need it)`);
  if (!containerPort(container, port)) fail(`${where}: --health-addr port ${port} is not a declared container port`);
  for (const [kind, path] of [["livenessProbe", "/healthz"], ["readinessProbe", "/readyz"]]) {
    const get = container[kind]?.httpGet;
    if (!get) { fail(`${where}: ${kind} is missing`); continue; }
    if (containerPort(container, get.port)?.containerPort !== port) fail(`${where}: ${kind} does not probe the health port ${port}`);
    if (get.path !== path) fail(`${where}: ${kind} must GET ${path}, not ${get.path}`);
  }
}

/** The queue and per-pod target a scaler aims at, read from its trigger or metric. */
function scalerSignal(scaler) {
  if (scaler.kind === "ScaledObject") {
    const meta = scaler.spec?.triggers?.[0]?.metadata ?? {};
    const queue = /\/v1\/queues\/([^/]+)\/scaling$/.exec(meta.url ?? "")?.[1];
    return { queue, target: Number(meta.targetValue), valueLocation: meta.valueLocation };
  }
  const external = scaler.spec?.metrics?.find((m) => m.type === "External")?.external;
  return {
    queue: external?.metric?.selector?.matchLabels?.queue,
    target: Number(external?.target?.averageValue),
    metric: external?.metric?.name,
  };
}

function checkScalers(stack) {
  const scalers = stack.objects.filter((o) => o.kind === "ScaledObject" || o.kind === "HorizontalPodAutoscaler");
  const deployments = stack.objects.filter((o) => o.kind === "Deployment");
  for (const s of scalers) {
    const ref = s.spec?.scaleTargetRef ?? {};
    if (!deployments.some((d) => ref.kind === "Deployment" && d.metadata.name === ref.name)) {
      fail(`${stack.name}: ${label(s)} targets ${ref.kind}/${ref.name}, which the stack does not have`);
    }
  }
  const workers = deployments.filter((d) => d.metadata.labels?.["app.kubernetes.io/component"] === "worker");
  for (const d of workers) checkWorkerStack(stack, d, scalers);
  return workers.length;
}

function checkWorkerStack(stack, deployment, scalers) {
  const where = `${stack.name}: ${label(deployment)}`;
  const worker = checkWorker(where, deployment);
  const mine = scalers.filter((s) => s.spec?.scaleTargetRef?.name === deployment.metadata.name);
  if (mine.length !== 1) return fail(`${where}: has ${mine.length} autoscalers (ScaledObject or HPA), wants exactly 1`);
  if (!worker) return;
  const signal = scalerSignal(mine[0]);
  if (!worker.queues.includes(signal.queue)) fail(`${where}: its ${mine[0].kind} scales on queue ${signal.queue}, which it does not serve`);
  if (signal.target !== worker.concurrency) fail(`${where}: its ${mine[0].kind} targets ${signal.target} jobs a pod, but --concurrency is ${worker.concurrency}`);
  if (mine[0].kind === "ScaledObject" && signal.valueLocation !== "backlog") fail(`${where}: the ScaledObject must read valueLocation backlog`);
}

/** Probe ports of every container, workers or not. */
function checkAllProbes(stack) {
  for (const o of stack.objects) {
    for (const c of o.spec?.template?.spec?.containers ?? []) checkProbes(`${stack.name}: ${label(o)}`, c);
  }
}

// ---------------------------------------------------------------- Prometheus

function promqlErrors(expr) {
  const errors = [];
  promqlParser.parse(expr).iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(`at ${node.from}: ${JSON.stringify(expr.slice(Math.max(0, node.from - 20), node.to + 20))}`);
    },
  });
  return errors;
}

function checkExpr(where, expr) {
  if (typeof expr !== "string" || expr.trim() === "") return fail(`${where}: expr is missing`);
  const [first] = promqlErrors(expr);
  if (first) fail(`${where}: PromQL does not parse ${first}`);
}

function checkAlert(where, rule, names) {
  if (names.has(rule.alert)) fail(`${where}: alert name used twice`);
  names.add(rule.alert);
  checkExpr(where, rule.expr);
  if (typeof rule.for !== "string" || !/^(\d+(ms|s|m|h|d|w|y))+$/.test(rule.for)) fail(`${where}: \`for\` must be a duration like 5m`);
  if (!SEVERITIES.includes(rule.labels?.severity)) fail(`${where}: labels.severity must be one of ${SEVERITIES.join(", ")}`);
  for (const key of ["summary", "description"]) {
    if (typeof rule.annotations?.[key] !== "string" || rule.annotations[key] === "") fail(`${where}: annotations.${key} is missing`);
  }
}

/** Checks the rules file; returns the number of alerting rules. */
async function checkRules(path) {
  const shown = show(path);
  const [doc] = readDocuments(path, shown);
  if (!Array.isArray(doc?.groups) || doc.groups.length === 0) return fail(`${shown}: no groups`), 0;
  const { PrometheusRule } = await import("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");
  try {
    new PrometheusRule({ metadata: { name: "flotilla-alerts" }, spec: doc }).validate();
  } catch (e) {
    fail(`${shown}: not a valid rule file: ${e.message}`);
  }
  const names = new Set();
  let alerts = 0;
  for (const group of doc.groups) {
    if (!Array.isArray(group.rules) || group.rules.length === 0) fail(`${shown}: group ${group.name}: no rules`);
    for (const rule of group.rules ?? []) {
      const where = `${shown}: ${group.name}/${rule.alert ?? rule.record ?? "?"}`;
      if (rule.record) checkExpr(where, rule.expr);
      else if (rule.alert) { checkAlert(where, rule, names); alerts++; }
      else fail(`${where}: a rule needs \`alert\` or \`record\``);
    }
  }
  return alerts;
}

/** prometheus-adapter external rules: queries parse, and they serve every HPA's metric. */
function checkAdapter(path, renders) {
  const wanted = new Set(renders.flatMap((r) => r.objects).filter((o) => o.kind === "HorizontalPodAutoscaler").map((h) => scalerSignal(h).metric));
  if (wanted.size === 0) return;
  if (!existsSync(path)) return fail(`${show(path)}: missing, but HPAs use external metrics ${[...wanted].join(", ")}`);
  const shown = show(path);
  const [doc] = readDocuments(path, shown);
  const served = new Set();
  for (const rule of doc?.externalRules ?? []) {
    const query = String(rule.metricsQuery ?? "").replaceAll("<<.Series>>", "m").replaceAll("<<.LabelMatchers>>,", "").replaceAll("<<.LabelMatchers>>", "").replaceAll("<<.GroupBy>>", "queue");
    checkExpr(`${shown}: ${rule.name?.as}`, query);
    served.add(rule.name?.as);
  }
  [...wanted].filter((m) => !served.has(m)).forEach((m) => fail(`${shown}: no externalRule serves the HPA metric ${m}`));
}

// ---------------------------------------------------------------- main

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!existsSync(args.k8s)) throw new Error(`${args.k8s} does not exist`);
  const ctx = load(args.k8s);
  for (const { obj, shown } of ctx.objects) await validateObject(obj, shown);
  const renders = renderRoots(ctx);
  let workers = 0;
  for (const stack of renders) {
    checkAllProbes(stack);
    workers += checkScalers(stack);
  }
  if (workers === 0) fail(`${show(args.k8s)}: no worker Deployment in any rendered stack`);
  const alerts = await checkRules(args.rules);
  checkAdapter(args.adapter, renders);
  if (args.dump) writeFileSync(args.dump, JSON.stringify(renders, null, 2));
  report(ctx, renders, alerts);
}

function report(ctx, renders, alerts) {
  if (problems.length > 0) {
    problems.forEach((p) => console.error(`k8s-validate: error: ${p}`));
    console.error(`k8s-validate: FAILED: ${problems.length} problem(s)`);
    process.exit(1);
  }
  const kinds = (kind) => ctx.objects.filter((o) => o.obj.kind === kind).length;
  const stacks = renders.map((r) => `${r.name}: ${r.objects.length}`).join(", ");
  const files = new Set(ctx.objects.map((o) => o.file)).size;
  console.log(
    `k8s-validate: ${ctx.objects.length} objects valid in ${files} files ` +
      `(${kinds("Deployment")} Deployments, ${kinds("ScaledObject")} ScaledObjects, ${kinds("HorizontalPodAutoscaler")} HPAs; ` +
      `rendered ${stacks}); ${alerts} alert rules valid`,
  );
}

main().catch((e) => {
  console.error(`k8s-validate: error: ${e.message}`);
  process.exit(2);
});
