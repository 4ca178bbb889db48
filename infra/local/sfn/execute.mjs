#!/usr/bin/env node
// Runs the project's Step Functions state machine (AWS::Serverless::StateMachine in a SAM
// template) locally with aws-local-stepfunctions (Node 22), sending every Lambda Task to a Go
// Lambda served by the Lambda Runtime Interface Emulator (started by someone else).
//
//   node execute.mjs --template <template.yaml> [--state-machine <LogicalId>]
//                    --functions <functions.json> [--input <file|->] [--name <execution name>]
//                    [--json] [--region r] [--account a] [--wait-scale f] [--parameter K=V ...]
//
// Exit codes: 0 SUCCEEDED, 1 FAILED (or TIMED_OUT), 2 usage/setup error.
// See README.md beside this file.

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import {
  ExecutionError,
  ExecutionTimeoutError,
  StateMachine,
} from 'aws-local-stepfunctions';
import { parse as parseYaml } from 'yaml';

/** A usage or setup problem: exit code 2. */
export class UsageError extends Error {
  constructor(message) {
    super(message);
    this.name = 'UsageError';
  }
}

// ---------------------------------------------------------------------------
// Template reading (CloudFormation short tags)
// ---------------------------------------------------------------------------

function splitGetAtt(v) {
  if (typeof v !== 'string') return v;
  const i = v.indexOf('.');
  return i < 0 ? [v] : [v.slice(0, i), v.slice(i + 1)];
}

const SHORT_TAGS = {
  '!Ref': (v) => ({ Ref: v }),
  '!Condition': (v) => ({ Condition: v }),
  '!GetAtt': (v) => ({ 'Fn::GetAtt': splitGetAtt(v) }),
  '!Sub': (v) => ({ 'Fn::Sub': v }),
  '!If': (v) => ({ 'Fn::If': v }),
  '!Join': (v) => ({ 'Fn::Join': v }),
  '!Select': (v) => ({ 'Fn::Select': v }),
  '!Equals': (v) => ({ 'Fn::Equals': v }),
  '!Not': (v) => ({ 'Fn::Not': v }),
  '!And': (v) => ({ 'Fn::And': v }),
  '!Or': (v) => ({ 'Fn::Or': v }),
  '!FindInMap': (v) => ({ 'Fn::FindInMap': v }),
  '!Split': (v) => ({ 'Fn::Split': v }),
  '!Base64': (v) => ({ 'Fn::Base64': v }),
  '!ImportValue': (v) => ({ 'Fn::ImportValue': v }),
  '!GetAZs': (v) => ({ 'Fn::GetAZs': v }),
  '!Cidr': (v) => ({ 'Fn::Cidr': v }),
  '!Transform': (v) => ({ 'Fn::Transform': v }),
};

const CUSTOM_TAGS = Object.entries(SHORT_TAGS).flatMap(([tag, fn]) => [
  { tag, resolve: (str) => fn(str) },
  { tag, collection: 'seq', resolve: (seq) => fn(seq.toJSON()) },
  { tag, collection: 'map', resolve: (map) => fn(map.toJSON()) },
]);

/** Parses a CloudFormation/SAM YAML (or JSON) template text into plain objects. */
export function parseTemplate(text) {
  return parseYaml(text, { customTags: CUSTOM_TAGS, maxAliasCount: -1 });
}

// ---------------------------------------------------------------------------
// Resolving intrinsic functions (only what DefinitionSubstitutions / Name need)
// ---------------------------------------------------------------------------

const FUNCTION_TYPES = new Set(['AWS::Serverless::Function', 'AWS::Lambda::Function']);

