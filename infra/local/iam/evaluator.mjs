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
  const ignored = r.resultType === 'single' ? r.result.ignoredContextKeys : r.results.flatMap((x) => x.ignoredContextKeys ?? []);
  return { decision: r.overallResult, ignoredContextKeys: ignored ?? [] };
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
