/**
 * Which workloads run on which path.
 *
 * The peers and the two plain tcpipe paths run every group, since the issue's
 * targets compare them on every workload (direct has no relay, so no memory or
 * slow reader). The transport paths (WebSocket, squid, --resume) are compared
 * only with the plain link, and their targets are about throughput: they run
 * the core of the perf group (RTT, bulk 1 and 8 streams, connections) and skip
 * fairness, the scaling curves, memory and the slow reader, which is most of
 * what made a full run take over ten minutes. --all-workloads runs everything
 * everywhere.
 */
import type { BenchOptions } from './options.js';
import { isTransportPath, type PathId } from './paths.js';
import type { Group, PerfScope } from './workloads.js';

export interface PathPlan {
  /** The groups to run on the path, among those the options ask for. */
  readonly groups: readonly Group[];
  /** How much of the perf group runs. */
  readonly perf: PerfScope;
}

export function planFor(id: PathId, o: Pick<BenchOptions, 'groups' | 'allWorkloads'>): PathPlan {
  const coreOnly = isTransportPath(id) && !o.allWorkloads;
  // Memory and the slow reader are about relay processes: direct has none.
  const relayGroups = id !== 'direct' && !coreOnly;
  return {
    groups: o.groups.filter((g) => g === 'perf' || relayGroups),
    perf: coreOnly ? 'core' : 'full',
  };
}

/** The paths, among `paths`, that run only the core of the perf group. */
export function coreOnlyPaths(paths: readonly PathId[], o: Pick<BenchOptions, 'groups' | 'allWorkloads'>): PathId[] {
  return paths.filter((id) => planFor(id, o).perf === 'core');
}