/** Context for resolving values of one template. */
export function makeResolver(template, { region, account, parameters = {}, stackName = 'local' }) {
  const resources = template.Resources ?? {};
  const params = template.Parameters ?? {};
  const isFunction = (id) => FUNCTION_TYPES.has(resources[id]?.Type);
  const lambdaArn = (id) => `arn:aws:lambda:${region}:${account}:function:${id}`;
  const isStateMachine = (id) => STATE_MACHINE_TYPES.has(resources[id]?.Type);
  const stateMachineArn = (id) => `arn:aws:states:${region}:${account}:stateMachine:${id}`;

  function ref(name) {
    switch (name) {
      case 'AWS::Region': return region;
      case 'AWS::AccountId': return account;
      case 'AWS::Partition': return 'aws';
      case 'AWS::URLSuffix': return 'amazonaws.com';
      case 'AWS::StackName': return stackName;
      case 'AWS::StackId': return `arn:aws:cloudformation:${region}:${account}:stack/${stackName}/local`;
      case 'AWS::NoValue': return '';
      default: break;
    }
    if (Object.hasOwn(parameters, name)) return String(parameters[name]);
    if (Object.hasOwn(params, name)) {
      const d = params[name].Default;
      if (d === undefined) {
        throw new UsageError(`parameter ${name} has no Default: pass --parameter ${name}=VALUE`);
      }
      return Array.isArray(d) ? d.join(',') : String(d);
    }
    if (isFunction(name)) return name; // a function's Ref is its name; locally name = LogicalId
    if (isStateMachine(name)) return stateMachineArn(name); // a state machine's Ref is its ARN
    if (Object.hasOwn(resources, name)) return `local-${name}`;
    throw new UsageError(`!Ref ${name}: no such parameter or resource in the template`);
  }

  function getAtt(id, attr) {
    if (!Object.hasOwn(resources, id)) {
      throw new UsageError(`!GetAtt ${id}.${attr}: no such resource in the template`);
    }
    if (isFunction(id) && attr === 'Arn') return lambdaArn(id);
    if (isStateMachine(id) && attr === 'Arn') return stateMachineArn(id);
    if (isStateMachine(id) && attr === 'Name') return id;
    return `local-${id}`;
  }

  function sub(str, vars = {}) {
    return str.replace(/\$\{([^}]*)\}/g, (whole, name) => {
      if (name.startsWith('!')) return `\${${name.slice(1)}}`;
      const key = name.trim();
      if (Object.hasOwn(vars, key)) return resolve(vars[key]);
      if (key.includes('.') && !key.startsWith('AWS::')) {
        const [id, attr] = splitGetAtt(key);
        return getAtt(id, attr);
      }
      return ref(key);
    });
  }

  /** Resolves a template value to a string; returns undefined for what can't be resolved. */
  function resolve(v) {
    if (v === null || v === undefined) return '';
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
    if (Array.isArray(v)) return v.map(resolve).join(',');
    const keys = Object.keys(v);
    if (keys.length !== 1) return undefined;
    const [k] = keys;
    const a = v[k];
    switch (k) {
      case 'Ref': return ref(a);
      case 'Fn::GetAtt': {
        const [id, attr] = Array.isArray(a) ? a : splitGetAtt(a);
        return getAtt(id, attr);
      }
      case 'Fn::Sub':
        return Array.isArray(a) ? sub(a[0], a[1] ?? {}) : sub(a);
      case 'Fn::Join': {
        const parts = a[1].map(resolve);
        return parts.includes(undefined) ? undefined : parts.join(a[0]);
      }
      case 'Fn::Select': {
        const list = Array.isArray(a[1]) ? a[1] : undefined;
        return list ? resolve(list[Number(resolve(a[0]))]) : undefined;
      }
      default:
        return undefined;
    }
  }

  return { resolve, lambdaArn, isFunction, isStateMachine, stateMachineArn };
}

// ---------------------------------------------------------------------------
// Finding and building the state machine definition
// ---------------------------------------------------------------------------

/** Loads the template and builds the definition of its (or the named) state machine. */
export function buildDefinition({
  templatePath,
  stateMachineId,
  region,
  account,
  parameters = {},
  warn = (m) => process.stderr.write(`warning: ${m}\n`),
}) {
  let text;
  try {
    text = readFileSync(templatePath, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read template ${templatePath}: ${e.message}`);
  }
  let template;
  try {
    template = parseTemplate(text);
  } catch (e) {
    throw new UsageError(`cannot parse template ${templatePath}: ${e.message}`);
  }
  const resources = template?.Resources ?? {};
  const machines = Object.keys(resources).filter(
    (id) => resources[id]?.Type === 'AWS::Serverless::StateMachine',
  );
  let logicalId = stateMachineId;
  if (logicalId) {
    if (!machines.includes(logicalId)) {
      throw new UsageError(
        `no AWS::Serverless::StateMachine ${logicalId} in ${templatePath} (found: ${machines.join(', ') || 'none'})`,
      );
    }
  } else if (machines.length === 1) {
    [logicalId] = machines;
  } else {
    throw new UsageError(
      machines.length === 0
        ? `no AWS::Serverless::StateMachine in ${templatePath}`
        : `${templatePath} has several state machines (${machines.join(', ')}): pass --state-machine`,
    );
  }

  const props = resources[logicalId].Properties ?? {};
  const resolver = makeResolver(template, { region, account, parameters });

  let definitionText;
  if (typeof props.DefinitionUri === 'string') {
    const defPath = path.resolve(path.dirname(templatePath), props.DefinitionUri);
    try {
      definitionText = readFileSync(defPath, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read DefinitionUri ${defPath}: ${e.message}`);
    }
  } else if (props.DefinitionUri !== undefined) {
    throw new UsageError(`${logicalId}: DefinitionUri must be a local file path to run locally`);
  } else if (props.Definition !== undefined) {
    definitionText = JSON.stringify(props.Definition);
  } else {
    throw new UsageError(`${logicalId} has neither DefinitionUri nor Definition`);
  }

  const substitutions = {};
  for (const [name, value] of Object.entries(props.DefinitionSubstitutions ?? {})) {
    let resolved = resolver.resolve(value);
    if (resolved === undefined) {
      resolved = `local-${name}`;
      warn(`DefinitionSubstitutions.${name} (${JSON.stringify(value)}) cannot be resolved locally; using "${resolved}"`);
    }
    substitutions[name] = resolved;
  }

  // Replace ${Name} only for names in DefinitionSubstitutions (as Step Functions does).
  const unresolved = new Set();
  const substituted = definitionText.replace(/\$\{([^}]*)\}/g, (whole, name) => {
    if (Object.hasOwn(substitutions, name)) {
      return JSON.stringify(substitutions[name]).slice(1, -1); // JSON-string escaped
    }
    unresolved.add(name);
    return whole;
  });
  if (unresolved.size > 0) {
    throw new UsageError(
      `${logicalId}: unresolved substitution(s) in the definition: ${[...unresolved].map((n) => `\${${n}}`).join(', ')} ` +
        `(DefinitionSubstitutions has: ${Object.keys(substitutions).join(', ') || 'nothing'})`,
    );
  }
  let definition;
  try {
    definition = JSON.parse(substituted);
  } catch (e) {
    throw new UsageError(`${logicalId}: definition is not valid JSON after substitution: ${e.message}`);
  }

  let stateMachineName = logicalId;
  if (props.Name !== undefined) {
    const n = resolver.resolve(props.Name);
    if (n) stateMachineName = n;
    else warn(`${logicalId}: Name ${JSON.stringify(props.Name)} cannot be resolved locally; using ${logicalId}`);
  }

  // Function names (as they appear in ARNs / FunctionName) -> LogicalId.
  const functionIds = Object.keys(resources).filter((id) => resolver.isFunction(id));
  return { definition, logicalId, stateMachineName, substitutions, functionIds, template };
}

