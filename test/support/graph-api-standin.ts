/**
 * The Graph API stand-in for tests is the sandbox Graph API itself (src/sandbox/graph-api-sandbox.ts):
 * Meta's request, response and error formats, signed status webhooks, and fault injection (an
 * error answer such as 5xx, 130429, 131047 or 131056; a send accepted then never answered or its
 * connection dropped, with or without the status webhooks; a hook to kill a worker mid-send).
 */
export { startGraphApiSandbox as startGraphApiStandin, type GraphFault, type GraphSandbox as GraphApiStandin } from '../../src/sandbox/graph-api-sandbox.js';
