// Tests for execute.mjs. Run with Node 22:  node --test infra/local/sfn/
// A fake Lambda HTTP server (testdata/fake-lambda.mjs) stands in for aws-lambda-rie.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { buildWaitOverrides, createInvoker, parseTemplate, statusChangeEvent, statusChangeTargets } from './execute.mjs';
import { startFakeLambda } from './testdata/fake-lambda.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXECUTE = path.join(HERE, 'execute.mjs');
const TEMPLATE = path.join(HERE, 'testdata', 'template.yaml');
const ERRORS_TEMPLATE = path.join(HERE, 'testdata', 'errors-template.yaml');
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let fake;
let tmp;
let functionsFile;

/** Runs execute.mjs in a child process (asynchronously: the fake server lives in this one). */
function run(args, { input, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [EXECUTE, ...args], {
      env: { ...process.env, SFN_LOCAL_WAIT_SCALE: '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
    child.stdin.end(input === undefined ? '' : JSON.stringify(input));
  });
}

/** Runs the test state machine with the given input from stdin. */
function runMachine(input, extra = [], opts = {}) {
  return run(['--template', TEMPLATE, '--functions', functionsFile, '--input', '-', '--wait-scale', '0.001', ...extra],
    { input, ...opts });
}

function humanOutput(stdout) {
  const lines = stdout.split('\n');
  const i = lines.findIndex((l) => l.startsWith('SUCCEEDED '));
  assert.notEqual(i, -1, `no SUCCEEDED line in:\n${stdout}`);
  return { stateLines: lines.slice(0, i), output: JSON.parse(lines.slice(i + 1).join('\n')) };
}

function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

before(async () => {
  fake = await startFakeLambda();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'sfn-execute-test-'));
  functionsFile = path.join(tmp, 'functions.json');
  writeFileSync(functionsFile, JSON.stringify(fake.functions));
});