// ---------------------------------------------------------------------------
// Walking the definition
// ---------------------------------------------------------------------------

/** Calls fn(name, state) for every state, including those inside Parallel/Map. */
export function walkStates(definition, fn) {
  for (const [name, state] of Object.entries(definition?.States ?? {})) {
    fn(name, state);
    if (state.Type === 'Parallel') {
      for (const b of state.Branches ?? []) walkStates(b, fn);
    } else if (state.Type === 'Map') {
      if (state.ItemProcessor) walkStates(state.ItemProcessor, fn);
      if (state.Iterator) walkStates(state.Iterator, fn);
    }
  }
}

const LAMBDA_ARN_RE = /^arn:aws[a-z-]*:lambda:([^:]*):([^:]*):function:([^:]+)(?::([^:]+))?$/;
const LAMBDA_INVOKE = /^arn:aws[a-z-]*:states:::lambda:invoke$/;
const START_EXECUTION = /^arn:aws[a-z-]*:states:::states:startExecution\.sync(:2)?$/;
const STATE_MACHINE_TYPES = new Set(['AWS::Serverless::StateMachine', 'AWS::StepFunctions::StateMachine']);

/** Function name from an ARN, partial ARN ("123:function:f") or plain name. */
export function functionNameOf(ref) {
  if (typeof ref !== 'string') return undefined;
  const m = LAMBDA_ARN_RE.exec(ref);
  if (m) return m[3];
  const p = /^(?:[^:]+:)?function:([^:]+)(?::[^:]+)?$/.exec(ref);
  if (p) return p[1];
  return ref.split(':')[0];
}

// ---------------------------------------------------------------------------
// Invoking functions under the runtime interface emulator
// ---------------------------------------------------------------------------

/** POSTs body to url with node:http(s) (no fetch port blocklist, no keep-alive). */
export function httpPost(url, body) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode,
        headers: res.headers,
        text: Buffer.concat(chunks).toString('utf8'),
      }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const ERROR_KEYS = new Set(['errorType', 'errorMessage', 'stackTrace', 'trace', 'requestId', 'cause']);

function lambdaError(name, cause) {
  const e = new Error(cause);
  e.name = name;
  return e;
}

/**
 * Builds an invoker that POSTs payloads to the emulator URLs, one request in flight per URL.
 * Returns { invoke(functionName, payload) -> {payload, statusCode, headers} } and throws Errors
 * named like Step Functions names Lambda errors.
 */
