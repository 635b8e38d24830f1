/**
 * Entry point of every process of the demo except the orchestrator: `node child.js ROLE`, with an
 * IPC channel to the orchestrator. Roles:
 *
 * - `as`       the authorization server (`tether as --dev` configuration, plus a `tmb` policy);
 * - `egress`   an egress sidecar process holding one workload's key (one listener per purpose);
 * - `ingress`  an ingress sidecar in front of one application;
 * - `app-b`    agent B: an MCP server (official SDK) whose tool calls service C;
 * - `app-c`    service C: a plain HTTP API returning the verified principal;
 * - `agent-a`  agent A: an MCP client (official SDK) that holds tokens but no key.
 *
 * The orchestrator sends `{id, method, params}`; the child answers `{id, result}` or `{id, error}`.
 * The child exits on SIGTERM / SIGINT, or when the orchestrator goes away (IPC disconnect).
 */
import { roleHandlers } from './roles.js';

const role = process.argv[2] ?? '';
const handlers = roleHandlers(role);
if (handlers === undefined) {
  process.stderr.write(`demo child: unknown role ${JSON.stringify(role)}\n`);
  process.exit(2);
}
if (process.send === undefined) {
  process.stderr.write('demo child: needs an IPC channel (started by the demo)\n');
  process.exit(2);
}
const send = process.send.bind(process);

interface Call {
  id: number;
  method: string;
  params?: unknown;
}

process.on('message', (message: Call) => {
  const handler = handlers.methods[message.method];
  if (handler === undefined) {
    send({ id: message.id, error: `unknown method ${message.method}` });
    return;
  }
  Promise.resolve()
    .then(() => handler(message.params))
    .then(
      (result) => send({ id: message.id, result }),
      (error: unknown) => send({ id: message.id, error: error instanceof Error ? error.message : String(error) }),
    );
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => process.exit(1), 3000);
  timer.unref();
  try {
    await handlers?.close();
  } finally {
    process.exit(0);
  }
}
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
process.once('disconnect', () => void stop());
