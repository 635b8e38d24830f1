// `node --import tsx entry.ts egress|ingress ARGS`: the sidecar commands in a child process.
import { runEgressCommand, runIngressCommand } from '@tether/sidecar';

const [command, ...args] = process.argv.slice(2);
const run = command === 'egress' ? runEgressCommand : command === 'ingress' ? runIngressCommand : undefined;
if (run === undefined) {
  process.stderr.write('usage: entry.ts egress|ingress ARGS\n');
  process.exitCode = 2;
} else {
  process.exitCode = await run(args);
}