export function createInvoker(functions, { request = httpPost } = {}) {
  const queues = new Map(); // url -> tail promise
  const pending = new Map(); // url -> invocations queued or in flight

  async function post(fnName, url, payload) {
    let res;
    try {
      res = await request(url, JSON.stringify(payload === undefined ? {} : payload));
    } catch (e) {
      throw lambdaError('Lambda.ServiceException', `could not invoke ${fnName} at ${url}: ${e.code ?? e.message}`);
    }
    const { text } = res;
    let body;
    let isJson = false;
    try {
      body = text.trim() === '' ? null : JSON.parse(text);
      isJson = true;
    } catch {
      body = undefined;
    }
    const fnErrHeader = res.headers['x-amz-function-error'];
    const looksLikeError =
      isJson && body !== null && typeof body === 'object' && !Array.isArray(body) &&
      typeof body.errorType === 'string' &&
      (res.status !== 200 || fnErrHeader || Object.keys(body).every((k) => ERROR_KEYS.has(k)));
    if (looksLikeError) {
      // Step Functions uses the function's error payload, as returned, as the Cause.
      throw lambdaError(body.errorType, text.trim());
    }
    if (!isJson && /^Task timed out after [0-9.]+ seconds/.test(text.trim())) {
      // The runtime emulator's answer when the function outlives its
      // timeout; Lambda reports it to Step Functions as Sandbox.Timedout.
      throw lambdaError('Sandbox.Timedout', JSON.stringify({ errorType: 'Sandbox.Timedout', errorMessage: text.trim() }));
    }
    if (fnErrHeader) {
      throw lambdaError('Lambda.Unknown', text.trim());
    }
    if (res.status !== 200) {
      throw lambdaError(
        'Lambda.ServiceException',
        `${fnName} at ${url} answered HTTP ${res.status}: ${text.slice(0, 500)}`,
      );
    }
    if (!isJson) {
      throw lambdaError('Lambda.Unknown', `${fnName} returned a response that is not JSON: ${text.slice(0, 500)}`);
    }
    return { payload: body, statusCode: res.status };
  }

  return {
    invoke(fnName, payload) {
      const entry = functions[fnName];
      if (!entry) {
        return Promise.reject(
          lambdaError('Lambda.ResourceNotFoundException', `no URL for function ${fnName} in functions.json`),
        );
      }
      // A list of URLs is a pool of emulators (Lambda's concurrency): take
      // the one with the fewest invocations pending.
      const urls = Array.isArray(entry) ? entry : [entry];
      let url = urls[0];
      for (const u of urls) if ((pending.get(u) ?? 0) < (pending.get(url) ?? 0)) url = u;
      pending.set(url, (pending.get(url) ?? 0) + 1);
      const prev = queues.get(url) ?? Promise.resolve();
      const p = prev.then(() => post(fnName, url, payload)).finally(() => pending.set(url, pending.get(url) - 1));
      queues.set(url, p.catch(() => {}));
      return p;
    },
  };
}

/** Maps a function reference (ARN or name) to its key in functions.json. */
export function makeFunctionLookup(functions) {
  return (ref) => {
    const name = functionNameOf(ref);
    if (name && Object.hasOwn(functions, name)) return name;
    if (typeof ref === 'string' && Object.hasOwn(functions, ref)) return ref;
    return undefined;
  };
}

/**
 * Builds taskResourceLocalHandlers for every Lambda Task state, and rejects definitions with
 * Task resources that can't be run locally.
 */
