// A small stand-in for aws-lambda-rie in tests: one HTTP server, one path per function:
//   POST /<FunctionLogicalId>/2015-03-31/functions/function/invocations
// It answers like the emulator does for a Go Lambda: 200 with the result; 200 with
// {"errorMessage","errorType"} for a returned error; 502 with {"errorType","errorMessage"} for
// Runtime.ExitError. It records calls and the maximum number of requests in flight per function.
import http from 'node:http';

const INVOKE_PATH = '/2015-03-31/functions/function/invocations';

function goError(errorType, errorMessage) {
  // aws-lambda-go marshals its error response with errorMessage first.
  return JSON.stringify({ errorMessage, errorType });
}

/** Behaviour of each fake function: (payload, state) -> { status, body } */
export const behaviours = {
  async EchoFunction(payload) {
    await new Promise((r) => setTimeout(r, 20)); // long enough to overlap concurrent calls
    return { status: 200, body: JSON.stringify({ echoed: payload }) };
  },
  async FlakyFunction(payload, state) {
    const key = `flaky:${payload.executionId}`;
    const n = (state.counts.get(key) ?? 0) + 1;
    state.counts.set(key, n);
    if (n <= (payload.failures ?? 0)) {
      return { status: 200, body: goError('ThrottlingException', `rate exceeded (call ${n})`) };
    }
    return { status: 200, body: JSON.stringify({ calls: n }) };
  },
  async FailFunction(payload) {
    switch (payload.failWith) {
      case undefined:
      case null:
        return { status: 200, body: JSON.stringify({ imported: true }) };
      case 'Runtime.ExitError':
        return {
          status: 502,
          body: JSON.stringify({
            errorType: 'Runtime.ExitError',
            errorMessage: 'RequestId: 00000000-0000-0000-0000-000000000000 Error: Runtime exited with error: exit status 2',
          }),
        };
      case 'HTTP500':
        return { status: 500, body: 'internal emulator failure' };
      default:
        return { status: 200, body: goError(payload.failWith, `token for "${payload.executionId}" expires soon`) };
    }
  },
};

/** Starts the fake emulator on 127.0.0.1 (random port). */
export async function startFakeLambda() {
  const state = { counts: new Map(), calls: [], inFlight: new Map(), maxInFlight: new Map() };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const fn = req.url.startsWith('/') ? req.url.slice(1).split('/')[0] : '';
      const behaviour = behaviours[fn];
      if (req.method !== 'POST' || !req.url.endsWith(INVOKE_PATH) || !behaviour) {
        res.writeHead(404).end('not found');
        return;
      }
      const payload = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      state.calls.push({ fn, payload, at: Date.now() });
      const now = (state.inFlight.get(fn) ?? 0) + 1;
      state.inFlight.set(fn, now);
      state.maxInFlight.set(fn, Math.max(now, state.maxInFlight.get(fn) ?? 0));
      try {
        const { status, body } = await behaviour(payload, state);
        res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(body);
      } finally {
        state.inFlight.set(fn, state.inFlight.get(fn) - 1);
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  const url = (fn) => `http://127.0.0.1:${port}/${fn}${INVOKE_PATH}`;
  return {
    state,
    url,
    functions: Object.fromEntries(Object.keys(behaviours).map((fn) => [fn, url(fn)])),
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

// Run standalone for manual tries: node fake-lambda.mjs  (prints functions.json)
if (import.meta.url === `file://${process.argv[1]}`) {
  const fake = await startFakeLambda();
  process.stdout.write(`${JSON.stringify(fake.functions, null, 2)}\n`);
}
