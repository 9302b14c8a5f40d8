"""The printed (markdown) tables of a bench run."""

from __future__ import annotations

from bench import ha
from bench import keys
from bench import soak
from bench.scenarios import OPERATIONS
from bench.scenarios import SG_OPERATIONS


def _n(value) -> str:
    return '-' if value is None else f'{value:g}'


def _s(value) -> str:
    return '-' if value is None else f'{value:.3f}'


def _combos(per_op: dict) -> list[tuple[tuple[int, int], str, dict]]:
    """(nics, vhbas), key, entry: ordered by the numbers, which each entry carries."""
    combos = []
    for key, entry in per_op.items():
        numbers = (entry['nics'], entry['vhbas']) if 'nics' in entry else keys.parse(key)
        combos.append((numbers, key, entry))
    return sorted(combos, key=lambda item: item[0])


def _requests_per_operation(profile: str, data: dict) -> list[str]:
    combos = _combos(data['requests_per_operation'])
    lines = [
        f'### HMC {profile} (API {data["api_version"]}), {data["cpc"]}: HMC requests per '
        'operation besides polling (job checks in parentheses)',
        '',
        '| operation | ' + ' | '.join(keys.label(*numbers) for numbers, _, _ in combos) + ' |',
        '|---' * (len(combos) + 1) + '|',
    ]
    for op in OPERATIONS:
        cells = []
        for _, _, entry in combos:
            counts = entry['operations'][op]
            cells.append(f'{_n(counts["work"])} ({_n(counts["polling"])})')
        lines.append(f'| {op} | ' + ' | '.join(cells) + ' |')
    cold = data.get('spawn_cold')
    if cold:
        lines += [
            '',
            f'First spawn of a fresh backend ({cold["nics"]} NICs on {cold["vswitches"]} virtual '
            f'switches): {cold["work"]} ({cold["polling"]}), of which {cold["vswitch_lists"]} '
            f'virtual-switch lists, {cold["vswitch_gets"]} virtual-switch GETs, '
            f'{cold["nic_gets"]} NIC GETs.',
        ]
    return lines


def _storage_groups(profile: str, data: dict) -> list[str]:
    from bench import run

    sg = data['storage_groups']
    entries = sorted(sg['per_nics'].values(), key=lambda e: e['nics'])
    first = entries[0]
    lines = [
        f'### HMC {profile} (API {data["api_version"]}), {sg["cpc"]}, storage groups '
        f'({first["ports"]} adapter ports, connectivity {first["connectivity"]}): HMC requests '
        'per operation besides polling (job checks in parentheses) / budget',
        '',
        '| operation | ' + ' | '.join(f'n={e["nics"]}' for e in entries) + ' |',
        '|---' * (len(entries) + 1) + '|',
    ]
    for op in SG_OPERATIONS:
        cells = []
        for entry in entries:
            counts = entry['operations'][op]
            cells.append(
                f'{_n(counts["work"])} ({_n(counts["polling"])}) / '
                f'{run.sg_budget(op, entry["nics"])}'
            )
        lines.append(f'| {op} | ' + ' | '.join(cells) + ' |')
    lines += ['', f'Storage groups left after the runs: {sg["groups_left"]}']
    discovery = sg.get('discovery')
    if discovery:
        runs = discovery['runs']

        def listed(values) -> str:
            return ', '.join(_s(v) for v in values)

        def waited(jobs) -> str:
            return ', '.join(
                f'{_s(j["waited_s"])}/{_s(j["found_after_s"])}' if j else '-' for j in jobs
            )

        lines += [
            '',
            f'FCP discovery jobs of {discovery["discover_seconds"]:g} s vs 0 s (a fresh backend '
            f'each, default job polling, {discovery["repeats"]} runs; medians): spawn '
            f'{_s(discovery["spawn_s"])} s vs {_s(discovery["spawn_instant_s"])} s: the '
            f'discovery adds {_s(discovery["spawn_added_s"])} s; attach_volume '
            f'{_s(discovery["attach_s"])} s vs {_s(discovery["attach_instant_s"])} s: '
            f'+{_s(discovery["attach_added_s"])} s. A spawn waits '
            f'{_s(discovery["spawn_discovery_wait_s"])} s for its discovery job (submitted to '
            f'deleted; {_s(discovery["spawn_discovery_wait_instant_s"])} s for a 0 s job).',
            f'- spawn s per run: {listed(runs["discovery"]["spawn_s"])} '
            f'(0 s job: {listed(runs["instant"]["spawn_s"])})',
            f'- discovery waited / seen after its end, s per spawn: '
            f'{waited(runs["discovery"]["spawn_jobs"])}; per attach: '
            f'{waited(runs["discovery"]["attach_jobs"])}',
        ]
    return lines


