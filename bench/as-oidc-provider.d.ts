// oidc-provider ships no type declarations; the benchmark uses it through a narrow, untyped surface.
declare module 'oidc-provider' {
  const Provider: new (issuer: string, configuration: unknown) => { callback(): (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void };
  export default Provider;
}