export function buildTaskHandlers(definition, functions, invoker, startChild) {
  const lookup = makeFunctionLookup(functions);
  const handlers = {};
  const kinds = {};
  const problems = [];
  walkStates(definition, (name, state) => {
    if (state.Type !== 'Task') return;
    const resource = state.Resource;
    let kind;
    let handler;
    if (typeof resource === 'string' && LAMBDA_ARN_RE.test(resource)) {
      const fn = lookup(resource);
      if (!fn) {
        problems.push(`Task ${name}: no URL in functions.json for ${functionNameOf(resource)} (${resource})`);
        return;
      }
      kind = `direct:${fn}`;
      handler = async (input) => (await invoker.invoke(fn, input)).payload;
    } else if (typeof resource === 'string' && LAMBDA_INVOKE.test(resource)) {
      const p = state.Parameters ?? {};
      if (typeof p.FunctionName === 'string' && !lookup(p.FunctionName)) {
        problems.push(`Task ${name}: no URL in functions.json for ${functionNameOf(p.FunctionName)} (${p.FunctionName})`);
        return;
      }
      if (p.FunctionName === undefined && p['FunctionName.$'] === undefined) {
        problems.push(`Task ${name}: lambda:invoke without Parameters.FunctionName`);
        return;
      }
      kind = 'invoke';
      handler = async (input) => {
        const fn = lookup(input?.FunctionName);
        if (!fn) {
          throw lambdaError(
            'Lambda.ResourceNotFoundException',
            `no URL in functions.json for function ${JSON.stringify(input?.FunctionName)}`,
          );
        }
        const { payload, statusCode } = await invoker.invoke(fn, input.Payload);
        const requestId = randomUUID();
        return {
          ExecutedVersion: '$LATEST',
          Payload: payload,
          SdkHttpMetadata: {
            AllHttpHeaders: { 'X-Amz-Executed-Version': ['$LATEST'], 'x-amzn-RequestId': [requestId], 'Content-Type': ['application/json'] },
            HttpHeaders: { 'X-Amz-Executed-Version': '$LATEST', 'x-amzn-RequestId': requestId, 'Content-Type': 'application/json' },
            HttpStatusCode: statusCode,
          },
          SdkResponseMetadata: { RequestId: requestId },
          StatusCode: statusCode,
        };
      };
    } else if (typeof resource === 'string' && START_EXECUTION.test(resource) && startChild) {
      // Nested workflow (Run a Job): run the child state machine of the
      // same template to completion and answer as DescribeExecution does.
      const v2 = resource.endsWith(':2');
      kind = `start:${resource}`;
      handler = async (input) => {
        const r = await startChild(input?.StateMachineArn, input?.Input, input?.Name);
        const describe = {
          ExecutionArn: r.executionArn,
          Input: v2 ? r.input : JSON.stringify(r.input),
          InputDetails: { Included: true },
          Name: r.name,
          StartDate: r.startDate,
          StateMachineArn: input?.StateMachineArn,
          Status: r.status,
          StopDate: r.stopDate,
        };
        if (r.status === 'SUCCEEDED') {
          return { ...describe, Output: v2 ? r.output : JSON.stringify(r.output), OutputDetails: { Included: true } };
        }
        // Step Functions fails the task with States.TaskFailed and the
        // child's DescribeExecution answer as the Cause.
        throw lambdaError('States.TaskFailed', JSON.stringify({ ...describe, Error: r.error, Cause: r.cause }));
      };
    } else {
      problems.push(`Task ${name}: resource ${JSON.stringify(resource)} cannot be run locally (only Lambda functions and nested state machines of the template)`);
      return;
    }
    if (kinds[name] !== undefined && kinds[name] !== kind) {
      problems.push(`Task name ${name} is used twice for different functions; local handlers are keyed by state name`);
      return;
    }
    kinds[name] = kind;
    handlers[name] = handler;
  });
  if (problems.length) throw new UsageError(problems.join('\n'));
  return handlers;
}

/** Retry/Wait overrides scaled by `scale` (undefined or 1: none, real behaviour). */
export function buildWaitOverrides(definition, scale) {
  const retryIntervalOverrides = {};
  const waitTimeOverrides = {};
  if (scale === undefined || scale === 1) return { retryIntervalOverrides, waitTimeOverrides };
  walkStates(definition, (name, state) => {
    if (Array.isArray(state.Retry) && state.Retry.length) {
      // Each retrier pauses IntervalSeconds * scale (the backoff rate isn't applied under scaling).
      retryIntervalOverrides[name] = state.Retry.map((r) => Math.round((r.IntervalSeconds ?? 1) * 1000 * scale));
    }
    if (state.Type === 'Wait') {
      if (typeof state.Seconds === 'number') waitTimeOverrides[name] = Math.round(state.Seconds * 1000 * scale);
      else if (scale === 0) waitTimeOverrides[name] = 0;
    }
  });
  return { retryIntervalOverrides, waitTimeOverrides };
}

// ---------------------------------------------------------------------------
// Running an execution
// ---------------------------------------------------------------------------

function errorOf(err) {
  if (err instanceof ExecutionTimeoutError) {
    return { status: 'TIMED_OUT', error: 'States.Timeout', cause: 'The execution exceeded the state machine TimeoutSeconds' };
  }
  const inner = err instanceof ExecutionError && err.cause instanceof Error ? err.cause : err;
  const cause = typeof inner.cause === 'string' ? inner.cause : inner.message;
  return { status: 'FAILED', error: inner.name, cause };
}

/**
 * The Lambda functions the template's EventBridge rules send a state machine's
 * "Step Functions Execution Status Change" to, for an execution that ended with
 * status: rules whose EventPattern has source aws.states, the status, and this
 * state machine (or none named), with a target !GetAtt <Function>.Arn.
 */
export function statusChangeTargets(template, stateMachineId, status) {
  const out = [];
  for (const r of Object.values(template?.Resources ?? {})) {
    if (r?.Type !== 'AWS::Events::Rule') continue;
    const p = r.Properties?.EventPattern ?? {};
    if (!(p.source ?? []).includes('aws.states')) continue;
    if (p['detail-type'] && !p['detail-type'].includes('Step Functions Execution Status Change')) continue;
    const d = p.detail ?? {};
    if (d.status && !d.status.includes(status)) continue;
    if (d.stateMachineArn && !d.stateMachineArn.some((a) => a?.Ref === stateMachineId)) continue;
    for (const t of r.Properties?.Targets ?? []) {
      const g = t.Arn?.['Fn::GetAtt'];
      if (Array.isArray(g) && g[1] === 'Arn') out.push(g[0]);
    }
  }
  return out;
}