def _move_label(profile: str, move: dict) -> str:
    source, destination = move['source'], move['destination']
    paths = {'vhba': 'vHBA', 'storage_groups': 'storage groups'}
    if move['kind'] == 'resize':
        return f'{profile} resize on {source["cpc"]} ({paths[source["path"]]})'
    return (
        f'{profile} cold migration {source["cpc"]} ({paths[source["path"]]}) -> '
        f'{destination["cpc"]} ({paths[destination["path"]]})'
    )


TOTALS = {'confirm': 'total, confirmed', 'revert': 'total, reverted'}


def _move_columns(results: dict) -> list[tuple[str, dict]]:
    """(label, move) per profile: resizes before cold migrations, vHBA sources first."""
    columns = []
    for profile, data in results['profiles'].items():
        moves = sorted(
            (data.get('moves') or {}).values(),
            key=lambda m: (m['kind'] != 'resize', m['source']['path'] != 'vhba'),
        )
        columns += [(_move_label(profile, move), move) for move in moves]
    return columns


def _move_requests(columns: list[tuple[str, dict]]) -> list[str]:
    from bench import moves
    from bench import run

    first = columns[0][1]
    old, new = first['flavors']['old'], first['flavors']['new']
    lines = [
        '## Moves: HMC requests per step besides polling (job checks in parentheses) / budget',
        '',
        f"Nova's order, as nova-compute calls the driver ({first['nics']} NIC; a resize from "
        f'{old[0]} IFL / {old[1]} MiB to {new[0]} / {new[1]}, a cold migration keeps the '
        "flavor). A revert runs the first three steps, then the destination's destroy and "
        "the source's finish_revert_migration. Jobs end at once; snapshots expired.",
        '',
        '| step (host) | ' + ' | '.join(label for label, _ in columns) + ' |',
        '|---' * (len(columns) + 1) + '|',
    ]
    budgets = [run.move_budgets(move) for _, move in columns]
    for step, host in moves.STEPS.items():
        cells = [
            f'{_n(move["steps"][step]["work"])} ({_n(move["steps"][step]["polling"])}) / '
            f'{budget[step]}'
            for (_, move), budget in zip(columns, budgets, strict=True)
        ]
        lines.append(f'| {step} ({host}) | ' + ' | '.join(cells) + ' |')
    for path, names in moves.PATHS.items():
        cells = [
            f'{_n(move["paths"][path]["work"])} ({_n(move["paths"][path]["polling"])}) / '
            f'{sum(budget[step] for step in names)}'
            for (_, move), budget in zip(columns, budgets, strict=True)
        ]
        lines.append(f'| {TOTALS[path]} | ' + ' | '.join(cells) + ' |')
    left = [
        f'{label}: {"; ".join(move["faults"] + move["partitions_left"] + move["groups_left"])}'
        for label, move in columns
        if move['faults'] or move['partitions_left'] or move['groups_left']
    ]
    return [*lines, '', f'Left behind or out of place after a step: {"; ".join(left) or "nothing"}']


