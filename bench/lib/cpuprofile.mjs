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
});

// The n largest entries of a Map name -> ms, as [name, ms, share of total].
export function top(map, total, n) {
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => [k, v, total ? v / total : 0]);
}