/** The EventBridge event of an ended execution (EventBridge events reference, Step Functions). */
export function statusChangeEvent(result, stateMachineArn, region, account) {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Step Functions Execution Status Change',
    source: 'aws.states',
    account,
    time: new Date(result.stopDate ?? Date.now()).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    region,
    resources: [result.executionArn],
    detail: {
      executionArn: result.executionArn,
      stateMachineArn,
      name: result.name,
      status: result.status,
      startDate: result.startDate,
      stopDate: result.stopDate,
      input: JSON.stringify(result.input ?? {}),
      inputDetails: { included: true },
      output: null,
      outputDetails: null,
      error: result.error ?? null,
      cause: result.cause ?? null,
    },
  };
}

/**
 * Runs one execution. onState(record) is called as each state attempt completes, with
 * { name, type, durationMs, outcome: 'ok'|'retry'|'caught'|'failed', error?, next?, index? }.
 */
export async function runExecution({
  definition,
  stateMachineName,
  input,
  name = randomUUID(),
  region = 'us-east-1',
  account = '123456789012',
  functions,
  waitScale,
  onState = () => {},
  request,
  invoker: sharedInvoker,
  startChild,
}) {
  let machine;
  try {
    machine = new StateMachine(definition, { validationOptions: { checkPaths: true, checkArn: true } });
  } catch (e) {
    throw new UsageError(e.message);
  }
  const invoker = sharedInvoker ?? createInvoker(functions, request ? { request } : {});
  const taskResourceLocalHandlers = buildTaskHandlers(definition, functions, invoker, startChild);
  const { retryIntervalOverrides, waitTimeOverrides } = buildWaitOverrides(definition, waitScale);

  const executionArn = `arn:aws:states:${region}:${account}:execution:${stateMachineName}:${name}`;
  const startDate = Date.now();
  const context = {
    Execution: {
      Id: executionArn,
      Name: name,
      StartTime: new Date(startDate).toISOString(),
      Input: input,
      RoleArn: `arn:aws:iam::${account}:role/local-${stateMachineName}-role`,
    },
    StateMachine: {
      Id: `arn:aws:states:${region}:${account}:stateMachine:${stateMachineName}`,
      Name: stateMachineName,
    },
  };

  const execution = machine.run(input, {
    overrides: { taskResourceLocalHandlers, retryIntervalOverrides, waitTimeOverrides },
    context,
  });

  const states = [];
  const emit = (rec) => {
    states.push(rec);
    onState(rec);
  };
  const keyOf = (ev) => `${ev.state.name}\u0000${ev.index ?? ''}`;
  const started = new Map();
  const failed = new Map(); // key -> { ev, start }
  const caught = new Set();
  const rec = (ev, start, end, outcome, extra = {}) => {
    const r = { name: ev.state.name, type: ev.state.type, durationMs: Math.max(0, end - start), outcome, ...extra };
    if (ev.index !== undefined) r.index = ev.index;
    return r;
  };
  const flushFailed = (filter = () => true) => {
    for (const [key, f] of [...failed]) {
      if (!filter(f)) continue;
      failed.delete(key);
      emit(rec(f.ev, f.start, f.ev.timestamp, 'failed', { error: f.ev.Error }));
    }
  };

  const consume = (async () => {
    for await (const ev of execution.eventLogs) {
      switch (ev.type) {
        case 'StateEntered':
          started.set(keyOf(ev), ev.timestamp);
          break;
        case 'StateFailed':
          failed.set(keyOf(ev), { ev, start: started.get(keyOf(ev)) ?? ev.timestamp });
          break;
        case 'StateRetried': {
          const k = keyOf(ev);
          const f = failed.get(k);
          failed.delete(k);
          if (f) emit(rec(f.ev, f.start, f.ev.timestamp, 'retry', { error: f.ev.Error }));
          started.set(k, ev.timestamp);
          break;
        }
        case 'StateCaught': {
          const k = keyOf(ev);
          const f = failed.get(k);
          failed.delete(k);
          caught.add(k);
          const start = f?.start ?? started.get(k) ?? ev.timestamp;
          emit(rec(f?.ev ?? ev, start, f?.ev.timestamp ?? ev.timestamp, 'caught', {
            error: f?.ev.Error,
            next: ev.catch?.catcher?.Next,
          }));
          break;
        }
        case 'StateExited': {
          const k = keyOf(ev);
          if (caught.delete(k)) break;
          emit(rec(ev, started.get(k) ?? ev.timestamp, ev.timestamp, 'ok'));
          break;
        }
        case 'ParallelBranchFailed':
          flushFailed((f) => f.ev.Error === ev.Error);
          break;
        case 'MapIterationFailed':
          flushFailed((f) => f.ev.Error === ev.Error && (f.ev.index === undefined || f.ev.index === ev.index));
          break;
        case 'ExecutionFailed':
        case 'ExecutionTimeout':
        case 'ExecutionAborted':
          flushFailed();
          break;
        default:
          break;
      }
    }
    flushFailed();
  })();

  let result;
  try {
    const output = await execution.result;
    result = { executionArn, name, status: 'SUCCEEDED', output };
  } catch (err) {
    result = { executionArn, name, ...errorOf(err) };
  }
  await consume;
  result.states = states;
  result.input = input;
  result.startDate = startDate;
  result.stopDate = Date.now();
  return result;
}

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

