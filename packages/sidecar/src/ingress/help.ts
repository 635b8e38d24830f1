/** `tether ingress --help`: every option, with its default. */
import { LOG_LEVELS } from '../config.js';

export const ingressHelp = `Usage: tether ingress --listen HOST:PORT --cert FILE --key FILE --ca FILE
                      --upstream http://127.0.0.1:PORT|unix:/path
                      (--jwks-url URL | --jwks-file FILE | --introspection-url URL) [options]

Ingress sidecar: terminates mTLS (HTTP/2 and HTTP/1.1), verifies the access token and its
Session-Binding-Proof against this connection, answers refusals with the draft's 401s, and proxies
verified requests to the local application with the principal in X-Tether-Principal
(base64url JSON). Client-supplied identity headers are removed. Serves RFC 9728 metadata at
/.well-known/oauth-protected-resource without a token.

Once listening it prints one JSON line on standard output (actual ports when given :0):
  {"listening":"https://HOST:PORT","metrics":"http://HOST:PORT","pid":N}
(metrics only with --metrics-listen). Logs are JSON lines on standard error.

Options:
  --listen HOST:PORT           public mTLS listener (required)
  --cert FILE, --key FILE      server certificate and key (PEM) (required)
  --ca FILE                    CA that client certificates must chain to (required)
                               --cert, --key and --ca are reloaded when the files are replaced
                               and on SIGHUP: new connections use the new certificate
  --upstream URL               the local application (required)
  --jwks-url URL               JWT access tokens, keys from this JWK Set URL
  --jwks-file FILE             JWT access tokens, keys from this JWK Set file
  --jwks-ca FILE               extra CA for an https JWKS or introspection URL
  --issuer ISS                 required 'iss' (required with JWKS)
  --audience AUD               accepted 'aud' (repeatable; required with JWKS)
  --introspection-url URL      RFC 7662 introspection instead of JWTs (failed calls: warn log)
  --introspection-client-id ID the ingress's client_id at the authorization server (required
                               with --introspection-url)
  --introspection-auth M       client authentication at the introspection endpoint:
                               tls_client_auth (default), private_key_jwt (RFC 7523 assertion,
                               aud = --issuer or the URL) or client_secret_basic (secret from
                               TETHER_INTROSPECTION_SECRET; the default when that variable is set)
  --introspection-cert FILE, --introspection-key FILE
                               client certificate and key for tls_client_auth (default: --cert
                               and --key; the certificate needs the clientAuth usage); the key
                               also signs private_key_jwt assertions
  --minimum-binding B          session (default) or certificate (also accept RFC 8705 tokens)
  --required-scope S           scope every request must carry (repeatable)
  --resource URI               'resource' in the metadata (default: https:// + request authority)
  --authorization-server ISS   'authorization_servers' in the metadata (repeatable; default --issuer)
  --strip-authorization        do not pass the Authorization field to the application
  --allow-tls12                accept TLS 1.2 as well as TLS 1.3
  --max-requests-per-connection N  close a client connection gracefully after N requests
                               (GOAWAY / Connection: close), so clients reconnect (default: no limit)
  --app-timeout SECONDS        longest wait for the application's response headers after the
                               request was forwarded; then 504 upstream_timeout (default 30; 0 = off)
  --idle-timeout SECONDS       close a client connection (HTTP/1.1 keep-alive or HTTP/2 session)
                               with no request in flight for this long (default 120; 0 = never)
  --proxy-protocol             require a PROXY protocol v2 header before TLS on every connection
                               (HAProxy send-proxy-v2, a network load balancer): its source address
                               is the client's (X-Forwarded-For, logs); a connection without a valid
                               header within 5 s is closed. Only where nothing else reaches --listen
  --metrics-listen ADDR        operations listener on HOST:PORT: Prometheus /metrics, /healthz
                               (liveness) and /readyz (readiness: 503 with a reason when draining,
                               not listening, or the server certificate is outside its validity)
  --log-level LEVEL            ${LOG_LEVELS.join(', ')} (default info); JSON lines on stderr
  --drain-timeout SECONDS      how long shutdown waits for in-flight requests (default 10)
  -h, --help                   this text
`;
