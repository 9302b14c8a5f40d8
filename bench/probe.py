"""A watcher process for scenario 4: get_info and health checks in loops.

``python -m bench.probe ADDRESS HOST INSTANCE_UUID OUTPUT``: calls get_info
through the driver and the standard health check, each every 20 ms in its
own thread, until stdin closes; then writes ``[kind, started, seconds]`` rows
(``time.monotonic``, comparable with the parent's clock) and ``[kind, started,
error]`` rows of the calls that failed to OUTPUT as JSON.
It runs apart from the process that drives the storm, as a monitoring client
or another nova-compute would.
"""

from __future__ import annotations

import json
import sys
import threading
import time

INTERVAL = 0.02


def main(argv: list[str]) -> int:
    import grpc
    from grpc_health.v1 import health_pb2
    from grpc_health.v1 import health_pb2_grpc

    from bench import rig as rig_mod

    address, host, instance_uuid, output = argv
    rig_mod.point_nova_at(address)
    driver = rig_mod.host_driver(host)
    instance = rig_mod.new_instance(host, instance_uuid=instance_uuid)
    channel = grpc.insecure_channel(address)
    health = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service='')
    rows: list[tuple[str, float, float]] = []
    errors: list[tuple[str, float, str]] = []
    halt = threading.Event()

    def loop(kind: str, call) -> None:
        while not halt.is_set():
            started = time.monotonic()
            try:
                call()
            except Exception as exc:  # a failed read is a result: record it, go on
                errors.append((kind, started, f'{type(exc).__name__}: {exc}'))
            else:
                rows.append((kind, started, time.monotonic() - started))
            halt.wait(INTERVAL)

    threads = [
        threading.Thread(target=loop, args=('get_info', lambda: driver.get_info(instance))),
        threading.Thread(target=loop, args=('health', lambda: health.Check(request, timeout=30))),
    ]
    for thread in threads:
        thread.start()
    print('ready', flush=True)
    sys.stdin.read()
    halt.set()
    for thread in threads:
        thread.join()
    driver.cleanup_host(host)
    channel.close()
    with open(output, 'w', encoding='utf-8') as stream:
        json.dump({'rows': rows, 'errors': errors}, stream)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