const USAGE = `usage: node execute.mjs --template <template.yaml> [--state-machine <LogicalId>]
                        --functions <functions.json> [--input <file|->] [--name <execution name>]
                        [--json] [--region <region>] [--account <account id>]
                        [--wait-scale <factor>] [--parameter Name=Value ...]

  --functions   JSON object: function LogicalId -> invoke URL of its runtime emulator, e.g.
                {"FetchParametersFunction": "http://127.0.0.1:9101/2015-03-31/functions/function/invocations"}
  --input       execution input JSON file, or - for stdin (default: {})
  --wait-scale  scale Retry intervals and Wait Seconds (e.g. 0.01); env SFN_LOCAL_WAIT_SCALE
  --json        print one JSON document instead of the human-readable lines
  --children    also print every state of nested (startExecution.sync) executions
exit codes: 0 SUCCEEDED, 1 FAILED, 2 usage/setup error`;

function readInput(spec, stdinText) {
  let text;
  if (spec === undefined) return {};
  if (spec === '-') text = stdinText();
  else {
    try {
      text = readFileSync(spec, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read --input ${spec}: ${e.message}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--input ${spec} is not valid JSON: ${e.message}`);
  }
}

function readFunctions(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read --functions ${file}: ${e.message}`);
  }
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--functions ${file} is not valid JSON: ${e.message}`);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new UsageError(`--functions ${file} must be a JSON object {"LogicalId": "http://..."}`);
  }
  for (const [k, v] of Object.entries(obj)) {
    const urls = Array.isArray(v) ? v : [v];
    if (urls.length === 0 || urls.some((u) => typeof u !== 'string' || !/^https?:\/\//.test(u))) {
      throw new UsageError(`--functions ${file}: ${k} must map to an http(s) invoke URL or a list of them`);
    }
  }
  return obj;
}

function parseScale(v, what) {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${what} must be a number >= 0, got ${JSON.stringify(v)}`);
  return n;
}

function formatOutcome(r) {
  switch (r.outcome) {
    case 'ok': return 'ok';
    case 'retry': return `retry (${r.error})`;
    case 'caught': return `caught ${r.error} -> ${r.next}`;
    default: return `failed ${r.error}`;
  }
}

function maxStateNameLength(definition) {
  let n = 0;
  walkStates(definition, (name) => { n = Math.max(n, name.length); });
  return n;
}

