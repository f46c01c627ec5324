// A foreign host for keyhost policies: runs the conformance vectors against
// any policy component (world keyhost:policy/policy, 0.2 or 0.1) under Node.
//
//     node tests/foreign/node/run-vectors.mjs COMPONENT.wasm VECTORS.json
//
// jco transpiles the component to JavaScript; every case gets a fresh
// instance, which is configured with the case's settings and then asked to
// validate. WASI comes from @bytecodealliance/preview2-shim, made to grant
// nothing, as keyhost grants nothing: no preopens (the shim's default), no
// environment, arguments or network.
// The policy runs in a worker thread. A case that takes longer than
// CASE_TIMEOUT_MS, or whose call ends the thread (WASI exit), is denied with
// policy_error, as keyhost fails closed on a call that runs out of time; the
// thread is ended and the next case gets a new one.
// Prints {"component", "results"} as one line of JSON; each mismatch with a
// case's `expect` goes to stderr. Exit status: 0 when every case matches, 1
// on a mismatch, 2 on a usage or load error.

import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

import { transpile } from "@bytecodealliance/jco";
import * as wasi from "@bytecodealliance/preview2-shim";

/**
 * How long one case (a new instance, `configure` and `validate`) may take.
 * keyhost gives a call 250 ms; a case of a policy that returns takes a few
 * milliseconds here, so only one that does not return reaches this.
 */
const CASE_TIMEOUT_MS = 2000;

/** A usage or load error: the vectors could not be run at all. */
class LoadError extends Error {}

/** A case whose call did not return: it ran out of time or ended its thread. */
class CallFailed extends Error {}

async function main(args) {
  if (args.length !== 2) {
    throw new LoadError("usage: run-vectors.mjs COMPONENT.wasm VECTORS.json");
  }
  const [componentPath, vectorsPath] = args;
  const vectors = await readVectors(vectorsPath);

  const results = [];
  let mismatches = 0;
  let policy;
  try {
    for (const testCase of vectors.cases) {
      policy ??= await PolicyThread.start(componentPath);
      let decision;
      try {
        decision = await policy.decide(merge(vectors.defaults, testCase));
      } catch (error) {
        if (!(error instanceof CallFailed)) throw error;
        await policy.stop();
        policy = undefined;
        decision = { decision: "deny", code: "policy_error", message: error.message };
      }
      results.push({ name: testCase.name, decision });
      if (!matches(testCase.expect, decision)) {
        mismatches++;
        console.error(`FAIL ${testCase.name}: expected ${describe(testCase.expect)}, got ${describe(decision)}`);
      }
    }
  } finally {
    await policy?.stop();
  }
  console.log(JSON.stringify({ component: componentPath, results }));
  return mismatches === 0 ? 0 : 1;
}

/**
 * The policy, loaded in a worker thread (see `serve`): a call into it that
 * does not return cannot be interrupted, but its thread can be ended.
 */
class PolicyThread {
  #worker;

  constructor(worker) {
    this.#worker = worker;
  }

  /** A thread with the component loaded, once it is ready for cases. */
  static async start(componentPath) {
    const thread = new PolicyThread(new Worker(new URL(import.meta.url), { workerData: { componentPath } }));
    try {
      await thread.#reply();
    } catch (error) {
      await thread.stop();
      throw error instanceof CallFailed ? new LoadError(`cannot load ${componentPath}: ${error.message}`) : error;
    }
    return thread;
  }

