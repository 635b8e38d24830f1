/**
 * The deploy recipes (issue 15 item 6) are checked, not just written: the systemd units pass `systemd-analyze verify`
 * (in a temporary root holding the system's own units and a stand-in `tether` executable), and the Kubernetes
 * manifests give the sidecars what they need (options the command knows, files on mounted volumes, probes on the
 * operations port, loopback-only application and agent listeners, native sidecars, hardened containers).
 * Every option in a recipe must appear in the built CLI's `--help` for that command.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { ROOT, ensureBuilt, tether } from '../cli/helpers/cli.js';

const exec = promisify(execFile);
const SYSTEMD = join(ROOT, 'deploy/systemd');
const KUBERNETES = join(ROOT, 'deploy/kubernetes');
const help = new Map<string, string>();

before(async () => {
  ensureBuilt();
  for (const command of ['as', 'egress', 'ingress']) {
    const r = await tether([command, '--help'], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    help.set(command, r.stdout);
  }
});

/** Each `--option` of a command line must be one the command documents. */
function assertKnownOptions(command: string, args: string[], where: string): void {
  const text = help.get(command);
  assert.ok(text !== undefined, `${where}: 'tether ${command}' is a command`);
  for (const arg of args.filter((a) => a.startsWith('--'))) {
    const name = arg.split('=')[0] as string;
    assert.match(text, new RegExp(`(^|[\\s,])${name}[\\s,]`, 'm'), `${where}: ${name} is an option of 'tether ${command}'`);
  }
}