/** CLI entry; returns the exit code. */
export async function main(argv, { stdout = process.stdout, stderr = process.stderr, env = process.env, stdinText } = {}) {
  const out = (s) => stdout.write(`${s}\n`);
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 22) {
    stderr.write(`execute.mjs needs Node 22+ (aws-local-stepfunctions 3), this is ${process.version}: ` +
      'use .local/tools/node22/bin/node from infra/local/install.sh\n');
    return 2;
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        template: { type: 'string' },
        'state-machine': { type: 'string' },
        functions: { type: 'string' },
        input: { type: 'string' },
        name: { type: 'string' },
        json: { type: 'boolean', default: false },
        region: { type: 'string' },
        account: { type: 'string' },
        'wait-scale': { type: 'string' },
        parameter: { type: 'string', multiple: true },
        children: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    stderr.write(`${e.message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    out(USAGE);
    return 0;
  }
  try {
    if (!values.template || !values.functions) {
      throw new UsageError('--template and --functions are required');
    }
    const region = values.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1';
    const account = values.account ?? '123456789012';
    if (!/^\d{12}$/.test(account)) throw new UsageError(`--account must be 12 digits, got ${account}`);
    const parameters = {};
    for (const p of values.parameter ?? []) {
      const i = p.indexOf('=');
      if (i <= 0) throw new UsageError(`--parameter must be Name=Value, got ${p}`);
      parameters[p.slice(0, i)] = p.slice(i + 1);
    }
    const waitScale = values['wait-scale'] !== undefined
      ? parseScale(values['wait-scale'], '--wait-scale')
      : parseScale(env.SFN_LOCAL_WAIT_SCALE, 'SFN_LOCAL_WAIT_SCALE');
    const name = values.name ?? randomUUID();
    if (!/^[A-Za-z0-9_-]{1,80}$/.test(name)) {
      throw new UsageError(`--name must be 1-80 characters of A-Z a-z 0-9 _ -, got ${JSON.stringify(name)}`);
    }
    const functions = readFunctions(values.functions);
    const input = readInput(values.input, stdinText ?? (() => readFileSync(0, 'utf8')));
    const { definition, stateMachineName } = buildDefinition({
      templatePath: values.template,
      stateMachineId: values['state-machine'],
      region,
      account,
      parameters,
      warn: (m) => stderr.write(`warning: ${m}\n`),
    });

    const width = maxStateNameLength(definition) + 6;
    const onState = values.json ? () => {} : (r) => {
      const label = r.index !== undefined ? `${r.name}[${r.index}]` : r.name;
      out(`${label.padEnd(width)}${r.type.padEnd(9)}${String(r.durationMs).padStart(7)} ms  ${formatOutcome(r)}`);
    };
    const invoker = createInvoker(functions);
    const children = { SUCCEEDED: 0, FAILED: 0 };
    const template = parseTemplate(readFileSync(values.template, 'utf8'));
    // EventBridge, as the template's rules route it: an execution that ended
    // FAILED, TIMED_OUT or ABORTED reaches its rule's function (asynchronously
    // in AWS, with retries; here once it has ended, up to 3 attempts).
    const deliverStatusChange = async (machineId, r) => {
      if (r.status === 'SUCCEEDED') return;
      const arn = `arn:aws:states:${region}:${account}:stateMachine:${machineId}`;
      for (const fn of statusChangeTargets(template, machineId, r.status)) {
        const ev = statusChangeEvent(r, arn, region, account);
        let last;
        for (let attempt = 1; attempt <= 3; attempt++) {
          try {
            await invoker.invoke(fn, ev);
            last = undefined;
            break;
          } catch (e) {
            last = e;
          }
        }
        if (!values.json) out(`  EventBridge: ${machineId} ${r.status} -> ${fn}${last ? ` failed (${last.name})` : ''}`);
        else if (last) stderr.write(`warning: status change of ${r.executionArn} to ${fn}: ${last.name}: ${last.message}\n`);
      }
    };
    const startChild = async (arn, childInput, childName) => {
      const m = /:stateMachine:([^:]+)$/.exec(String(arn ?? ''));
      if (!m) throw lambdaError('States.Runtime', `StateMachineArn ${JSON.stringify(arn)} is not a state machine ARN`);
      let child;
      try {
        child = buildDefinition({ templatePath: values.template, stateMachineId: m[1], region, account, parameters, warn: () => {} });
      } catch (e) {
        throw lambdaError('StepFunctions.StateMachineDoesNotExistException', e.message);
      }
      const r = await runExecution({
        definition: child.definition, stateMachineName: child.stateMachineName, input: childInput ?? {},
        name: childName ?? randomUUID(), region, account, functions, waitScale, invoker, startChild,
        onState: values.children && !values.json ? (c) => onState({ ...c, name: `  ${m[1]}/${c.name}` }) : () => {},
      });
      await deliverStatusChange(m[1], r);
      children[r.status === 'SUCCEEDED' ? 'SUCCEEDED' : 'FAILED']++;
      if (!values.json && !values.children) {
        out(`  ${m[1]} ${r.name}: ${r.status}${r.error ? ` (${r.error})` : ''} in ${r.stopDate - r.startDate} ms`);
      }
      return r;
    };
    const result = await runExecution({
      definition, stateMachineName, input, name, region, account, functions, waitScale, onState, invoker, startChild,
    });
    await deliverStatusChange(stateMachineName, result);
    if (children.SUCCEEDED + children.FAILED > 0) result.childExecutions = children;
    // Only what the --json contract documents (the rest serves nested runs).
    delete result.input;
    delete result.startDate;
    delete result.stopDate;

    if (values.json) {
      out(JSON.stringify(result, null, 2));
    } else if (result.status === 'SUCCEEDED') {
      out(`SUCCEEDED ${result.executionArn}`);
      out(JSON.stringify(result.output, null, 2));
    } else {
      out(`${result.status} ${result.executionArn}`);
      out(`Error: ${result.error}`);
      out(`Cause: ${result.cause}`);
    }
    return result.status === 'SUCCEEDED' ? 0 : 1;
  } catch (e) {
    if (e instanceof UsageError) {
      if (values.json) {
        out(JSON.stringify({ status: 'SETUP_ERROR', error: 'UsageError', cause: e.message }, null, 2));
      }
      stderr.write(`execute.mjs: ${e.message}\n`);
      return 2;
    }
    stderr.write(`execute.mjs: unexpected error: ${e.stack ?? e}\n`);
    return 2;
  }
}

function isMain() {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  const code = await main(process.argv.slice(2));
  process.exitCode = code;
}
