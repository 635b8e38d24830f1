/**
 * @tether/demo: the agent delegation chain over MCP (`tether demo`). See docs/architecture.md.
 */
export { runAgentChainDemo, USERS, type DemoReport, type DemoOptions, type HopReport, type AttackReport, type StackInfo } from './run.js';
export { formatDemoReport, formatStack } from './format.js';
export { scriptedLogin, interactiveLogin, type UserLogin, type LoginContext, type LoginResult } from './login.js';
export { RawConnection, withTimeout, type RawAnswer } from './raw-connection.js';
