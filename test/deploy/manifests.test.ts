// The deployment files parse, and give every member a valid node configuration: the compose
// files' services and each pod of the Kubernetes StatefulSet, over the image's own settings.
// The Kubernetes objects are checked for what the cluster relies on (a headless service that
// publishes pods not yet ready, parallel pod start, probes on /readyz and /healthz, volume
// claims mounted where the image keeps its data, a disruption budget of one). No Kubernetes
// runs here: this is as far as these files are tested. Mistakes planted in copies of the
// files are shown to be caught.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { dashboardAssets } from '../../src/api/dashboard-routes.js';
import { repoRoot } from '../support/root.js';
import {
  checkCompose,
  composeServices,
  dockerfileRuntime,
  kubernetesObjects,
  podConfig,
  unknownVariables,
  type ComposeService,
  type K8sObject,
} from './manifests.js';

const image = dockerfileRuntime();

void test('the image listens on every interface, keeps its data on its volume, logs JSON', () => {
  assert.equal(image.volume, '/var/lib/flotilla');
  assert.equal(image.env['FLOTILLA_DATA_DIR'], '/var/lib/flotilla/data');
  assert.equal(image.env['FLOTILLA_LISTEN_PEER'], '0.0.0.0:7001');
  assert.equal(image.env['FLOTILLA_LISTEN_CLIENT'], '0.0.0.0:8001');
  assert.equal(image.env['FLOTILLA_LOG_FORMAT'], 'json');
  // On the volume, which the node's user may write, whatever data directory the node is given.
  assert.equal(image.env['FLOTILLA_SERVING_FILE'], `${image.volume}/serving.json`);
  assert.deepEqual(unknownVariables(image.env, 'Dockerfile'), []);
});

void test("the image's runtime stage holds every folder a node reads when it starts", () => {
  // The node reads its code, its dependencies and the dashboard's files (at start-up, from
  // beside dist/): an image without one of them does not start.
  const dockerfile = readFileSync(join(repoRoot(), 'Dockerfile'), 'utf8');
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  for (const dir of ['./dist/src', './node_modules', './dashboard'])
    assert.match(runtime, new RegExp(`^COPY .* ${dir.replace(/[./]/g, '\\$&')}$`, 'm'), dir);
  assert.ok(dashboardAssets.length > 0);
});

for (const [file, n] of [
  ['compose.yaml', 3],
  ['compose.5.yaml', 5],
] as const) {
  void test(`${file}: ${n} members, each with a valid configuration and its own name`, () => {
    const services = composeServices(file);
    assert.equal(services.length, n);
    assert.deepEqual(checkCompose(services, image), []);
    for (const s of services) assert.ok(s.stopGraceSeconds >= 10, `${s.name} stop grace period`);
  });
}

void test('the compose check catches a misspelt variable, a wrong name and a missing volume', () => {
  const good = composeServices('compose.yaml');
  const plant = (i: number, change: (s: ComposeService) => ComposeService): ComposeService[] =>
    good.map((s, j) => (j === i ? change(s) : s));
  const cases: [ComposeService[], RegExp][] = [
    [
      plant(1, (s) => {
        const { FLOTILLA_JOIN: join, ...rest } = s.environment;
        return { ...s, environment: { ...rest, FLOTILLA_JION: join as string } };
      }),
      /node2: FLOTILLA_JION is not a setting/,
    ],
    [
      plant(2, (s) => ({
        ...s,
        environment: { ...s.environment, FLOTILLA_ADVERTISE_PEER: 'node2:7001' },
      })),
      /node3: advertises node2:7001/,
    ],
    [plant(0, (s) => ({ ...s, volumes: {} })), /node1: no volume at \/var\/lib\/flotilla/],
    [
      plant(2, (s) => ({ ...s, environment: { ...s.environment, FLOTILLA_ID: '2' } })),
      /member ids repeat/,
    ],
    [
      plant(1, (s) => ({
        ...s,
        environment: { ...s.environment, FLOTILLA_JOIN: 'http://node9:8001' },
      })),
      /node2: joins through http:\/\/node9:8001, which is no member/,
    ],
    [
      plant(0, (s) => ({
        ...s,
        environment: { ...s.environment, FLOTILLA_BOOTSTRAP_WAIT_MS: 'x' },
      })),
      /node1: bootstrapWaitMs must be an integer/,
    ],
  ];
  for (const [services, problem] of cases) {
    const found = checkCompose(services, image);
    assert.ok(
      found.some((p) => problem.test(p)),
      `expected ${problem}, found ${JSON.stringify(found)}`,
    );
  }
});

