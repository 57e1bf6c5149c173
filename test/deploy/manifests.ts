// Reading the deployment files (Dockerfile, compose files, Kubernetes manifests) and checking
// what a node would make of them: every FLOTILLA_* variable must be one the node reads (an
// unknown one is silently ignored by the node, so a typo would pass unnoticed), and each
// member's settings must give a valid configuration whose names match the member's name. The
// container test builds its `podman run` commands from the same compose services.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import {
  clientEnvVars,
  configFields,
  configFromEnv,
  envVarName,
  hostOrdinal,
  idFromHostname,
  resolveNodeConfig,
  type NodeConfig,
} from '../../src/server/config.js';
import { repoRoot } from '../support/root.js';

export const root = repoRoot();
const knownVars = new Set([...configFields.map(envVarName), ...clientEnvVars]);

/** The image's ENV settings and its VOLUME, from the Dockerfile's runtime stage. */
export function dockerfileRuntime(text = readFileSync(join(root, 'Dockerfile'), 'utf8')): {
  env: Record<string, string>;
  volume: string;
} {
  const stage = text.slice(text.lastIndexOf('\nFROM '));
  const joined = stage.replace(/\\\n\s*/g, ' ');
  const env: Record<string, string> = {};
  for (const line of joined.split('\n').filter((l) => l.startsWith('ENV ')))
    for (const m of line.slice(4).matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(\S+)/g))
      env[m[1] as string] = m[2] as string;
  const volume = /^VOLUME \["([^"]+)"\]/m.exec(stage)?.[1];
  if (volume === undefined) throw new Error('The Dockerfile runtime stage declares no VOLUME');
  return { env, volume };
}

/** FLOTILLA_* names the node does not read (`where` says whose they are). */
export function unknownVariables(env: Record<string, string>, where: string): string[] {
  return Object.keys(env)
    .filter((k) => k.startsWith('FLOTILLA_') && !knownVars.has(k))
    .map((k) => `${where}: ${k} is not a setting of the node`);
}

export interface ComposeService {
  readonly name: string;
  readonly hostname: string;
  readonly environment: Record<string, string>;
  /** named volume -> mount path */
  readonly volumes: Record<string, string>;
  readonly stopGraceSeconds: number;
}

export function composeServices(file: string): ComposeService[] {
  const doc = parse(readFileSync(join(root, file), 'utf8')) as {
    services: Record<string, Record<string, unknown>>;
  };
  return Object.entries(doc.services).map(([name, s]) => {
    const environment = Object.fromEntries(
      Object.entries((s['environment'] ?? {}) as Record<string, unknown>).map(([k, v]) => [
        k,
        String(v),
      ]),
    );
    const volumes: Record<string, string> = {};
    for (const v of (s['volumes'] ?? []) as string[]) {
      const [source, target] = v.split(':') as [string, string];
      volumes[source] = target;
    }
    const text = (v: unknown, fallback: string): string => (typeof v === 'string' ? v : fallback);
    const grace = /^(\d+)s$/.exec(text(s['stop_grace_period'], '10s'));
    return {
      name,
      hostname: text(s['hostname'], name),
      environment,
      volumes,
      stopGraceSeconds: grace === null ? 10 : Number(grace[1]),
    };
  });
}

/** A node's configuration from the image's settings overridden by the service's. */
export function serviceConfig(s: ComposeService, imageEnv: Record<string, string>): NodeConfig {
  return resolveNodeConfig(configFromEnv({ ...imageEnv, ...s.environment }));
}

/** What is wrong with a compose file's members (empty: nothing). */
export function checkCompose(
  services: readonly ComposeService[],
  image = dockerfileRuntime(),
): string[] {
  const problems: string[] = [];
  const configs = new Map<string, NodeConfig>();
  for (const s of services) {
    problems.push(...unknownVariables(s.environment, s.name));
    try {
      configs.set(s.name, serviceConfig(s, image.env));
    } catch (err) {
      problems.push(`${s.name}: ${(err as Error).message}`);
    }
    if (!Object.values(s.volumes).includes(image.volume))
      problems.push(`${s.name}: no volume at ${image.volume}, the image's data volume`);
  }
  const ids = [...configs.values()].map((c) => c.id);
  if (new Set(ids).size !== ids.length) problems.push(`member ids repeat: ${ids.join(', ')}`);
  const clients = new Set(services.map((s) => `http://${s.hostname}:8001`));
  for (const s of services) {
    const c = configs.get(s.name);
    if (c === undefined) continue;
    const self = c.members.find((m) => m.id === c.id);
    if (self?.peer.split(':')[0] !== s.hostname || new URL(self.client).hostname !== s.hostname)
      problems.push(
        `${s.name}: advertises ${self?.peer} and ${self?.client}, not its name ${s.hostname}`,
      );
    for (const url of c.join)
      if (!clients.has(url)) problems.push(`${s.name}: joins through ${url}, which is no member`);
    if (!ids.includes(c.bootstrapMember))
      problems.push(
        `${s.name}: bootstrap member ${c.bootstrapMember} is none of ${ids.join(', ')}`,
      );
  }
  return problems;
}

export type K8sObject = {
  kind: string;
  metadata: { name: string };
  spec: Record<string, unknown>;
} & Record<string, unknown>;

export function kubernetesObjects(): K8sObject[] {
  const dir = join(root, 'deploy', 'kubernetes');
  const kustomization = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as {
    resources: string[];
  };
  return kustomization.resources.flatMap((f) =>
    parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => {
      if (d.errors.length > 0) throw new Error(`${f}: ${d.errors[0]?.message}`);
      return d.toJS() as K8sObject;
    }),
  );
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}

/**
 * The environment pod `podName` of a StatefulSet gets: `$(VAR)` references expanded as
 * Kubernetes does, the pod's name from its field reference.
 */
export function podEnvironment(env: readonly EnvVar[], podName: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of env) {
    if (v.value === undefined) {
      const ref = (v.valueFrom as { fieldRef?: { fieldPath?: string } } | undefined)?.fieldRef;
      if (ref?.fieldPath !== 'metadata.name') throw new Error(`${v.name}: unsupported valueFrom`);
      out[v.name] = podName;
    } else
      out[v.name] = v.value.replace(
        /\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g,
        (m, n: string) => out[n] ?? m,
      );
  }
  return out;
}

/** A pod's node configuration: the image's settings, the pod's, its id from its name. */
export function podConfig(
  env: readonly EnvVar[],
  podName: string,
  imageEnv: Record<string, string>,
): NodeConfig {
  const e = { ...imageEnv, ...podEnvironment(env, podName) };
  if (e['FLOTILLA_ID'] === hostOrdinal) e['FLOTILLA_ID'] = String(idFromHostname(podName));
  return resolveNodeConfig(configFromEnv(e));
}