describe('systemd units', () => {
  const root = mkdtempSync(join(tmpdir(), 'tether-systemd-'));
  const units = readdirSync(SYSTEMD).filter((f) => f.endsWith('.service'));
  before(() => {
    mkdirSync(join(root, 'lib/systemd'), { recursive: true });
    cpSync('/lib/systemd/system', join(root, 'lib/systemd/system'), { recursive: true });
    mkdirSync(join(root, 'usr/local/bin'), { recursive: true });
    writeFileSync(join(root, 'usr/local/bin/tether'), '#!/bin/sh\n');
    chmodSync(join(root, 'usr/local/bin/tether'), 0o755);
    mkdirSync(join(root, 'bin'), { recursive: true });
    cpSync('/bin/kill', join(root, 'bin/kill'));
    mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const verify = async (name: string, text: string) => {
    const path = join(root, 'etc/systemd/system', name);
    writeFileSync(path, text);
    return exec('systemd-analyze', ['verify', '--man=no', `--root=${root}`, path]).then(
      (r) => ({ code: 0, output: r.stdout + r.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
    );
  };

  it('there is a unit for the authorization server and each sidecar', () => {
    assert.deepEqual(units.sort(), ['tether-as.service', 'tether-egress.service', 'tether-ingress.service']);
  });

  for (const unit of ['tether-as.service', 'tether-egress.service', 'tether-ingress.service']) {
    it(`${unit} passes systemd-analyze verify and uses only documented options`, async () => {
      const text = readFileSync(join(SYSTEMD, unit), 'utf8');
      const r = await verify(unit, text);
      assert.equal(r.code, 0, r.output);
      assert.equal(r.output.trim(), '', 'no warnings');
      const execStart = /^ExecStart=(.*(?:\\\n.*)*)$/m.exec(text)?.[1]?.replace(/\\\n/g, ' ') ?? '';
      const [binary, command, ...args] = execStart.split(/\s+/).filter((w) => w !== '');
      assert.equal(binary, '/usr/local/bin/tether');
      assertKnownOptions(command as string, args, unit);
      assert.match(text, /^NoNewPrivileges=yes$/m);
      assert.match(text, /^ProtectSystem=strict$/m);
      assert.match(text, /^RestartPreventExitStatus=2$/m, 'a bad configuration is not restarted in a loop');
    });
  }

  it('the check can fail: a broken unit is refused', async () => {
    const text = readFileSync(join(SYSTEMD, 'tether-as.service'), 'utf8').replace('ExecStart=/usr/local/bin/tether', 'ExecStart=usr/local/bin/tether');
    const r = await verify('broken.service', text);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /absolute path/);
  });
});

interface Container {
  name: string;
  command?: string[];
  args?: string[];
  restartPolicy?: string;
  ports?: Array<{ name?: string; containerPort: number }>;
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface PodSpec {
  securityContext?: { runAsNonRoot?: boolean };
  initContainers?: Container[];
  containers: Container[];
  volumes?: Array<{ name: string }>;
}

function option(args: string[], name: string): string | undefined {
  return args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

function checkTetherSidecar(file: string, pod: PodSpec, c: Container): void {
  const where = `${file} ${c.name}`;
  const [command, ...args] = c.args ?? [];
  assertKnownOptions(command as string, args, where);
  assert.equal(c.restartPolicy, 'Always', `${where}: a native sidecar (init container with restartPolicy Always)`);
  for (const name of ['--cert', '--key', '--ca', '--jwks-ca']) {
    const path = option(args, name);
    if (path === undefined) continue;
    const mount = c.volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`));
    assert.ok(mount, `${where}: ${name} ${path} is on a mounted volume`);
    assert.ok(pod.volumes?.some((v) => v.name === mount.name), `${where}: volume ${mount.name} exists`);
  }
  const ops = c.ports?.find((p) => p.name === 'ops');
  assert.equal(ops?.containerPort, portOf(option(args, '--metrics-listen') ?? ''), `${where}: the ops port is the --metrics-listen port`);
  assert.deepEqual(c.readinessProbe?.httpGet, { path: '/readyz', port: 'ops' }, `${where}: readiness on /readyz`);
  assert.deepEqual(c.livenessProbe?.httpGet, { path: '/healthz', port: 'ops' }, `${where}: liveness on /healthz`);
  if (command === 'egress') assert.match(option(args, '--listen') ?? '', /^127\.0\.0\.1:/, `${where}: the agent-facing listener is loopback only`);
  if (command === 'ingress') {
    assert.match(option(args, '--upstream') ?? '', /^http:\/\/127\.0\.0\.1:/, `${where}: the application is reached on loopback`);
    assert.equal(c.ports?.find((p) => p.name === 'https')?.containerPort, portOf(option(args, '--listen') ?? ''), `${where}: https port`);
  }
}

describe('Kubernetes manifests', () => {
  const files = readdirSync(KUBERNETES).filter((f) => f.endsWith('.yaml'));

  it('there are manifests for an app pod with an ingress and agent pods with an egress (Secret and SPIFFE CSI)', () => {
    assert.deepEqual(files.sort(), ['agent-with-egress-spiffe.yaml', 'agent-with-egress.yaml', 'app-with-ingress.yaml']);
  });

  for (const file of ['agent-with-egress-spiffe.yaml', 'agent-with-egress.yaml', 'app-with-ingress.yaml']) {
    it(`${file}: parses, and every tether sidecar gets what it needs`, () => {
      const docs = parseAllDocuments(readFileSync(join(KUBERNETES, file), 'utf8'));
      for (const doc of docs) assert.deepEqual(doc.errors, [], `${file}: valid YAML`);
      const objects = docs.map((d) => d.toJS() as { kind: string; spec?: { template?: { spec: PodSpec } } });
      const pods = objects.filter((o) => o.kind === 'Deployment').map((o) => o.spec?.template?.spec as PodSpec);
      assert.equal(pods.length, 1, `${file}: one Deployment`);
      const pod = pods[0] as PodSpec;
      assert.equal(pod.securityContext?.runAsNonRoot, true);
      const sidecars = (pod.initContainers ?? []).filter((c) => c.command?.[0] === 'tether');
      assert.equal(sidecars.length, 1, `${file}: one tether sidecar`);
      for (const c of sidecars) checkTetherSidecar(file, pod, c);
      for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
        assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${file} ${c.name}`);
        assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${file} ${c.name}`);
        assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${file} ${c.name}`);
      }
      if (file.includes('spiffe')) {
        assert.ok(pod.volumes?.some((v) => (v as { csi?: { driver?: string } }).csi?.driver === 'csi.spiffe.io'), 'the SPIFFE CSI driver volume');
      }
    });
  }
});
