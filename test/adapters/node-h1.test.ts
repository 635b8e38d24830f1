import { registerAdapterSuite } from './shared-suite.js';
import { ADAPTERS } from './servers.js';

registerAdapterSuite(ADAPTERS.nodeH1);
