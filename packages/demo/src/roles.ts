/**
 * What each demo process does (see child.ts), one file per role under roles/. Everything listens
 * on 127.0.0.1 with port 0. Each role imports what it uses when it starts (many processes start
 * at once on a small machine), so the SDK, AS and sidecar code load lazily.
 */
import { agentRole } from './roles/agent-a.js';
import { appBRole } from './roles/agent-b.js';
import { asRole } from './roles/as.js';
import { idpRole } from './roles/idp.js';
import { egressRole, ingressRole } from './roles/sidecars.js';
import { appCRole } from './roles/service-c.js';
import type { RoleHandlers } from './roles/shared.js';

export type { RoleHandlers } from './roles/shared.js';

export function roleHandlers(role: string): RoleHandlers | undefined {
  switch (role) {
    case 'idp':
      return idpRole();
    case 'as':
      return asRole();
    case 'egress':
      return egressRole();
    case 'ingress':
      return ingressRole();
    case 'app-b':
      return appBRole();
    case 'app-c':
      return appCRole();
    case 'agent-a':
      return agentRole();
    default:
      return undefined;
  }
}