after(async () => {
  await fake?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('execute.mjs against a fake runtime emulator', () => {
  test('success path: every state ok, lambda:invoke result wrapped like the real integration', async () => {
    const r = await runMachine({ flakyFailures: 0, failWith: null }, ['--name', 'success-1']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const { stateLines, output } = humanOutput(r.stdout);
    const names = stateLines.map((l) => l.split(/\s+/)[0]);
    for (const s of ['Echo', 'Flaky', 'Pause', 'BranchA', 'BranchB', 'Fanout', 'EachItem[0]', 'EachItem[1]', 'Each', 'Invoke', 'Done']) {
      assert.ok(names.includes(s), `no line for ${s}:\n${r.stdout}`);
    }
    for (const l of stateLines) assert.match(l, /^\S+\s+(Task|Wait|Parallel|Map|Pass|Succeed)\s+\d+ ms {2}ok$/);
    assert.deepEqual(output.flaky, { calls: 1 });
    assert.deepEqual(output.fanout, [{ echoed: { branch: 'A' } }, { echoed: { branch: 'B' } }]);
    // Map ItemProcessor Tasks are dispatched too.
    assert.deepEqual(output.each, [
      { echoed: { item: { echoed: { branch: 'A' } }, index: 0 } },
      { echoed: { item: { echoed: { branch: 'B' } }, index: 1 } },
    ]);
    // ResultSelector picked Payload and StatusCode out of the lambda:invoke result.
    assert.deepEqual(output.invoke, { value: { imported: true }, status: 200 });
    // Substitutions: a Ref to a plain resource becomes a placeholder; GetAtt Arn of a function an ARN.
    assert.equal(output.echo.echoed.table, 'local-StateTable');
    assert.equal(output.caught, undefined);
  });

  test('Retry on a named error, then success', async () => {
    const r = await runMachine({ flakyFailures: 2, failWith: null }, ['--name', 'retry-1']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const { stateLines, output } = humanOutput(r.stdout);
    const flaky = stateLines.filter((l) => l.startsWith('Flaky '));
    assert.equal(flaky.length, 3, r.stdout);
    assert.match(flaky[0], /retry \(ThrottlingException\)$/);
    assert.match(flaky[1], /retry \(ThrottlingException\)$/);
    assert.match(flaky[2], / ok$/);
    assert.deepEqual(output.flaky, { calls: 3 });
    // IntervalSeconds 2 (then 4 with BackoffRate 2) was scaled down by --wait-scale 0.001: the
    // retries came well within the 2 s an unscaled retrier waits.
    const arn = 'arn:aws:states:us-east-1:123456789012:execution:test-reimport:retry-1';
    const at = fake.state.calls.filter((c) => c.fn === 'FlakyFunction' && c.payload.executionId === arn).map((c) => c.at);
    assert.equal(at.length, 3);
    assert.ok(at[2] - at[0] < 1500, `retries took ${at[2] - at[0]} ms`);
  });

  test('Retry gives up after MaxAttempts (a ${...} number substitution) and the execution fails', async () => {
    const r = await runMachine({ flakyFailures: 10, failWith: null }, ['--json']);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.status, 'FAILED');
    assert.equal(doc.error, 'ThrottlingException');
    const flaky = doc.states.filter((s) => s.name === 'Flaky').map((s) => s.outcome);
    assert.deepEqual(flaky, ['retry', 'retry', 'retry', 'failed']); // MaxAttempts: ${ThrottleRetries} = 3
  });

  test('Catch puts {"Error","Cause"} at ResultPath, Cause being the function error payload', async () => {
    const r = await runMachine({ flakyFailures: 0, failWith: 'ImportTokenExpiring' }, ['--name', 'catch-1']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const { stateLines, output } = humanOutput(r.stdout);
    assert.ok(stateLines.some((l) => /^Invoke\s+Task\s+\d+ ms {2}caught ImportTokenExpiring -> Recovered$/.test(l)), r.stdout);
    assert.deepEqual(Object.keys(output.caught).sort(), ['Cause', 'Error']);
    assert.equal(output.caught.Error, 'ImportTokenExpiring');
    const executionArn = 'arn:aws:states:us-east-1:123456789012:execution:test-reimport:catch-1';
    // Exactly the bytes the (Go) function returned: {"errorMessage":...,"errorType":...}
    assert.equal(
      output.caught.Cause,
      JSON.stringify({ errorMessage: `token for "${executionArn}" expires soon`, errorType: 'ImportTokenExpiring' }),
    );
    assert.deepEqual(JSON.parse(output.caught.Cause), {
      errorType: 'ImportTokenExpiring',
      errorMessage: `token for "${executionArn}" expires soon`,
    });
    assert.equal(output.recovery, 'recovered');
  });

  test('an uncaught function error fails the execution with its errorType (502 Runtime.ExitError)', async () => {
    const r = await runMachine({ flakyFailures: 0, failWith: 'Runtime.ExitError' });
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.match(r.stdout, /^Invoke\s+Task\s+\d+ ms {2}failed Runtime\.ExitError$/m);
    assert.match(r.stdout, /^FAILED arn:aws:states:us-east-1:123456789012:execution:test-reimport:/m);
    assert.match(r.stdout, /^Error: Runtime\.ExitError$/m);
    const cause = JSON.parse(r.stdout.match(/^Cause: (.*)$/m)[1]);
    assert.equal(cause.errorType, 'Runtime.ExitError');
  });

  test('a non-JSON HTTP 500 from the emulator is Lambda.ServiceException', async () => {
    const r = await runMachine({ flakyFailures: 0, failWith: 'HTTP500' }, ['--json']);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.error, 'Lambda.ServiceException');
    assert.match(doc.cause, /HTTP 500/);
  });

  test('a dead emulator URL is Lambda.ServiceException', async () => {
    const port = await freePort();
    const dead = path.join(tmp, 'dead.json');
    writeFileSync(dead, JSON.stringify({
      ...fake.functions,
      EchoFunction: `http://127.0.0.1:${port}/2015-03-31/functions/function/invocations`,
    }));
    const r = await run(['--template', TEMPLATE, '--functions', dead, '--json', '--wait-scale', '0'], {
      input: {},
    });
    assert.equal(r.code, 1, r.stderr + r.stdout);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.status, 'FAILED');
    assert.equal(doc.error, 'Lambda.ServiceException');
    assert.match(doc.cause, /ECONNREFUSED/);
    assert.deepEqual(doc.states.map((s) => [s.name, s.outcome, s.error]), [['Echo', 'failed', 'Lambda.ServiceException']]);
  });

  test('the task sees the context object: $$.Execution.Id, Name, StateMachine.Name', async () => {
    const r = await runMachine({ flakyFailures: 0, failWith: null },
      ['--name', 'ctx-1', '--region', 'eu-west-2', '--account', '111122223333']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const { output } = humanOutput(r.stdout);
    const arn = 'arn:aws:states:eu-west-2:111122223333:execution:test-reimport:ctx-1';
    assert.equal(output.echo.echoed.executionId, arn);
    assert.equal(output.echo.echoed.executionName, 'ctx-1');
    assert.equal(output.echo.echoed.stateMachineName, 'test-reimport'); // Name: !Sub "${Env}-reimport"
    assert.deepEqual(output.echo.echoed.input, { flakyFailures: 0, failWith: null });
    assert.ok(fake.state.calls.some((c) => c.fn === 'FlakyFunction' && c.payload.executionId === arn));
  });

  test('--json: one document, its shape, exit code 0; default name is a UUID', async () => {
    const r = await runMachine({ flakyFailures: 1, failWith: 'ImportTokenExpiring' }, ['--json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const doc = JSON.parse(r.stdout); // the whole stdout is one JSON document
    assert.deepEqual(Object.keys(doc).sort(), ['executionArn', 'name', 'output', 'states', 'status']);
    assert.equal(doc.status, 'SUCCEEDED');
    assert.match(doc.name, UUID_RE);
    assert.equal(doc.executionArn, `arn:aws:states:us-east-1:123456789012:execution:test-reimport:${doc.name}`);
    assert.equal(doc.output.caught.Error, 'ImportTokenExpiring');
    for (const s of doc.states) {
      assert.equal(typeof s.name, 'string');
      assert.equal(typeof s.type, 'string');
      assert.ok(Number.isInteger(s.durationMs) && s.durationMs >= 0);
      assert.ok(['ok', 'retry', 'caught', 'failed'].includes(s.outcome));
      if (s.outcome !== 'ok') assert.equal(typeof s.error, 'string');
    }
    assert.deepEqual(
      doc.states.filter((s) => s.outcome !== 'ok').map(({ name, outcome, error, next }) => ({ name, outcome, error, next })),
      [
        { name: 'Flaky', outcome: 'retry', error: 'ThrottlingException', next: undefined },
        { name: 'Invoke', outcome: 'caught', error: 'ImportTokenExpiring', next: 'Recovered' },
      ],
    );
  });

  test('--json on failure: error and cause instead of output, exit code 1', async () => {
    const r = await runMachine({ flakyFailures: 0, failWith: 'KMSInvalidStateException' }, ['--json', '--name', 'fail-1']);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    const doc = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(doc).sort(), ['cause', 'error', 'executionArn', 'name', 'states', 'status']);
    assert.equal(doc.status, 'FAILED');
    assert.equal(doc.error, 'KMSInvalidStateException');
    assert.equal(JSON.parse(doc.cause).errorType, 'KMSInvalidStateException');
    assert.deepEqual(doc.states.at(-1), { ...doc.states.at(-1), name: 'Invoke', outcome: 'failed', error: 'KMSInvalidStateException' });
  });

  test('invocations of one function are serialized (one in flight per emulator)', async () => {
    const r = await runMachine({ flakyFailures: 0, failWith: null });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    // BranchA and BranchB (and the two Map iterations) run concurrently but all call EchoFunction.
    assert.equal(fake.state.maxInFlight.get('EchoFunction'), 1);
  });
});

describe('setup errors exit 2', () => {
  test('unresolved ${...} substitutions are listed', async () => {
    const r = await run(['--template', ERRORS_TEMPLATE, '--state-machine', 'UnresolvedStateMachine',
      '--functions', functionsFile]);
    assert.equal(r.code, 2, r.stderr + r.stdout);
    assert.match(r.stderr, /unresolved substitution\(s\).*\$\{MissingTable\}, \$\{MissingKey\}/);
  });

  test('an invalid definition is rejected by the validator', async () => {
    const r = await run(['--template', ERRORS_TEMPLATE, '--state-machine', 'InvalidStateMachine',
      '--functions', functionsFile, '--json']);
    assert.equal(r.code, 2, r.stderr + r.stdout);
    assert.match(r.stderr, /definition is invalid/);
    assert.equal(JSON.parse(r.stdout).status, 'SETUP_ERROR');
  });

  test('several state machines need --state-machine', async () => {
    const r = await run(['--template', ERRORS_TEMPLATE, '--functions', functionsFile]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /several state machines \(UnresolvedStateMachine, InvalidStateMachine\)/);
  });

  test('a function missing from functions.json, and bad usage', async () => {
    const partial = path.join(tmp, 'partial.json');
    writeFileSync(partial, JSON.stringify({ EchoFunction: fake.functions.EchoFunction }));
    const r = await run(['--template', TEMPLATE, '--functions', partial]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Task Flaky: no URL in functions.json for FlakyFunction/);
    assert.match(r.stderr, /Task Invoke: no URL in functions.json for FailFunction/);
    assert.equal((await run(['--template', TEMPLATE])).code, 2);
    assert.equal((await run(['--nope'])).code, 2);
  });
});

describe('helpers', () => {
  test('CloudFormation short tags become intrinsic-function objects', () => {
    const t = parseTemplate(`
A: !Ref Param
B: !GetAtt Fn.Arn
C: !GetAtt Res.Some.Attr
D: !GetAtt [Fn, Arn]
E: !Sub "arn:\${AWS::Partition}:x:\${Fn.Arn}"
F: !Sub ["\${a}", { a: !Ref P }]
G: !If [Cond, !Join ["-", [a, !Ref B]], !Select [0, !Split [",", "x,y"]]]
H: !Equals [!Ref Env, prod]
I: !Not [!Condition IsProd]
J: !And [!Or [!Condition A, !Condition B], !Condition C]
K: !FindInMap [M, !Ref AWS::Region, k]
L: !Base64 abc
M: !ImportValue other-stack-output
N: !GetAZs ""
`);
    assert.deepEqual(t, {
      A: { Ref: 'Param' },
      B: { 'Fn::GetAtt': ['Fn', 'Arn'] },
      C: { 'Fn::GetAtt': ['Res', 'Some.Attr'] },
      D: { 'Fn::GetAtt': ['Fn', 'Arn'] },
      E: { 'Fn::Sub': 'arn:${AWS::Partition}:x:${Fn.Arn}' },
      F: { 'Fn::Sub': ['${a}', { a: { Ref: 'P' } }] },
      G: { 'Fn::If': ['Cond', { 'Fn::Join': ['-', ['a', { Ref: 'B' }]] }, { 'Fn::Select': [0, { 'Fn::Split': [',', 'x,y'] }] }] },
      H: { 'Fn::Equals': [{ Ref: 'Env' }, 'prod'] },
      I: { 'Fn::Not': [{ Condition: 'IsProd' }] },
      J: { 'Fn::And': [{ 'Fn::Or': [{ Condition: 'A' }, { Condition: 'B' }] }, { Condition: 'C' }] },
      K: { 'Fn::FindInMap': ['M', { Ref: 'AWS::Region' }, 'k'] },
      L: { 'Fn::Base64': 'abc' },
      M: { 'Fn::ImportValue': 'other-stack-output' },
      N: { 'Fn::GetAZs': '' },
    });
  });

  test('wait scaling: none by default, scaled Retry intervals and Wait seconds otherwise', () => {
    const def = {
      StartAt: 'T',
      States: {
        T: { Type: 'Task', Resource: 'x', Retry: [{ ErrorEquals: ['A'], IntervalSeconds: 2 }, { ErrorEquals: ['B'] }], Next: 'W' },
        W: { Type: 'Wait', Seconds: 30, Next: 'P' },
        P: { Type: 'Wait', SecondsPath: '$.s', End: true },
      },
    };
    assert.deepEqual(buildWaitOverrides(def, undefined), { retryIntervalOverrides: {}, waitTimeOverrides: {} });
    assert.deepEqual(buildWaitOverrides(def, 0.01), { retryIntervalOverrides: { T: [20, 10] }, waitTimeOverrides: { W: 300 } });
    assert.deepEqual(buildWaitOverrides(def, 0), { retryIntervalOverrides: { T: [0, 0] }, waitTimeOverrides: { W: 0, P: 0 } });
  });

  test('a function that outlives its timeout is Sandbox.Timedout, as Lambda reports it to Step Functions', async () => {
    const request = async () => ({ status: 200, headers: {}, text: 'Task timed out after 1.00 seconds' });
    const inv = createInvoker({ F: 'http://127.0.0.1:1/x' }, { request });
    await assert.rejects(inv.invoke('F', {}), (e) => e.name === 'Sandbox.Timedout' && /timed out/.test(e.message));
  });

  test('EventBridge rules on Step Functions status changes route ended executions to their function', () => {
    const t = parseTemplate(`
Resources:
  Rule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern:
        source: [aws.states]
        detail-type: [Step Functions Execution Status Change]
        detail:
          stateMachineArn: [!Ref RotationStateMachine]
          status: [FAILED, TIMED_OUT, ABORTED]
      Targets:
        - Id: R
          Arn: !GetAtt RecordFailureFunction.Arn
  Other:
    Type: AWS::Events::Rule
    Properties:
      EventPattern: { source: [aws.kms] }
      Targets: [{ Id: X, Arn: !GetAtt OtherFunction.Arn }]
`);
    assert.deepEqual(statusChangeTargets(t, 'RotationStateMachine', 'FAILED'), ['RecordFailureFunction']);
    assert.deepEqual(statusChangeTargets(t, 'RotationStateMachine', 'TIMED_OUT'), ['RecordFailureFunction']);
    assert.deepEqual(statusChangeTargets(t, 'RotationStateMachine', 'SUCCEEDED'), []);
    assert.deepEqual(statusChangeTargets(t, 'FleetStateMachine', 'FAILED'), []);
    const ev = statusChangeEvent({ executionArn: 'arn:e', name: 'n', status: 'TIMED_OUT', startDate: 1, stopDate: 2, input: { keyId: 'k' }, error: 'States.Timeout', cause: 'c' }, 'arn:sm', 'eu-west-2', '111122223333');
    assert.equal(ev['detail-type'], 'Step Functions Execution Status Change');
    assert.equal(ev.detail.status, 'TIMED_OUT');
    assert.equal(ev.detail.input, '{"keyId":"k"}');
    assert.equal(ev.detail.stateMachineArn, 'arn:sm');
  });
});
