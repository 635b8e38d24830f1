import { registerAdapterSuite } from './shared-suite.js';
import { registerFastifyOptionTests } from './fastify-options.js';
import { ADAPTERS } from './servers.js';

registerAdapterSuite(ADAPTERS.fastifyH2);
registerFastifyOptionTests(true);
