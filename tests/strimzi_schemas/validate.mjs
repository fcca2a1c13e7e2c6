// Validates Strimzi custom resources with validators compiled from Strimzi's own CRD
// schemas (the pinned @kubernetes-models/strimzi-kafka-operator, see package.json).
//
// stdin: a JSON list of resources ({apiVersion, kind, ...}).
// stdout: a JSON list, one entry per resource in the same order: a list of
// {path, message} errors, empty when the resource is valid.
// Exit status 0 when every resource was checked (valid or not); 2 when the input is
// unreadable. A resource whose apiVersion/kind has no validator gets an error entry:
// it would be refused by the operator's API server too ("no matches for kind").
//
// The compiled validators accept fields their schema does not name (the CRDs do not
// set additionalProperties). The API server's strict field validation (kubectl
// apply's default) refuses them, so this script does too: each resource is
// validated through a Proxy that records which properties the validator looks at.
// An object whose validator looked at some of its properties has a schema with
// properties, so a key it never looked at is an unknown field. An object none of
// whose keys were looked at is an open map (x-kubernetes-preserve-unknown-fields,
// such as a Kafka `config`): anything goes there, as in the cluster.

import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const SCHEMAS = join(
  HERE, "node_modules", "@kubernetes-models", "strimzi-kafka-operator", "_schemas",
);
const GROUPS = new Set(["kafka.strimzi.io", "core.strimzi.io"]);

function capitalised(word) {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

// kafka.strimzi.io/v1 + KafkaTopic -> _schemas/KafkaStrimziIoV1KafkaTopic.js
function schemaFile(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
  const [group, version, ...rest] = apiVersion.split("/");
  if (!GROUPS.has(group) || !version || rest.length || !/^[A-Za-z0-9]+$/.test(kind + version)) {
    return null;
  }
  const prefix = group.split(".").map(capitalised).join("");
  const file = join(SCHEMAS, `${prefix}${capitalised(version)}${kind}.js`);
  return existsSync(file) ? file : null;
}

const validators = new Map();
async function validatorFor(apiVersion, kind) {
  const file = schemaFile(apiVersion, kind);
  if (file === null) return null;
  if (!validators.has(file)) {
    validators.set(file, (await import(pathToFileURL(file).href)).validate);
  }
  return validators.get(file);
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function pointer(path) {
  return path.map((part) => `/${String(part).replace(/~/g, "~0").replace(/\//g, "~1")}`).join("");
}

// A read-only view of `value` that records, per object, the keys the validator touched.
function watched(value, seen) {
  if (value === null || typeof value !== "object") return value;
  const touched = new Set();
  seen.set(value, touched);
  const children = new Map();
  return new Proxy(value, {
    get(target, key) {
      touched.add(key);
      const child = target[key];
      if (typeof key !== "string" || child === null || typeof child !== "object") return child;
      if (!children.has(key)) children.set(key, watched(child, seen));
      return children.get(key);
    },
    has(target, key) {
      touched.add(key);
      return key in target;
    },
    getOwnPropertyDescriptor(target, key) {
      touched.add(key);
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
    ownKeys(target) {
      for (const key of Reflect.ownKeys(target)) touched.add(key);
      return Reflect.ownKeys(target);
    },
  });
}

function unknownFields(value, seen, path, out) {
  if (Array.isArray(value)) {
    value.forEach((item, index) => unknownFields(item, seen, [...path, index], out));
    return;
  }
  if (!isObject(value)) return;
  const touched = seen.get(value);
  if (!touched || touched.size === 0) return; // not validated, or an open map
  for (const key of Object.keys(value)) {
    if (!touched.has(key)) {
      out.push({ path: pointer([...path, key]), message: `unknown field "${key}"` });
    }
  }
  for (const key of Object.keys(value)) {
    if (touched.has(key)) unknownFields(value[key], seen, [...path, key], out);
  }
}

function valueAt(doc, instancePath) {
  let value = doc;
  for (const raw of instancePath.split("/").slice(1)) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (value === null || typeof value !== "object") return undefined;
    value = value[key];
  }
  return value;
}

function describe(error, doc) {
  const value = valueAt(doc, error.instancePath);
  const got = isObject(value) || Array.isArray(value) ? "" : ` (got ${JSON.stringify(value)})`;
  return {
    path: error.instancePath || "/",
    message: `${error.keyword} ${JSON.stringify(error.params)}${got}`,
  };
}

async function check(doc) {
  if (!isObject(doc)) return [{ path: "/", message: "not an object" }];
  const validate = await validatorFor(doc.apiVersion, doc.kind);
  if (validate === null) {
    return [{
      path: "/",
      message: `no validator for ${doc.kind} ${doc.apiVersion} in the Strimzi schemas`,
    }];
  }
  const seen = new Map();
  const errors = [];
  if (!validate(watched(doc, seen))) {
    for (const error of validate.errors) errors.push(describe(error, doc));
  }
  unknownFields(doc, seen, [], errors);
  return errors;
}

async function main() {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  let docs;
  try {
    docs = JSON.parse(input);
  } catch (error) {
    process.stderr.write(`stdin is not JSON: ${error.message}\n`);
    process.exit(2);
  }
  if (!Array.isArray(docs)) {
    process.stderr.write("stdin must be a JSON list of resources\n");
    process.exit(2);
  }
  const results = [];
  for (const doc of docs) results.push(await check(doc));
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

await main();