  /** The decision on a merged case; a CallFailed if it takes too long or ends the thread. */
  async decide(testCase) {
    this.#worker.postMessage(testCase);
    return (await this.#reply(CASE_TIMEOUT_MS)).decision;
  }

  stop() {
    return this.#worker.terminate();
  }

  /** The thread's next message, within `timeoutMs` if given. */
  #reply(timeoutMs) {
    const worker = this.#worker;
    return new Promise((resolve, reject) => {
      let timer;
      const settle = (outcome, value) => {
        clearTimeout(timer);
        worker.off("message", onMessage).off("error", onError).off("exit", onExit);
        outcome(value);
      };
      const onMessage = (message) =>
        message.loadError === undefined ? settle(resolve, message) : settle(reject, new LoadError(message.loadError));
      const onError = (error) => settle(reject, error);
      const onExit = (code) => settle(reject, new CallFailed(`the policy ended its thread (exit code ${code})`));
      worker.on("message", onMessage).on("error", onError).on("exit", onExit);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => settle(reject, new CallFailed(`the policy ran out of time (${timeoutMs} ms)`)), timeoutMs);
      }
    });
  }
}

/**
 * The worker thread: loads the component, says it is ready, then answers
 * each case posted to it with `{ decision }`, or `{ loadError }`.
 */
async function serve({ componentPath }) {
  grantNothing();
  const reportLoadError = (error) => {
    if (!(error instanceof LoadError)) throw error;
    parentPort.postMessage({ loadError: error.message });
  };
  let instantiate;
  try {
    instantiate = await loadPolicy(componentPath);
  } catch (error) {
    return reportLoadError(error);
  }
  parentPort.on("message", (testCase) =>
    instantiate()
      // Contract 0.2 exports `configure` and `validate` in the `validator`
      // interface; 0.1 exported them from the world.
      .then((policy) => decide(policy.validator ?? policy, testCase))
      .then((decision) => parentPort.postMessage({ decision }), reportLoadError),
  );
  parentPort.postMessage({ ready: true });
}

async function readVectors(path) {
  let vectors;
  try {
    vectors = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new LoadError(`cannot read the vectors in ${path}: ${error.message}`);
  }
  if (!Array.isArray(vectors?.cases)) {
    throw new LoadError(`${path} has no "cases" list`);
  }
  return vectors;
}

/**
 * Transpiles the component, in async instantiation mode, and returns a
 * function that makes a new instance of it.
 */
async function loadPolicy(path) {
  let bytes;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new LoadError(`cannot read ${path}: ${error.message}`);
  }
  let transpiled;
  try {
    transpiled = await transpile(bytes, { name: "policy", instantiation: "async" });
  } catch (error) {
    throw new LoadError(`${path} is not a component jco can load: ${error.message}`);
  }
  const imports = hostImports(transpiled.imports);

  // Only the JavaScript is written out, to be imported; the core modules
  // are compiled from memory, once, before any case is timed, and each
  // instantiation links them afresh.
  const dir = await mkdtemp(join(tmpdir(), "keyhost-policy-"));
  let instantiate;
  try {
    await writeFile(join(dir, "policy.js"), transpiled.files["policy.js"]);
    ({ instantiate } = await import(pathToFileURL(join(dir, "policy.js")).href));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  const compiled = new Map();
  try {
    for (const [name, file] of Object.entries(transpiled.files)) {
      if (name.endsWith(".wasm")) compiled.set(name, await WebAssembly.compile(file));
    }
  } catch (error) {
    throw new LoadError(`cannot compile ${path}: ${error.message}`);
  }
  const getCoreModule = (name) => compiled.get(name);
  return async () => {
    try {
      return await instantiate(getCoreModule, imports);
    } catch (error) {
      throw new LoadError(`cannot instantiate ${path}: ${error.message}`);
    }
  };
}

/** The WASI packages keyhost links; like keyhost, this host offers no others. */
const LINKED_WASI = new Set(["cli", "io", "clocks", "random", "filesystem", "sockets"]);

/**
 * The shim's implementation of each interface the component imports, e.g.
 * `wasi:cli/terminal-input` is `cli.terminalInput`.
 */
function hostImports(names) {
  const imports = {};
  for (const name of names) {
    const [, pkg, iface] = name.match(/^wasi:([a-z0-9-]+)\/([a-z0-9-]+)/) ?? [];
    const implementation = LINKED_WASI.has(pkg)
      ? wasi[pkg][iface.replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase())]
      : undefined;
    if (implementation === undefined) {
      throw new LoadError(`the component imports ${name}, which this host does not provide`);
    }
    imports[name] = implementation;
  }
  return imports;
}