def _move_seconds(timed: list[tuple[str, dict]]) -> list[str]:
    from bench import moves

    timing = timed[0][1]
    lines = [
        f'## Moves: seconds per step at {timing["latency_ms"]:g} ms per HMC request, jobs of '
        f'{timing["job_seconds"]:g} s',
        '',
        'Wall seconds per step (in parentheses: from the end of the last HMC job the step '
        'waited for to its return); totals: wall seconds (of which inside HMC jobs). The '
        'backend polls jobs at its defaults; forward steps are timed on the confirmed move '
        "(the second of the flow), the revert's on the first.",
        '',
        '| step (host) | ' + ' | '.join(label for label, _ in timed) + ' |',
        '|---' * (len(timed) + 1) + '|',
    ]
    for step, host in moves.STEPS.items():
        path = 'confirm' if step in moves.PATHS['confirm'] else 'revert'
        cells = []
        for _, entry in timed:
            measured = entry['paths'][path]['steps'][step]
            after = measured['beyond_jobs_s']
            cells.append(_s(measured['wall_s']) + (f' ({_s(after)})' if after is not None else ''))
        lines.append(f'| {step} ({host}) | ' + ' | '.join(cells) + ' |')
    for path in moves.PATHS:
        cells = [
            f'{_s(entry["paths"][path]["wall_s"])} ({_s(entry["paths"][path]["jobs_s"])})'
            for _, entry in timed
        ]
        lines.append(f'| {TOTALS[path]} | ' + ' | '.join(cells) + ' |')
    return lines


def _moves(results: dict) -> list[str]:
    """A column per move and profile: HMC requests per step, then seconds (full run)."""
    columns = _move_columns(results)
    if not columns:
        return []
    lines = [*_move_requests(columns), '']
    timed = [(label, move['timing']) for label, move in columns if move.get('timing')]
    if timed:
        lines += [*_move_seconds(timed), '']
    return lines


def _power_sync(results: dict) -> list[str]:
    profiles = results['profiles']
    sizes = sorted(
        {
            int(size)
            for data in profiles.values()
            for entry in data['power_sync'].values()
            for size in entry['sizes']
        }
    )
    lines = [
        '## Power-sync cycle: HMC requests per cycle of all hosts on one CPC',
        '',
        'GetHostStatus + ListInstances + GetInstanceInfo of each instance, per host; snapshots '
        'expired (Nova cycles are minutes apart). Cells: CPC facts young / CPC facts expired '
        '(a cycle later than `cpc_cache_ttl`); [first cycle after the partitions appeared].',
        '',
        '| HMC | hosts | ' + ' | '.join(f'+{s} partitions' for s in sizes) + ' |',
        '|---|---' + '|---' * len(sizes) + '|',
    ]
    for profile, data in profiles.items():
        for entry in data['power_sync'].values():
            cells = []
            for size in sizes:
                cell = entry['sizes'].get(str(size))
                if cell is None:
                    cells.append('-')
                    continue
                cells.append(
                    f'{_n(cell["requests"])} / {_n(cell["facts_expired"])} [{_n(cell["first"])}] '
                    f'({cell["instances"]} inst.)'
                )
            lines.append(f'| {profile} | {entry["hosts"]} | ' + ' | '.join(cells) + ' |')
    lines += [
        '',
        '### Each read alone (snapshot expired): HMC requests, CPC facts young / expired',
        '',
        '| HMC | GetHostStatus | ListInstances | GetInstanceInfo |',
        '|---|---|---|---|',
    ]
    for profile, data in profiles.items():
        reads = data['power_sync'].get('1_host', {}).get('reads')
        if reads:
            cells = [
                f'{reads[rpc]["facts_cached"]} / {reads[rpc]["facts_expired"]}'
                for rpc in ('GetHostStatus', 'ListInstances', 'GetInstanceInfo')
            ]
            lines.append(f'| {profile} | ' + ' | '.join(cells) + ' |')
    return lines


