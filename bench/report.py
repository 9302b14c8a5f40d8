"""The printed (markdown) table of a bench run."""

from __future__ import annotations

from bench.scenarios import OPERATIONS


def table(results: dict) -> str:
    lines = ['## HMC requests per operation (besides polling; polling in parentheses)', '']
    per_op = results['requests_per_operation']
    keys = list(per_op)
    lines.append('| operation | ' + ' | '.join(k.replace('_', ' ') for k in keys) + ' |')
    lines.append('|---' * (len(keys) + 1) + '|')
    for op in OPERATIONS:
        cells = [f'{per_op[k][op]["work"]:g} ({per_op[k][op]["polling"]:g})' for k in keys]
        lines.append(f'| {op} | ' + ' | '.join(cells) + ' |')
    lines += ['', '## Power-sync cycle: HMC requests (resources + list + get_info each)', '']
    sync = results['power_sync']
    sizes = list(sync['1_host'])
    lines.append('| hosts on the CPC | ' + ' | '.join(f'+{s} partitions' for s in sizes) + ' |')
    lines.append('|---' * (len(sizes) + 1) + '|')
    for label, per_size in sync.items():
        cells = [f'{per_size[s]["requests"]:g} ({per_size[s]["instances"]} inst.)' for s in sizes]
        lines.append(f'| {label.replace("_", " ")} | ' + ' | '.join(cells) + ' |')
    hop = results.get('grpc_hop')
    if hop:
        lines += [
            '',
            f'## Cost of the gRPC hop ({hop["latency_ms"]:g} ms per HMC request, '
            f'+{hop["job_delay_ms"]:g} ms per job; medians)',
            '',
            '| operation | driver over gRPC ms | in-process ms | added ms | ratio |',
            '|---|---|---|---|---|',
        ]
        for op, m in hop['operations'].items():
            lines.append(
                f'| {op} | {m["grpc_ms"]} | {m["in_process_ms"]} | {m["added_ms"]} | {m["ratio"]} |'
            )
    storm = results.get('many_hosts')
    if storm:
        lines += [
            '',
            f'## Many hosts: {storm["hosts"]} hosts x {storm["boots_per_host"]} concurrent '
            f'boots, {storm["latency_ms"]:g} ms per HMC request',
            '',
            f"- one host's {storm['boots_per_host']} boots: {storm['single_host_s']} s; "
            f'all hosts: {storm["all_hosts_s"]} s (x{storm["ratio_all_vs_single"]})',
            f'- HMC sessions opened: {storm["sessions_opened"]} (pool size '
            f'{storm["pool_size"]}); logons {storm["logons"]}, logoffs {storm["logoffs"]}',
        ]
        for call in ('get_info', 'health'):
            idle, busy = storm[call]['idle'], storm[call]['storm']
            lines.append(
                f'- {call}: idle p50 {idle["p50_ms"]} / p99 {idle["p99_ms"]} / max '
                f'{idle["max_ms"]} ms; storm p50 {busy["p50_ms"]} / p99 {busy["p99_ms"]} / max '
                f'{busy["max_ms"]} ms ({busy["samples"]} samples)'
            )
    mem = results.get('memory')
    if mem:
        lines += [
            '',
            f'## Backend memory: {mem["hosts"]} hosts, {mem["instances"]} instances',
            '',
            f'- RSS at start {mem["rss_started_mib"]} MiB, serving {mem["rss_serving_mib"]} MiB, '
            f'peak {mem["peak_rss_mib"]} MiB',
        ]
    lines += ['', '## Targets', '', '| target | goal | measured | met |', '|---|---|---|---|']
    for name, t in results['targets'].items():
        lines.append(
            f'| {name} | {t["target"]} | {t["measured"]} | {"yes" if t["met"] else "NO"} |'
        )
    return '\n'.join(lines)