/**
 * keyhost grants a policy nothing; the shim has no preopens by default, and
 * here it also loses its environment, arguments and network.
 */
function grantNothing() {
  wasi.cli._setEnv({});
  wasi.cli._setArgs([]);
  wasi.sockets._denyTcp();
  wasi.sockets._denyUdp();
  wasi.sockets._denyDnsLookup();
}

/** The case's key, identity, request and config, each merged over the defaults. */
function merge(defaults, testCase) {
  const merged = {};
  for (const part of ["key", "identity", "request", "config"]) {
    merged[part] = { ...defaults[part], ...testCase[part] };
  }
  return merged;
}

/** Configures a fresh instance with the case's settings and, if it accepts them, validates. */
async function decide(policy, { key, identity, request, config }) {
  try {
    try {
      policy.configure(Object.entries(config));
    } catch (error) {
      // jco throws an `err` result as a ComponentError carrying the payload.
      if (!Object.hasOwn(error, "payload")) throw error;
      return { decision: "configure_error", message: error.payload };
    }
    const decision = policy.validate(keyRecord(key), identityRecord(identity), requestRecord(request));
    if (decision.tag === "allow") return { decision: "allow", info: decision.val };
    return { decision: "deny", code: snakeCase(decision.val.code), message: decision.val.message };
  } catch (error) {
    // The call failed, most likely on a trap: keyhost fails closed, and so does this host.
    return { decision: "deny", code: "policy_error", message: String(error) };
  }
}

// The vectors spell WIT fields in snake_case and none as null; jco wants
// camelCase fields, undefined for none and BigInt for s64.

const option = (value) => value ?? undefined;
const optionS64 = (value) => (value == null ? undefined : BigInt(value));

function keyRecord(key) {
  return {
    id: key.id,
    name: key.name,
    kind: key.kind,
    owner: key.owner,
    service: option(key.service),
    scopes: key.scopes,
    allowedIps: key.allowed_ips,
    createdAt: BigInt(key.created_at),
    expiresAt: optionS64(key.expires_at),
    disabled: key.disabled,
    leaked: key.leaked,
    locked: key.locked,
  };
}

function identityRecord(identity) {
  return {
    iamId: identity.iam_id,
    kind: identity.kind,
    owner: option(identity.owner),
    scopes: identity.scopes,
  };
}

function requestRecord(request) {
  return {
    service: option(request.service),
    scope: option(request.scope),
    sourceIp: option(request.source_ip),
    method: option(request.method),
    path: option(request.path),
    attributes: request.attributes,
    now: BigInt(request.now),
  };
}

/** A WIT case name as keyhost prints it: `wrong-service` is `wrong_service`. */
const snakeCase = (name) => name.replaceAll("-", "_");

/** Kinds must agree, and so must deny codes; messages are not compared. */
// Messages and info pairs are compared only when the case gives
// `message_contains` or `info`.
function matches(expected, actual) {
  if (expected.decision !== actual.decision) return false;
  if (expected.decision === "deny" && expected.code !== actual.code) return false;
  if (expected.message_contains !== undefined && !(actual.message ?? "").includes(expected.message_contains)) return false;
  return expected.info === undefined || JSON.stringify(expected.info) === JSON.stringify(actual.info);
}

function describe(decision) {
  const code = decision.decision === "deny" ? ` ${decision.code}` : "";
  const message = decision.message === undefined ? "" : ` (${JSON.stringify(decision.message)})`;
  return `${decision.decision}${code}${message}`;
}

if (isMainThread) {
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (error) {
    console.error(`run-vectors: ${error instanceof LoadError ? error.message : error.stack}`);
    process.exitCode = 2;
  }
} else {
  await serve(workerData);
}