def _events_sync(profiles: dict) -> list[str]:
    sizes = sorted(
        {
            int(size)
            for data in profiles.values()
            for entry in data['events']['power_sync']['groups'].values()
            for size in entry['sizes']
        }
    )
    aged = next(iter(profiles.values()))['events']['power_sync']['aged_s']
    lines = [
        '### Power-sync cycle: HMC requests per cycle, notifications live vs without',
        '',
        'The cycle of the power-sync table, on one backend serving 8 hosts (1 host: the '
        'cycle of one of them), partitions created behind it by another HMC session. Cells: '
        f'with notifications: as they come / aged {aged:g} s (snapshots and CPC facts made '
        'that much older: past `cpc_cache_ttl`) [first cycle of all hosts after the '
        "partitions appeared]; without: the power-sync table's snapshots expired / CPC facts "
        'expired.',
        '',
        '| HMC | hosts | ' + ' | '.join(f'+{s} partitions' for s in sizes) + ' |',
        '|---|---' + '|---' * len(sizes) + '|',
    ]
    for profile, data in profiles.items():
        without = data.get('power_sync', {})
        for label, entry in data['events']['power_sync']['groups'].items():
            cells = []
            for size in sizes:
                cell = entry['sizes'].get(str(size))
                if cell is None:
                    cells.append('-')
                    continue
                text = f'{_n(cell["requests"])} / {_n(cell["aged"])}'
                if cell['first'] is not None:
                    text += f' [{_n(cell["first"])}]'
                old = without.get(label, {}).get('sizes', {}).get(str(size))
                if old is not None:
                    text += f' vs {_n(old["requests"])} / {_n(old["facts_expired"])}'
                cells.append(text)
            lines.append(f'| {profile} | {entry["hosts"]} | ' + ' | '.join(cells) + ' |')
    refresh = ', '.join(
        f'{profile}: {data["events"]["power_sync"]["facts_read_before_live"]["requests"]}'
        for profile, data in profiles.items()
    )
    lines += [
        '',
        'Once after the notifications went live, the first cycle that finds them older than '
        "`cpc_cache_ttl` reads the CPC facts read before (at the hosts' checks) again: "
        f'{refresh} HMC requests.',
    ]
    return lines


def _p(stats: dict) -> str:
    if not stats['samples']:
        return '-'
    return f'{stats["p50_ms"]:g} / {stats["p99_ms"]:g}'


