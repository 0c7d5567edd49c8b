// Reading V8 CPU profiles (.cpuprofile, as `node --cpu-prof` and bench/servers/profile-hook.mjs
// write them) for bench/profile.mjs: self time per function and per place (a sticky-mesh
// module, a package, a Node core module), from the samples and their time deltas.

// Where a frame's code lives: 'sticky-mesh <file>' (dist/), '<package>' (node_modules),
// 'node:<module>', 'bench <file>', or the V8 pseudo-frames: (garbage collector), (program),
// (idle).
export function placeOf(frame) {
  const url = frame.url || '';
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  if (url.startsWith('node:')) return url.replace(/^node:(internal\/)?/, 'node:');
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + 14).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const dist = url.lastIndexOf('/dist/');
  if (dist !== -1) return `sticky-mesh ${url.slice(dist + 6)}`;
  const bench = url.lastIndexOf('/bench/');
  if (bench !== -1) return `bench ${url.slice(bench + 7)}`;
  return url;
}

// Self time (ms) of every node of a profile: Map nodeId -> ms.
function selfTimes(profile) {
  const out = new Map();
  const { samples = [], timeDeltas = [] } = profile;
  // timeDeltas[i] is the time before sample i: charge it to the sample before (the one that
  // was running during it); the first delta goes nowhere.
  for (let i = 1; i < samples.length; i++) {
    const id = samples[i - 1];
    out.set(id, (out.get(id) ?? 0) + (timeDeltas[i] ?? 0) / 1000);
  }
  return out;
}

// Adds a profile's self times into acc ({ total, idle, byPlace: Map, byFunction: Map }).
export function addProfile(acc, profile) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  for (const [id, t] of selfTimes(profile)) {
    const f = nodes.get(id).callFrame;
    if (f.functionName === '(idle)') {
      acc.idle += t;
      continue;
    }
    acc.total += t;
    const place = placeOf(f);
    acc.byPlace.set(place, (acc.byPlace.get(place) ?? 0) + t);
    const kind = kindOf(place);
    acc.byKind.set(kind, (acc.byKind.get(kind) ?? 0) + t);
    const fn = `${f.functionName || '(anonymous)'} ${place}${f.url ? `:${f.lineNumber + 1}` : ''}`;
    acc.byFunction.set(fn, (acc.byFunction.get(fn) ?? 0) + t);
  }
  return acc;
}

export const newProfileSum = () => ({
  total: 0,
  idle: 0,
  byPlace: new Map(),
  byFunction: new Map(),
  byKind: new Map(),
});

// A coarse kind of work for a place: what the session store's replication costs against what
// serving HTTP costs. Native frames (writev, writeUtf8String) stay their own kind: they serve
// both (socket writes, IPC writes).
export function kindOf(place) {
  if (/^sticky-mesh (replication|protocol)\//.test(place)) return 'sticky-mesh replication';
  if (place.startsWith('sticky-mesh ')) return 'sticky-mesh balancer/worker';
  if (/^node:(child_process|cluster)/.test(place)) return 'node IPC (child_process, cluster)';
  if (/^node:(_http|http|net|stream|streams)/.test(place)) return 'node http/net/streams';
  if (place.startsWith('node:crypto')) return 'node crypto';
  if (place.startsWith('node:')) return 'node other';
  if (place.startsWith('(')) return place;
  if (place.startsWith('bench ')) return 'bench app';
  if (['redis', '@redis/client', 'connect-redis', 'ioredis'].includes(place))
    return 'redis clients';
  return 'express, express-session and other packages';
}

// The n largest entries of a Map name -> ms, as [name, ms, share of total].
export function top(map, total, n) {
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => [k, v, total ? v / total : 0]);
}