function one(objects: K8sObject[], kind: string, pred: (o: K8sObject) => boolean = () => true) {
  const found = objects.filter((o) => o.kind === kind && pred(o));
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0] as K8sObject;
}

interface Probe {
  httpGet: { path: string; port: string };
  periodSeconds: number;
  timeoutSeconds?: number;
}
interface Container {
  env: { name: string; value?: string; valueFrom?: unknown }[];
  ports: { name: string; containerPort: number }[];
  readinessProbe: Probe;
  livenessProbe: Probe;
  startupProbe: Probe;
  volumeMounts: { name: string; mountPath: string }[];
}

void test('kubernetes: a StatefulSet behind a headless service, probes, claims and a budget', () => {
  const objects = kubernetesObjects();
  const sts = one(objects, 'StatefulSet');
  const spec = sts.spec as {
    serviceName: string;
    replicas: number;
    podManagementPolicy: string;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        containers: Container[];
        securityContext: { runAsNonRoot: boolean; fsGroup: number };
      };
    };
    volumeClaimTemplates: { metadata: { name: string } }[];
  };
  assert.equal(spec.podManagementPolicy, 'Parallel');
  assert.deepEqual(spec.template.metadata.labels, spec.selector.matchLabels);
  assert.equal(spec.template.spec.securityContext.runAsNonRoot, true);
  const headless = one(objects, 'Service', (o) => o.metadata.name === spec.serviceName);
  assert.equal(headless.spec['clusterIP'], 'None');
  assert.equal(headless.spec['publishNotReadyAddresses'], true);
  one(objects, 'Service', (o) => o.metadata.name !== spec.serviceName);
  const pdb = one(objects, 'PodDisruptionBudget');
  assert.equal(pdb.spec['maxUnavailable'], 1);
  assert.deepEqual(
    (pdb.spec['selector'] as { matchLabels: unknown }).matchLabels,
    spec.selector.matchLabels,
  );
  const c = spec.template.spec.containers[0] as Container;
  const client = c.ports.find((p) => p.name === 'client');
  assert.equal(client?.containerPort, 8001);
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  assert.equal(c.startupProbe.httpGet.path, '/healthz');
  for (const [name, p] of Object.entries({
    readinessProbe: c.readinessProbe,
    livenessProbe: c.livenessProbe,
    startupProbe: c.startupProbe,
  })) {
    assert.equal(p.httpGet.port, 'client');
    // Kubernetes' default timeout, 1 s, fails a probe of a node that is busy but well.
    assert.ok(
      p.timeoutSeconds !== undefined && p.timeoutSeconds > 1,
      `${name}: timeoutSeconds ${p.timeoutSeconds} (unset is 1 s)`,
    );
    assert.ok(p.timeoutSeconds <= p.periodSeconds, `${name}: a timeout within its period`);
  }
  const claim = spec.volumeClaimTemplates[0]?.metadata.name;
  assert.deepEqual(
    c.volumeMounts.find((m) => m.name === claim)?.mountPath,
    image.volume,
    'the claim is mounted where the image keeps its data',
  );
  // Every pod's configuration, as the pod gets it.
  const ids: number[] = [];
  for (let ordinal = 0; ordinal < spec.replicas + 2; ordinal++) {
    const pod = `${sts.metadata.name}-${ordinal}`;
    const config = podConfig(c.env, pod, image.env);
    ids.push(config.id);
    assert.deepEqual(config.members, [
      {
        id: ordinal + 1,
        peer: `${pod}.${spec.serviceName}:7001`,
        client: `http://${pod}.${spec.serviceName}:8001`,
      },
    ]);
    assert.equal(config.bootstrapMember, 1);
    for (const url of config.join)
      assert.match(
        url,
        new RegExp(`^http://${sts.metadata.name}-\\d+\\.${spec.serviceName}:8001$`),
      );
  }
  assert.deepEqual(ids, [1, 2, 3, 4, 5], 'ids from the ordinals, also when scaled to five');
  assert.deepEqual(
    unknownVariables(Object.fromEntries(c.env.map((v) => [v.name, ''])), 'StatefulSet'),
    [],
  );
});