def _events_latency(profiles: dict) -> list[str]:
    lines = [
        '### A status change on the HMC to its CHANGE on a WatchInstances client (ms)',
        '',
        "p50 / p99 by what changed the status: another session's Start/Stop Partition "
        "(starting, stopping: from the HMC's answer), the end of its job (active, stopped), "
        'the guest (paused: `guest_status`); all: p50 / p99 / max. Backend requests: what '
        'the backend sent the HMC meanwhile.',
        '',
        '| HMC | latency ms | changes | request | job end | guest | all | backend requests '
        '| missed |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for profile, data in profiles.items():
        for latency, entry in data['events']['latency'].items():
            by = entry['by_source']
            every = entry['all']
            lines.append(
                f'| {profile} | {latency} | {entry["changes"]} | {_p(by["request"])} | '
                f'{_p(by["job"])} | {_p(by["guest"])} | {_p(every)} / {_n(every["max_ms"])} | '
                f'{entry["backend_requests"]} | {len(entry["missed"])} |'
            )
    lines += [
        '',
        "### The same changes to the Nova driver's lifecycle event (ms)",
        '',
        'A DPMDriver of the host started as nova-compute starts it (init_host, then '
        "Nova's listener) follows its own stream and emits STARTED when the partition "
        "turns active (the job's end) and STOPPED when it is paused (the guest); "
        '`[dpm] lifecycle_stopped_event_delay` 0. p50 / p99; all: p50 / p99 / max.',
        '',
        '| HMC | latency ms | events | STARTED (job end) | STOPPED (guest) | all | missed |',
        '|---|---|---|---|---|---|---|',
    ]
    for profile, data in profiles.items():
        for latency, entry in data['events']['latency'].items():
            driver = entry['driver']
            by = driver['by_event']
            every = driver['all']
            lines.append(
                f'| {profile} | {latency} | {driver["events"]} | {_p(by["STARTED"])} | '
                f'{_p(by["STOPPED"])} | {_p(every)} / {_n(every["max_ms"])} | '
                f'{len(driver["missed"])} |'
            )
    return lines


def _events_power(profiles: dict) -> list[str]:
    first = next(iter(profiles.values()))['events']['power']
    lines = [
        f'### PowerOn / PowerOff beyond their HMC job (jobs of {first["job_seconds"]:g} s, '
        f'{first["latency_ms"]:g} ms per request, {first["repeats"]} runs)',
        '',
        "Seconds from the moment the simulator ended the job to the driver call's return "
        "(median / max; per run); seen: from the job's end to the HMC's answer to the check "
        'that found it ended; job status checks (GET /api/jobs/{id}) per run; GC: seconds '
        'the bench process (simulator, backend and driver in one) spent collecting garbage '
        'during the call. polling: `[hmc] notifications = false`, job polling at its '
        'defaults (the first run of each kind meets a backend that has not timed one).',
        '',
        '| HMC | mode | operation | beyond the job s | per run s | seen s | job checks | GC s |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for profile, data in profiles.items():
        for mode, ops in data['events']['power']['modes'].items():
            for op, m in ops.items():
                runs = ', '.join(_s(v) for v in m['beyond_job_s'])
                seen = ', '.join(_s(v) for v in m['checked_s'])
                checks = ', '.join(str(c) for c in m['job_checks'])
                pauses = ', '.join(_s(v) for v in m['gc_s'])
                lines.append(
                    f'| {profile} | {mode} | {op} | {_s(m["median_s"])} / {_s(m["max_s"])} | '
                    f'{runs} | {seen} | {checks} | {pauses} |'
                )
    return lines


def _events(results: dict) -> list[str]:
    """HMC notifications: the power-sync cycle, change latency, job waits."""
    profiles = {p: d for p, d in results['profiles'].items() if d.get('events')}
    if not profiles:
        return []
    return [
        "## HMC notifications (the simulator's STOMP broker on)",
        '',
        *_events_sync(profiles),
        '',
        *_events_latency(profiles),
        '',
        *_events_power(profiles),
        '',
    ]


def _wait(results: dict) -> list[str]:
    rows = []
    for profile, data in results['profiles'].items():
        for latency, entry in (data.get('wait_overhead') or {}).items():
            for op, m in entry['operations'].items():
                runs = ', '.join(_s(v) for v in m['overhead_s'])
                checks = ', '.join(str(c) for c in m['job_checks'])
                seen = ', '.join(
                    ' + '.join(_s(j['found_after_s']) for j in run['jobs']) for run in m['runs']
                )
                rows.append(
                    f'| backend {op} | {profile} | {float(latency) * 1000:g} | '
                    f'{_n(m["max_s"])} | {runs} | {seen} | {checks} |'
                )
    client = results.get('zhmcclient_wait')
    if client:
        rows.append(
            f'| zhmcclient Partition.start(wait_for_completion=True) | {client["profile"]} | 0 | '
            f'{_n(client["overhead_s"])} | {_s(client["overhead_s"])} | '
            f'{_s(client["job_found_after_s"])} | {client["job_checks"]} |'
        )
    if not rows:
        return []
    return [
        '## Wait beyond the HMC jobs (Start/Stop jobs of 1 s; backend job polling at its defaults)',
        '',
        'Overhead: seconds from the end of the last HMC job an RPC waited for to its return. '
        'Seen: seconds from the end of each job to the check that found it ended (a reboot '
        'waits for two jobs). The first run meets a backend that has not timed a job of that '
        'kind yet.',
        '',
        '| waiter | HMC | latency ms | worst overhead s | overhead per run s | '
        'job ended -> seen s, per run | job checks per run |',
        '|---|---|---|---|---|---|---|',
        *rows,
    ]


def _rejected(results: dict) -> list[str]:
    lines = ['## Requests the HMC rejected (status >= 400)', '']
    for profile, data in results['profiles'].items():
        rejected = data['rejected']
        lines.append(
            f'- HMC {profile}: {rejected["count"]} of {data["hmc_requests"]} requests'
            + (f' ({"; ".join(rejected["requests"])})' if rejected['count'] else '')
        )
    client = results.get('zhmcclient_wait')
    if client:
        lines.append(
            f'- zhmcclient alone on {client["profile"]} (not the backend): '
            f'{len(client["rejected"])} ({"; ".join(client["rejected"]) or "none"})'
        )
    return lines


def _races(results: dict) -> list[str]:
    lines = []
    for profile, data in results['profiles'].items():
        race = data.get('reads_during_destroys')
        if race:
            lines.append(
                f'- HMC {profile}: {race["failed_reads"]} of {race["reads"] + race["failed_reads"]}'
                f' reads failed while {race["destroyed"]} other instances were destroyed'
                + (f' (first: {race["failures"][0]})' if race['failures'] else '')
            )
    if not lines:
        return []
    return [
        '',
        '## get_info of an instance while other instances of its host are destroyed',
        '',
        *lines,
    ]


def _hop(hop: dict) -> list[str]:
    lines = [
        '',
        f'## Cost of the gRPC hop (HMC {hop["profile"]}, {hop["latency_ms"]:g} ms per HMC '
        f'request, jobs of {hop["job_ms"]:g} ms; medians)',
        '',
        '| operation | driver over gRPC ms | in-process ms | added ms | ratio |',
        '|---|---|---|---|---|',
    ]
    for op, m in hop['operations'].items():
        lines.append(
            f'| {op} | {m["grpc_ms"]} | {m["in_process_ms"]} | {m["added_ms"]} | {m["ratio"]} |'
        )
    return lines


def _storm(storm: dict) -> list[str]:
    lines = [
        '',
        f'## Many hosts: {storm["hosts"]} hosts x {storm["boots_per_host"]} concurrent boots '
        f'(HMC {storm["profile"]} in its own process, {storm["latency_ms"]:g} ms per request, '
        f'jobs of {storm["job_ms"]:g} ms)',
        '',
        f"- one host's {storm['boots_per_host']} boots: {storm['single_host_s']} s; "
        f'all hosts: {storm["all_hosts_s"]} s (x{storm["ratio_all_vs_single"]})',
        f'- HMC sessions opened: {storm["sessions_opened"]} (pool size {storm["pool_size"]}); '
        f'logons {storm["logons"]}, logoffs {storm["logoffs"]} (as the HMC counted them)',
        f'- HMC requests {storm["hmc_requests"]} (seam {storm["seam_requests"]}), '
        f'rejected {storm["rejected_count"]}',
        f'- failed reads of the watched instance: {storm["probe_error_count"]}'
        + (f' ({"; ".join(storm["probe_errors"][:3])})' if storm['probe_error_count'] else ''),
        f'- CPU seconds over {storm["boots_s"]} s of boots on this machine: '
        + ', '.join(f'{name} {seconds}' for name, seconds in storm['cpu_s'].items()),
    ]
    for call in ('get_info', 'health'):
        idle, busy = storm[call]['idle'], storm[call]['storm']
        lines.append(
            f'- {call}: idle p50 {idle["p50_ms"]} / p99 {idle["p99_ms"]} / max '
            f'{idle["max_ms"]} ms; storm p50 {busy["p50_ms"]} / p99 {busy["p99_ms"]} / max '
            f'{busy["max_ms"]} ms ({busy["samples"]} samples)'
        )
    return lines


def table(results: dict) -> str:
    lines = ['## HMC requests per operation', '']
    for profile, data in results['profiles'].items():
        if data.get('requests_per_operation'):
            lines += [*_requests_per_operation(profile, data), '']
        elif data.get('skipped'):
            lines += [f'### HMC {profile} (API {data["api_version"]}): {data["skipped"]}', '']
    for profile, data in results['profiles'].items():
        if data.get('storage_groups'):
            lines += [*_storage_groups(profile, data), '']
    lines += _moves(results)
    lines += [*_power_sync(results), '']
    lines += _events(results)
    wait = _wait(results)
    if wait:
        lines += [*wait, '']
    lines += _rejected(results)
    lines += _races(results)
    if results.get('grpc_hop'):
        lines += _hop(results['grpc_hop'])
    if results.get('many_hosts'):
        lines += _storm(results['many_hosts'])
    mem = results.get('memory')
    if mem:
        lines += [
            '',
            f'## Backend memory: {mem["hosts"]} hosts, {mem["instances"]} instances '
            f'(HMC {mem["profile"]})',
            '',
            f'- RSS at start {mem["rss_started_mib"]} MiB, serving {mem["rss_serving_mib"]} MiB, '
            f'peak {mem["peak_rss_mib"]} MiB',
        ]
    if results.get('soak'):
        lines += soak.table(results['soak'])
    lines += ha.table(results.get('ha'))
    lines += ['', '## Targets', '', '| target | goal | measured | met |', '|---|---|---|---|']
    for name, t in results['targets'].items():
        lines.append(
            f'| {name} | {t["target"]} | {t["measured"]} | {"yes" if t["met"] else "NO"} |'
        )
    return '\n'.join(lines)
