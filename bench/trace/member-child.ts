// One member of a trace tool's cluster in a process of its own (members.ts forks this): its
// trace points are kept until the parent collects them over IPC.

import { Recorder, startNode, type MemberRequest, type MemberSpec, type Point } from './members.js';

const spec = JSON.parse(process.argv[2] ?? '') as MemberSpec;
const rec = new Recorder();
const kept: Point[] = [];
rec.add = (p) => void kept.push(p);
const node = await startNode(spec, rec.hook(spec.id));
const send = (m: unknown) => process.send?.(m);
process.on('message', (m: MemberRequest) => {
  switch (m.op) {
    case 'status':
      return send(node.nodeStatus());
    case 'record':
    case 'stop':
      rec.recording = m.op === 'record';
      return send({});
    case 'points':
      return send(kept.splice(0));
    case 'cpu': {
      const u = process.cpuUsage();
      return send(u.user + u.system);
    }
    case 'close':
      void node.close().then(() => process.exit(0));
  }
});
send({ started: spec.id });
