/** `tether egress` and `tether ingress` (commands/): the entry points the CLI calls. */
export { runEgressCommand, egressHelp } from './commands/egress.js';
export { runIngressCommand } from './commands/ingress.js';
export { ingressHelp } from './ingress/help.js';
export { readyLine, type CommandIO } from './commands/shared.js';
